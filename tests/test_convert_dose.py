"""`recur convert inhouse` and the planned dose: the choice rules, every refusal, and the written dose.

Each hostile case is built from a real synthetic export (its RT Plan and RT Dose copied into a folder of
their own and changed with pydicom) and checked against the real case of that patient; one conversion of
a small cohort shows that a refused dose excludes only its patient and that the written dose matches the
analytic dose of the generator.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.ndimage import map_coordinates
from typer.testing import CliRunner

from nnunet_recur.dataset_conversion import errors as causes
from nnunet_recur.dataset_conversion.dose_conversion import find_planned_dose, parse_rx
from nnunet_recur.dataset_conversion.errors import ConversionError
from nnunet_recur.dataset_conversion.inhouse import InhouseOptions, load_inhouse_patient
from nnunet_recur.synthetic.cohort import make_cohort
from nnunet_recur.synthetic.patient import generate_patient
from nnunet_recur.synthetic.write_dicom import _Namer
from nnunet_recur.synthetic.write_rtdose import write_rtdose

SEED = 11


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("dose_cohort")
    make_cohort(out, 3, SEED, "inhouse-dicom", "demo")
    return out / "patients"


@pytest.fixture(scope="module")
def synthetic():
    """The first patient in memory (its analytic dose is the reference)."""
    return generate_patient(SEED, 0, "demo")


@pytest.fixture(scope="module")
def patient(cohort):
    """(folder, real case, RT files by modality) of the first patient."""
    folder = cohort / f"PAT_{SEED}_001"
    case = load_inhouse_patient(folder)
    rt = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        modality = pydicom.dcmread(path, stop_before_pixels=True).Modality
        if modality in ("RTDOSE", "RTPLAN"):
            rt[modality] = path
    return folder, case, rt


def _variant(tmp_path, patient, dose_change=None, plan_change=None, with_plan=True, name="v"):
    """A folder with the patient's RT Plan and RT Dose, changed by the given functions."""
    _, _, rt = patient
    folder = tmp_path / name
    folder.mkdir()
    for modality, change in (("RTDOSE", dose_change), ("RTPLAN", plan_change)):
        if modality == "RTPLAN" and not with_plan:
            continue
        ds = pydicom.dcmread(rt[modality])
        if change:
            change(ds)
        ds.save_as(folder / f"{modality.lower()}.dcm")
    return folder


def _refused(folder, case, cause, pattern, options=InhouseOptions()):
    with pytest.raises(ConversionError, match=pattern) as info:
        find_planned_dose(folder, case, options)
    message = str(info.value)
    assert info.value.cause == cause and "\n" not in message
    assert message.startswith(str(folder)), message  # names the file (inside the folder) or the folder
    return message


def _set(**values):
    def change(ds):
        for key, value in values.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)

    return change


def _negative(ds):
    values = np.frombuffer(ds.PixelData, dtype=f"<u{ds.BitsAllocated // 8}").astype(np.int64)
    values[len(values) // 2] = -3
    ds.PixelRepresentation = 1
    ds.PixelData = values.astype(f"<i{ds.BitsAllocated // 8}").tobytes()


def _far_away(ds):
    ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 900.0, *ds.ImagePositionPatient[1:]]


@pytest.mark.parametrize(
    ("change", "cause", "pattern"),
    [
        (_set(DoseUnits="RELATIVE"), causes.DOSE_INVALID, "DoseUnits RELATIVE"),
        (_set(FrameOfReferenceUID="1.2.3.4"), causes.FRAME_OF_REFERENCE_MISMATCH, "differs from the CT's"),
        (_set(GridFrameOffsetVector=None), causes.DOSE_INVALID, "missing GridFrameOffsetVector"),
        (_set(GridFrameOffsetVector=[0.0, 3.0, 6.0]), causes.DOSE_INVALID, "3 values for"),
        (_set(DoseGridScaling="0"), causes.DOSE_INVALID, "DoseGridScaling 0"),
        (_set(DoseGridScaling=None), causes.DOSE_INVALID, "missing or unreadable DoseGridScaling"),
        (_negative, causes.DOSE_INVALID, "negative doses"),
        (_far_away, causes.DOSE_NOT_COVERING_GTV, "leaves .* GTV voxels uncovered"),
    ],
)
def test_bad_dose_is_one_line_naming_the_file(tmp_path, patient, change, cause, pattern):
    _refused(_variant(tmp_path, patient, change), patient[1], cause, pattern)


def test_truncated_rtdose_is_refused(tmp_path, patient):
    folder = _variant(tmp_path, patient)
    path = folder / "rtdose.dcm"
    path.write_bytes(path.read_bytes()[:-5000])
    message = _refused(folder, patient[1], causes.DOSE_INVALID, "truncated|unreadable")
    assert "rtdose.dcm" in message


def test_plan_dose_prescriptions_and_rx(tmp_path, patient):
    folder, case, _ = patient
    planned = find_planned_dose(_variant(tmp_path, patient, name="plain"), case, InhouseOptions())
    assert planned.record["summation"] == "PLAN" and planned.record["prescription_source"] == "RTPLAN"
    assert planned.record["prescriptions_gy"] == [68.0, 60.0, 50.0]

    def no_prescription(ds):
        for item in ds.DoseReferenceSequence:
            del item.TargetPrescriptionDose

    bare = _variant(tmp_path, patient, plan_change=no_prescription, name="bare")
    assert find_planned_dose(bare, case, InhouseOptions()).record["prescriptions_gy"] == []
    with_rx = find_planned_dose(bare, case, InhouseOptions(rx=(70.0, 56.0)))
    assert (
        with_rx.record["prescriptions_gy"] == [70.0, 56.0] and with_rx.record["prescription_source"] == "--rx"
    )


def test_two_plan_doses_of_different_plans_stop_the_patient_until_dose_plan_chooses(tmp_path, patient):
    folder = _variant(tmp_path, patient)
    other = pydicom.dcmread(folder / "rtdose.dcm")
    first_plan = other.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    other.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    other.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    other.save_as(folder / "rtdose_other.dcm")
    message = _refused(folder, patient[1], causes.DOSE_AMBIGUOUS, "2 different plans")
    assert first_plan in message and "1.2.826.0.1.3680043.8.498.2" in message and "--dose-plan" in message
    chosen = find_planned_dose(folder, patient[1], InhouseOptions(dose_plan="1.2.826.0.1.3680043.8.498.2"))
    assert chosen.record["rtdose_sop_uids"] == ["1.2.826.0.1.3680043.8.498.1"]


def _quirk_folder(tmp_path, patient, synthetic, quirk, name):
    """The patient's RT Plan and the RT Dose files of a quirk (BEAM or FRACTION) in a folder."""
    source_folder, _, rt = patient
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(rt["RTPLAN"], folder / "rtplan.dcm")
    uid = str(pydicom.dcmread(rt["RTPLAN"], stop_before_pixels=True).SOPInstanceUID)
    paths = write_rtdose(synthetic, folder, _Namer(SEED, 1), uid, quirk)
    return folder, paths, synthetic


def test_beam_doses_are_summed_and_a_missing_sibling_is_refused(tmp_path, patient, synthetic):
    folder, paths, synthetic = _quirk_folder(tmp_path, patient, synthetic, "beam_doses", "beams")
    planned = find_planned_dose(folder, patient[1], InhouseOptions())
    assert planned.record["summation"] == "BEAM (sum of 5)" and len(planned.record["rtdose_sop_uids"]) == 5
    assert np.max(np.abs(sitk.GetArrayFromImage(planned.image) - synthetic.plan.dose_on_grid)) < 5e-3
    paths[2].unlink()
    message = _refused(folder, patient[1], causes.DOSE_INVALID, "lacks its siblings")
    assert "missing [3]" in message
    (folder / "rtplan.dcm").unlink()
    _refused(folder, patient[1], causes.DOSE_INVALID, "BEAM dose without its RT Plan")


def test_fraction_dose_is_multiplied_by_the_plans_fractions(tmp_path, patient, synthetic):
    folder, _, synthetic = _quirk_folder(tmp_path, patient, synthetic, "fraction_dose", "fraction")
    planned = find_planned_dose(folder, patient[1], InhouseOptions())
    assert planned.record["summation"] == "FRACTION x 34"
    assert np.max(np.abs(sitk.GetArrayFromImage(planned.image) - synthetic.plan.dose_on_grid)) < 0.02
    (folder / "rtplan.dcm").unlink()
    _refused(folder, patient[1], causes.DOSE_INVALID, "FRACTION dose without an RT Plan")


def test_missing_dose_converts_as_before_unless_required(tmp_path, patient):
    empty = tmp_path / "none"
    empty.mkdir()
    assert find_planned_dose(empty, patient[1], InhouseOptions()) is None
    _refused(empty, patient[1], causes.DOSE_MISSING, "no RT Dose found", InhouseOptions(require_dose=True))


def test_rx_option_is_parsed_or_refused():
    assert parse_rx("50, 68,60") == (68.0, 60.0, 50.0)
    for bad in ("68,abc", "-5", "0", "500"):
        with pytest.raises(ValueError, match="--rx"):
            parse_rx(bad)
    from nnunet_recur.dataset_conversion.cli import app

    result = CliRunner().invoke(app, ["inhouse", "x", "--dataset-id", "5", "--rx", "68,abc"])
    assert result.exit_code == 2 and "error: --rx" in result.output


@pytest.mark.slow
def test_conversion_writes_the_dose_and_a_bad_dose_loses_only_its_patient(tmp_path, cohort, synthetic):
    """Three patients: a good one, one with a RELATIVE dose, one without any dose."""
    from nnunet_recur.dataset_conversion.cli import app

    src = tmp_path / "src"
    shutil.copytree(cohort, src)
    names = sorted(p.name for p in src.iterdir())
    for modality, name in (("RTDOSE", names[1]), ("RTDOSE-gone", names[2])):
        for path in (src / name).rglob("*"):
            if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).Modality == "RTDOSE":
                if modality == "RTDOSE":
                    ds = pydicom.dcmread(path)
                    ds.DoseUnits = "RELATIVE"
                    ds.save_as(path)
                else:
                    path.unlink()
    raw, report = tmp_path / "raw", tmp_path / "report"
    args = ["inhouse", str(src), "--dataset-id", "531", "--raw-dir", str(raw), "--report-dir", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output  # exclusions are recorded, the batch succeeds
    exclusions = (report / "exclusions.csv").read_text().splitlines()
    assert len(exclusions) == 2 and exclusions[1].startswith(f"{names[1]},dose_invalid,")
    assert "DoseUnits RELATIVE" in exclusions[1] and f"{names[1]}/" in exclusions[1]  # names the file
    summary = json.loads((report / "summary.json").read_text())
    assert summary["converted"] == 2
    dataset = raw / "Dataset531_RecurOPSCC"
    doses = sorted(dataset.glob("dose*/*.nii.gz"))
    assert len(doses) == 1  # the patient without dose converted without one
    record = json.loads(doses[0].with_name(doses[0].name.replace(".nii.gz", ".json")).read_text())
    assert record["prescriptions_gy"] == [68.0, 60.0, 50.0] and record["summation"] == "PLAN"
    assert record["prescription_source"] == "RTPLAN" and 0 < record["covered_fraction"] <= 1
    part = doses[0].parent.name[len("dose") :]
    ct = sitk.ReadImage(str(dataset / f"images{part}" / doses[0].name.replace(".nii.gz", "_0000.nii.gz")))
    dose = sitk.ReadImage(str(doses[0]))
    assert dose.GetPixelID() == sitk.sitkFloat32 and dose.GetSize() == ct.GetSize()
    assert np.allclose(dose.GetOrigin(), ct.GetOrigin()) and np.allclose(dose.GetSpacing(), ct.GetSpacing())
    values = sitk.GetArrayFromImage(dose)
    covered = np.isfinite(values)
    assert record["covered_fraction"] == pytest.approx(covered.mean(), abs=1e-5)
    # the converter's resampling is trilinear interpolation of the generator's dose grid (quantisation only)
    k, j, i = np.nonzero(covered)
    assert np.allclose(dose.GetDirection(), np.eye(3).ravel())
    points = np.asarray(dose.GetOrigin()) + np.column_stack([i, j, k]) * np.asarray(dose.GetSpacing())
    grid = synthetic.plan.grid
    index = [(points[:, axis] - grid.origin[axis]) / grid.spacing[axis] for axis in (2, 1, 0)]
    trilinear = map_coordinates(synthetic.plan.dose_on_grid, index, order=1, mode="nearest")
    assert np.max(np.abs(values[covered] - trilinear)) < 1e-3
    # and the analytic dose at the CT voxel centres within the interpolation error of a 2.5-3 mm grid
    error = np.abs(values[covered] - synthetic.plan.dose_at(points))
    assert np.percentile(error, 95) < 0.6 and error.max() < 2.5, (np.percentile(error, 95), error.max())
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / f"labels{part}" / doses[0].name)))
    assert np.all(covered[label > 0])  # the relapse lies inside the dose grid
    # rerun: nothing to do, the dose stays
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 case(s) written" in again.output and doses[0].is_file()


def test_nifti_layout_dose_and_plan_json(tmp_path, patient, synthetic):
    case = patient[1]
    folder = tmp_path / "nifti"
    folder.mkdir()
    sitk.WriteImage(case.ct, str(folder / "ct.nii.gz"))
    dose = synthetic.plan.grid.to_image(synthetic.plan.dose_on_grid.astype(np.float32))
    sitk.WriteImage(dose, str(folder / "dose.nii.gz"))
    (folder / "plan.json").write_text(json.dumps({"prescriptions_gy": [50, 68, 60]}))
    planned = find_planned_dose(folder, case, InhouseOptions())
    assert planned.record["prescriptions_gy"] == [68.0, 60.0, 50.0]
    assert planned.record["prescription_source"] == "plan.json" and planned.record["summation"] == "PLAN"
    negative = sitk.GetArrayFromImage(dose)
    negative[0, 0, 0] = -1.0
    bad = sitk.GetImageFromArray(negative)
    bad.CopyInformation(dose)
    sitk.WriteImage(bad, str(folder / "dose.nii.gz"))
    _refused(folder, case, causes.DOSE_INVALID, "negative doses")
