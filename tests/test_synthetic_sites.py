"""The synthetic multi-site cohort: same disease everywhere, scanners that differ (recur synth --sites)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from nnunet_recur.cli import app
from nnunet_recur.synthetic.patient import generate_patient
from nnunet_recur.synthetic.sites import FIRST_SITES, SiteProfile, parse_sites, site_profile

runner = CliRunner()


def _array(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_site_a_is_the_single_site_cohort_and_other_sites_change_only_the_scanner():
    plain = generate_patient(3, 1, "demo")
    site_a = generate_patient(3, 1, "demo", FIRST_SITES[0])
    site_b = generate_patient(3, 1, "demo", FIRST_SITES[1])
    assert np.array_equal(_array(plain.ct), _array(site_a.ct))
    assert np.array_equal(_array(plain.pet), _array(site_a.pet))
    for image in ("relapse", "gtvp", "gtvn", "brain"):  # the disease and anatomy do not move
        assert np.array_equal(_array(getattr(plain, image)), _array(getattr(site_b, image)))
    assert plain.info["points_of_origin"] == site_b.info["points_of_origin"]
    ct_gap = _array(site_b.ct).astype(float) - _array(plain.ct)
    assert ct_gap.std() > 3.0  # other CT noise and kernel
    assert not np.array_equal(_array(plain.pet), _array(site_b.pet))
    assert site_b.info["site"]["pet_fwhm_mm"] == 7.5 and "site" not in plain.info


def test_suv_calibration_scales_the_pet_only():
    calibrated = generate_patient(0, 0, "demo", SiteProfile("X", suv_calibration=1.05))
    nominal = generate_patient(0, 0, "demo", SiteProfile("X"))
    assert np.allclose(_array(calibrated.pet), 1.05 * _array(nominal.pet), rtol=1e-6)
    assert np.array_equal(_array(calibrated.ct), _array(nominal.ct))


def test_parse_sites_and_profiles_beyond_the_first_three():
    assert parse_sites("3", 7) == [7, 7, 7]
    assert parse_sites("30/15/8", 7) == [30, 15, 8]
    for bad in ("x", "3/0", "0"):
        with pytest.raises(ValueError, match="--sites"):
            parse_sites(bad, 5)
    fourth = site_profile(3, 0)
    assert fourth.name == "SITE_D" and fourth == site_profile(3, 0) and 5.0 <= fourth.pet_fwhm_mm <= 8.0


def test_recur_synth_sites_writes_one_cohort_per_site(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path), "--sites", "2/1", "--size", "demo"])
    assert result.exit_code == 0, result.output
    listing = json.loads((tmp_path / "sites.json").read_text())
    assert [(s["name"], s["cases"]) for s in listing["sites"]] == [("SITE_A", 2), ("SITE_B", 1)]
    names_a = sorted(p.name for p in (tmp_path / "SITE_A" / "patients").iterdir())
    names_b = sorted(p.name for p in (tmp_path / "SITE_B" / "patients").iterdir())
    assert len(names_a) == 2 and len(names_b) == 1 and not set(names_a) & set(names_b)
    dicom = next(p for p in (tmp_path / "SITE_B" / "patients" / names_b[0]).rglob("*") if p.is_file())
    assert pydicom.dcmread(dicom).ManufacturerModelName == FIRST_SITES[1].scanner_model
    truth = json.loads((tmp_path / "SITE_B" / "ground_truth" / f"{names_b[0]}.json").read_text())
    assert truth["site"]["suv_calibration"] == 1.04
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--sites", "2/zero"])
    assert bad.exit_code == 2 and "--sites" in bad.output
