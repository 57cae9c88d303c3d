"""`recur-eval dp-qa`: plan QA against a dose-painting prescription, on RT Dose files written by the
project's own writer on a small synthetic grid (headers only, no CT pixels needed): an identical plan gives
Q = 1 and Q_F = 0, a plan scaled by s gives Q = s, a plan shifted by 3 mm loses a pinned share of the
[0.95, 1.05] band, another frame of reference is refused with one line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from nnunet_recur.evaluation.cli import app
from nnunet_recur.prediction.rtdose_writer import build_rtdose
from nnunet_recur.prediction.rtplan_writer import build_prescription_plan, plan_reference
from nnunet_recur.prediction.rtstruct_writer import RoiSpec, build_rtstruct

SHAPE = (16, 28, 28)  # z, y, x
SPACING = 2.0  # mm, every axis


def ct_headers(frame: str, shift_x: float = 0.0) -> list[Dataset]:
    study, series = generate_uid(), generate_uid()
    headers = []
    for k in range(SHAPE[0]):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName = "QA", "QA^Phantom"
        ds.ImagePositionPatient = [-27.0 + shift_x, -27.0, -15.0 + SPACING * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [SPACING, SPACING]
        ds.SliceThickness = SPACING
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        headers.append(ds)
    return headers


def prescription_array() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    r2 = ((z - 7.5) ** 2 + (y - 13.5) ** 2 + (x - 13.5) ** 2) * SPACING**2
    return 68.0 + 20.0 * np.exp(-r2 / (2 * 5.0**2))


def region() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return ((z - 7.5) ** 2 + (y - 13.5) ** 2 + (x - 13.5) ** 2) * SPACING**2 <= 10.0**2


def write_dose(path, headers, dose):
    rs = build_rtstruct(
        headers,
        [RoiSpec("DP_region", region(), (255, 255, 255))],
        software_version="t",
        algorithm_description="t",
    )
    plan = build_prescription_plan(
        headers,
        rs.SOPInstanceUID,
        mean_gy=70,
        min_gy=68,
        max_gy=80,
        region_roi_number=1,
        software_version="t",
    )
    build_rtdose(headers, dose, software_version="t", plan_reference=plan_reference(plan)).save_as(
        path, enforce_file_format=True
    )
    return rs


@pytest.fixture(scope="module")
def doses(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpqa")
    frame = generate_uid()
    headers = ct_headers(frame)
    rx = prescription_array()
    rs = write_dose(root / "rx.dcm", headers, rx)
    rs.save_as(root / "rs.dcm", enforce_file_format=True)
    write_dose(root / "same.dcm", copy.deepcopy(headers), rx)
    write_dose(root / "scaled.dcm", copy.deepcopy(headers), rx * 1.03)
    write_dose(root / "shifted.dcm", ct_headers(frame, shift_x=3.0), rx)
    write_dose(root / "other_frame.dcm", ct_headers(generate_uid()), rx)
    return root


def qa(root, planned: str, out: str, region_args=True):
    args = ["dp-qa", "--prescription", str(root / "rx.dcm"), "--planned", str(root / planned)]
    if region_args:
        args += ["--region", "DP_region", "--rtstruct", str(root / "rs.dcm")]
    return CliRunner().invoke(app, [*args, "--out", str(root / out)])


def test_identical_plan_gives_q_1_everywhere_and_qf_0(doses):
    result = qa(doses, "same.dcm", "same")
    assert result.exit_code == 0, result.output
    summary = json.loads((doses / "same" / "dp_qa.json").read_text())
    q = summary["quality"]
    assert q["fraction_q_in_0.95_1.05"] == 1.0 and q["quality_factor_qf"] < 1e-4
    assert abs(q["q_min"] - 1) < 1e-4 and abs(q["q_max"] - 1) < 1e-4
    assert summary["region_voxels"] == int(region().sum()) and summary["not_covered_voxels"] == 0
    assert (doses / "same" / "dp_qa.png").stat().st_size > 1000
    assert "Q_F" in (doses / "same" / "dp_qa.md").read_text()


def test_plan_scaled_by_s_gives_q_equal_s(doses):
    from nnunet_recur.evaluation.dp_qa import run_dp_qa

    result = run_dp_qa(doses / "rx.dcm", doses / "scaled.dcm", "DP_region", doses / "rs.dcm")
    np.testing.assert_allclose(result.q, 1.03, atol=2e-4)
    assert result.summary["quality"]["quality_factor_qf"] == pytest.approx(0.03, abs=2e-4)
    assert result.summary["quality"]["fraction_q_in_0.95_1.05"] == 1.0


def test_plan_shifted_by_3_mm_lowers_the_band_fraction_by_a_pinned_amount(doses):
    from nnunet_recur.evaluation.dp_qa import run_dp_qa

    same = run_dp_qa(doses / "rx.dcm", doses / "same.dcm", "DP_region", doses / "rs.dcm")
    shifted = run_dp_qa(doses / "rx.dcm", doses / "shifted.dcm", "DP_region", doses / "rs.dcm")
    drop = (
        same.summary["quality"]["fraction_q_in_0.95_1.05"]
        - shifted.summary["quality"]["fraction_q_in_0.95_1.05"]
    )
    # 20 Gy Gaussian boost (sigma 5 mm) on 68 Gy, region r <= 10 mm, 2 mm voxels: a 3 mm shift moves
    # the steep flanks out of the +-5 % band. Pinned from this geometry (analytic: the voxels where
    # |D(x - 3 mm) / D(x) - 1| > 0.05).
    z, y, x = np.indices(SHAPE)
    rx = prescription_array()
    r2_shift = ((z - 7.5) ** 2 + (y - 13.5) ** 2 + (x - 13.5 - 1.5) ** 2) * SPACING**2
    moved = 68.0 + 20.0 * np.exp(-r2_shift / (2 * 5.0**2))
    expected = float(np.mean(np.abs(moved[region()] / rx[region()] - 1) > 0.05))
    assert drop == pytest.approx(expected, abs=0.02)
    assert drop == pytest.approx(0.2319, abs=0.005)  # 128 of the 552 region voxels leave the band
    assert shifted.summary["quality"]["quality_factor_qf"] > 0.02


def test_another_frame_of_reference_is_refused_with_one_line(doses):
    result = qa(doses, "other_frame.dcm", "other", region_args=False)
    assert result.exit_code == 2
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "FrameOfReferenceUID" in lines[0]
    assert not (doses / "other" / "dp_qa.json").exists()


def test_region_without_rtstruct_and_a_missing_roi_are_one_line_errors(doses):
    base = ["dp-qa", "--prescription", str(doses / "rx.dcm"), "--planned", str(doses / "same.dcm")]
    result = CliRunner().invoke(app, [*base, "--region", "DP_region", "--out", str(doses / "x")])
    assert result.exit_code == 2 and "--rtstruct" in result.output
    region = ["--region", "PTV_nope", "--rtstruct", str(doses / "rs.dcm")]
    result = CliRunner().invoke(app, [*base, *region, "--out", str(doses / "x")])
    assert result.exit_code == 2 and "no ROI 'PTV_nope'" in result.output and "Traceback" not in result.output
