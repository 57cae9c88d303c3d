"""The synthetic plan: the analytic dose model, its RT Dose/RT Plan export read back, quirks, zones."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.rtdose import read_rtdose
from nnunet_recur.dataset_conversion.rtplan import read_rtplan
from nnunet_recur.synthetic import plan as plan_module
from nnunet_recur.synthetic.patient import generate_patient
from nnunet_recur.synthetic.phantom import SOFT
from nnunet_recur.synthetic.relapse import zone_map
from nnunet_recur.synthetic.write_dicom import _Namer
from nnunet_recur.synthetic.write_rtdose import write_rtdose
from nnunet_recur.synthetic.write_rtplan import write_rtplan

RX = plan_module.PRESCRIPTIONS_GY


@pytest.fixture(scope="module")
def patients():
    return [generate_patient(7, i, "demo") for i in range(4)]


def test_dose_model_puts_each_95_percent_isodose_at_its_documented_distance():
    for level, distance in enumerate(plan_module.ISODOSE_95_MM):
        assert plan_module.dose_of_distance(distance) == pytest.approx(0.95 * RX[level], abs=1e-4)
    d = np.linspace(0.0, 150.0, 3001)
    dose = plan_module.dose_of_distance(d)
    assert np.all(np.diff(dose) < 0)  # falls monotonically away from the GTV
    assert 68.0 < dose[0] < 69.0 and dose[-1] < 3.0  # GTV ~101 %, low-dose bath far away
    # an edge of the model falls from 80 % to 20 % over 1.683 sigma: 6-8 mm
    step = plan_module._step(d, 50.0)
    width = np.interp(0.2, step[::-1], d[::-1]) - np.interp(0.8, step[::-1], d[::-1])
    assert 6.0 <= width <= 8.0


def test_hard_coded_edges_are_the_solution():
    from scipy.optimize import brentq

    edges = list(plan_module.DOSE_EDGES_MM)
    for level in (2, 1, 0):

        def gap(edge, level=level):
            trial = list(edges)
            trial[level] = edge
            return float(plan_module._profile(plan_module.ISODOSE_95_MM[level], trial)) - 0.95 * RX[level]

        assert brentq(gap, 0.0, 100.0, xtol=1e-9) == pytest.approx(edges[level], abs=1e-5)


def test_relapse_zones_fall_in_dose_as_documented(patients):
    for patient in patients:
        ct = patient.grids.ct
        gtv = (sitk.GetArrayFromImage(patient.gtvp) > 0) | (sitk.GetArrayFromImage(patient.gtvn) > 0)
        labels = np.where(sitk.GetArrayFromImage(patient.body) > 0, SOFT, 0)  # every body voxel may relapse
        zones = zone_map(labels, gtv, gtv, ct, patient.info["skull_base_z_mm"])
        k, j, i = np.nonzero(zones.codes)
        box = zones.box
        points = np.column_stack(
            [
                ct.origin[0] + (i + box[2].start) * ct.spacing[0],
                ct.origin[1] + (j + box[1].start) * ct.spacing[1],
                ct.origin[2] + (k + box[0].start) * ct.spacing[2],
            ]
        )
        dose = patient.plan.dose_at(points)
        codes = zones.codes[k, j, i]
        assert np.all(dose[codes <= 2] >= 0.95 * RX[0])  # pet_gtv, gtv_rest: in-field
        assert np.all((dose[codes == 4] >= 0.95 * RX[2]) & (dose[codes == 4] < 0.95 * RX[0]))  # ctv3 elective
        assert np.all(dose[codes == 5] < 0.95 * RX[2] + 1e-6)  # outside: out of field
        assert all(np.any(codes == c) for c in (1, 3, 4, 5))
        assert np.mean(dose[codes == 3] >= 0.95 * RX[0]) > 0.5  # ctv1: mostly in-field (8 of its 10 mm)
    for patient in patients:  # the ground truth's PO dose is the formula at the PO
        for po in patient.info["points_of_origin"]:
            analytic = float(patient.plan.dose_at([po["position_mm"]])[0])
            assert po["dose_gy"] == pytest.approx(analytic, abs=1e-4)


def _export(patient, folder, quirk=None):
    namer = _Namer(patient.seed, patient.number)
    plan_path, plan_uid = write_rtplan(patient, folder, namer)
    return plan_path, plan_uid, write_rtdose(patient, folder, namer, plan_uid, quirk)


def test_rtdose_read_back_equals_the_analytic_dose(patients, tmp_path):
    """Both offset forms and both pixel widths: read back within the quantisation step."""
    seen = set()
    for n, patient in enumerate(patients):
        for form, bits in (("relative", 16), ("absolute", 32)):
            if (form, bits) in seen and n:
                continue
            seen.add((form, bits))
            patient = dataclasses.replace(
                patient, plan=dataclasses.replace(patient.plan, offsets_form=form, bits=bits)
            )
            folder = tmp_path / f"{n}{form}{bits}"
            plan_path, plan_uid, (dose_path,) = _export(patient, folder)
            dose = read_rtdose(dose_path)
            expected = patient.plan.dose_on_grid
            got = sitk.GetArrayFromImage(dose.image)
            assert got.shape == expected.shape and dose.offsets_form == form
            step = float(pydicom.dcmread(dose_path, stop_before_pixels=True).DoseGridScaling)
            assert np.max(np.abs(got - expected)) <= step / 2 + 1e-5 * 70
            assert dose.image.GetOrigin() == pytest.approx(patient.plan.grid.origin, abs=1e-3)
            assert dose.image.GetSpacing() == pytest.approx(patient.plan.grid.spacing)
            assert dose.dose_summation_type == "PLAN" and dose.referenced_plan_uid == plan_uid
            plan = read_rtplan(plan_path)
            assert plan.prescriptions_gy == RX and plan.number_of_fractions_planned == 34
            assert plan.frame_of_reference_uid == dose.frame_of_reference_uid
    assert len(seen) == 2


def test_dose_quirks_read_back(patients, tmp_path):
    patient = patients[0]
    expected = patient.plan.dose_on_grid
    _, _, beams = _export(patient, tmp_path / "beams", "beam_doses")
    beam_doses = [read_rtdose(p) for p in beams]
    assert [d.referenced_beam_numbers for d in beam_doses] == [(1,), (2,), (3,), (4,), (5,)]
    total = sum(sitk.GetArrayFromImage(d.image).astype(np.float64) for d in beam_doses)
    assert np.max(np.abs(total - expected)) < 5e-3
    _, _, (fraction,) = _export(patient, tmp_path / "fraction", "fraction_dose")
    fraction_dose = read_rtdose(fraction)
    assert fraction_dose.dose_summation_type == "FRACTION"
    assert np.max(np.abs(sitk.GetArrayFromImage(fraction_dose.image) * 34 - expected)) < 0.02
    _, _, (desc,) = _export(patient, tmp_path / "desc", "descending_nonuniform_offsets")
    ds = pydicom.dcmread(desc, stop_before_pixels=True)
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    assert offsets[0] == 0 and np.all(np.diff(offsets) < 0) and len(set(np.round(np.diff(offsets), 3))) == 2
    read = read_rtdose(desc)
    assert read.offsets_descending and read.uniform_resampled
    got = sitk.GetArrayFromImage(read.image)
    assert got.shape == expected.shape
    kept = [k for k in range(expected.shape[0]) if not (0 < k < expected.shape[0] // 2 and k % 3 == 0)]
    np.testing.assert_allclose(got[kept], expected[kept], atol=6e-4)  # written planes: exact
    sz = patient.plan.grid.spacing[2]
    slope = plan_module.PRESCRIPTIONS_GY[2] / (math.sqrt(2 * math.pi) * plan_module.PENUMBRA_SIGMA_MM)
    assert np.max(np.abs(got - expected)) < slope * sz  # dropped planes: linear interpolation error


def test_dose_quirks_go_to_clean_patients_only():
    from nnunet_recur.synthetic.cohort import assign_defects

    defects = assign_defects(20, 3)
    quirks = plan_module.assign_dose_quirks(20, 3, set(defects))
    assert sorted(quirks.values()) == sorted(plan_module.DOSE_QUIRKS)
    assert not set(quirks) & set(defects)
    assert plan_module.assign_dose_quirks(20, 3, set(defects)) == quirks  # deterministic
