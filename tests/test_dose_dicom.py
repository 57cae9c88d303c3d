"""The dose-painting DICOM objects on a synthetic planning CT (no model): the RT Dose read back with pydicom,
dicompyler-core and this project's RT Dose reader equals dose_prescription.nii.gz within DoseGridScaling/2
at every voxel, on the CT's geometry; and dciodvfy (dicom3tools) reports 0 errors on EVERY DICOM object
`recur predict` writes (RTSTRUCT, both SEGs, RT Dose, RT Plan, Parametric Map, level RTSTRUCT)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from planning_ct import read_ct_and_gtv

from nnunet_recur.prediction import dose_outputs
from nnunet_recur.prediction.dose_painting import DoseMapOptions

# Warnings that stay, each with its reason (docs/prediction.md lists them): pattern -> object.
KNOWN_WARNINGS = {
    "PM": [r"attribute <Laterality>"],  # Type 2C: empty, since a head-and-neck target is unpaired
}


@pytest.fixture(scope="module")
def written(tmp_path_factory, synthetic_dicom_patient):
    """A synthetic DICOM patient, a probability blob on its GTV, and every DICOM object written."""
    from nnunet_recur.prediction.rtstruct_writer import RoiSpec, build_rtstruct
    from nnunet_recur.prediction.seg_writer import build_binary_seg, build_probability_seg

    root = tmp_path_factory.mktemp("dose_dicom")
    patient = synthetic_dicom_patient
    series, ct, gtv = read_ct_and_gtv(patient)
    z, y, x = np.indices(gtv.shape)
    centre = np.argwhere(gtv).mean(axis=0)
    probability = np.exp(
        -(((z - centre[0]) * 4) ** 2 + ((y - centre[1]) * 3) ** 2 + ((x - centre[2]) * 3) ** 2) / 200
    )
    probability = probability.astype(np.float32)
    out = root / "out"
    out.mkdir()
    options = DoseMapOptions(base_gy=68, boost_gy=80, levels=5)
    dose = dose_outputs.compute(patient, ct, probability, gtv, options, {}, True)
    dose_outputs.write(out, dose, ct, series.headers, "test")
    rois = [
        RoiSpec("Recur_p50", probability > 0.5, (255, 0, 0)),
        RoiSpec("GTV_used", gtv, (255, 255, 255), "GTV"),
    ]
    build_rtstruct(series.headers, rois, software_version="test", algorithm_description="t").save_as(
        out / "RS_recur_prediction.dcm", enforce_file_format=True
    )
    build_binary_seg(series.headers, rois, "test").save_as(out / "SEG_recur_rois.dcm")
    build_probability_seg(series.headers, probability, "test").save_as(out / "SEG_recur_probability.dcm")
    return out, ct, series, dose


def _scaling(path: Path) -> float:
    return float(pydicom.dcmread(path).DoseGridScaling)


def test_rt_dose_read_back_with_pydicom_equals_the_nifti_within_half_the_scaling(written):
    out, ct, series, _ = written
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / dose_outputs.DOSE_NIFTI))).astype(np.float64)
    ds = pydicom.dcmread(out / dose_outputs.RTDOSE)
    scaling = float(ds.DoseGridScaling)
    assert ds.DoseUnits == "GY" and ds.DoseSummationType == "PLAN" and ds.Modality == "RTDOSE"
    assert "NOT CALCULATED" in ds.DoseComment and "RESEARCH TOOL, NOT A MEDICAL DEVICE" in ds.DoseComment
    assert scaling / 2 <= 0.01
    dose = ds.pixel_array.astype(np.float64) * scaling
    assert dose.shape == nifti.shape
    assert np.abs(dose - nifti).max() <= scaling / 2 + 1e-6
    first = series.headers[0]
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert ds.PatientID == first.PatientID and ds.StudyInstanceUID == first.StudyInstanceUID
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert offsets[0] == 0.0  # relative form
    np.testing.assert_allclose(np.diff(offsets), ct.GetSpacing()[2], atol=1e-3)
    plan = pydicom.dcmread(out / dose_outputs.RTPLAN)
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert not hasattr(plan, "BeamSequence") and plan.ApprovalStatus == "UNAPPROVED"


def test_rt_dose_read_back_with_dicompyler_core_equals_the_nifti(written):
    out, ct, series, _ = written
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):  # dicompyler-core 0.5.6 imports pydicom 2's name
        pydicom.dicomio.read_file = pydicom.dcmread
    from dicompylercore import dicomparser

    parser = dicomparser.DicomParser(str(out / dose_outputs.RTDOSE))
    data = parser.GetDoseData()
    scaling = float(data["dosegridscaling"])
    assert data["doseunits"] == "GY" and data["frames"] == len(series.headers)
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / dose_outputs.DOSE_NIFTI))).astype(np.float64)
    for k, header in enumerate(series.headers):
        plane = parser.GetDoseGrid(float(header.ImagePositionPatient[2])) * scaling
        assert np.abs(plane - nifti[k]).max() <= scaling / 2 + 1e-6, k


def test_rt_dose_geometry_equals_the_planning_ct(written):
    out, ct, _, _ = written
    from nnunet_recur.dataset_conversion.rtdose import read_rtdose

    read = read_rtdose(out / dose_outputs.RTDOSE)
    nifti = sitk.ReadImage(str(out / dose_outputs.DOSE_NIFTI))
    for image in (read.image, nifti):
        np.testing.assert_allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-4)
        np.testing.assert_allclose(image.GetDirection(), ct.GetDirection(), atol=1e-6)
        assert image.GetSize() == ct.GetSize()
    assert read.offsets_form == "relative"
    scaling = _scaling(out / dose_outputs.RTDOSE)
    diff = sitk.GetArrayFromImage(read.image) - sitk.GetArrayFromImage(nifti)
    assert np.abs(diff).max() <= scaling / 2 + 1e-4


def test_parametric_map_and_level_rois_hold_the_same_prescription(written):
    import highdicom as hd

    out, _, _, dose = written
    pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(out / dose_outputs.PARAMETRIC_MAP))
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "Gy"
    values = pm.pixel_array.astype(np.float64) * float(mapping.RealWorldValueSlope)
    positions = [
        float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in pm.PerFrameFunctionalGroupsSequence
    ]
    order = np.argsort(positions)
    assert np.abs(values[order] - dose.dose).max() <= float(mapping.RealWorldValueSlope) / 2 + 1e-6
    levels = pydicom.dcmread(out / dose_outputs.LEVEL_RTSTRUCT)
    names = [r.ROIName for r in levels.StructureSetROISequence]
    assert names[0] == "DP_region"
    doses = [float(re.fullmatch(r"DP_(\d+\.\d)Gy", n).group(1)) for n in names[1:]]
    assert doses == sorted(doses) and len(doses) == len(dose.summary["levels"]) >= 3
    assert doses[0] == pytest.approx(68.0, abs=0.05) and doses[-1] <= 80.0


def test_dciodvfy_reports_no_error_on_every_dicom_object_we_write(written, dciodvfy):
    out = written[0]
    files = sorted(out.glob("*.dcm"))
    assert {f.name for f in files} == {
        "RS_recur_prediction.dcm",
        "SEG_recur_rois.dcm",
        "SEG_recur_probability.dcm",
        dose_outputs.RTDOSE,
        dose_outputs.RTPLAN,
        dose_outputs.PARAMETRIC_MAP,
        dose_outputs.LEVEL_RTSTRUCT,
    }
    for path in files:
        errors, warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
        known = KNOWN_WARNINGS.get(path.name.split("_")[0], [])
        unexplained = [w for w in warnings if not any(re.search(k, w) for k in known)]
        assert unexplained == [], (path.name, unexplained)


def test_rtstruct_carries_the_position_reference_indicator_of_the_ct(written):
    out, _, series, _ = written
    for name in ("RS_recur_prediction.dcm", dose_outputs.LEVEL_RTSTRUCT):
        ds = pydicom.dcmread(out / name)
        assert "PositionReferenceIndicator" in ds  # Type 2 in the Frame of Reference module (issue 21 §5)
        assert ds.PositionReferenceIndicator == series.headers[0].get("PositionReferenceIndicator", "")


def test_region_roi_comes_from_the_patients_rtstruct_and_a_wrong_name_lists_the_rois(
    written, synthetic_dicom_patient
):
    out, ct, _, dose = written
    from nnunet_recur.dataset_conversion.dicom_series import scan_folder
    from nnunet_recur.dataset_conversion.rtstruct import read_rtstruct

    structure = read_rtstruct(
        next(s for s in scan_folder(synthetic_dicom_patient) if s.modality == "RTSTRUCT").files[0]
    )
    name = next(r.name for r in structure.rois if r.name.upper().startswith("GTV") and r.contours)
    probability = np.zeros(tuple(reversed(ct.GetSize())), np.float32)
    options = DoseMapOptions(region_roi=name.lower())  # any case
    roi_map = dose_outputs.compute(synthetic_dicom_patient, ct, probability, None, options, {}, True)
    assert roi_map.summary["region"]["definition"] == f"ROI {name.lower()!r}"
    assert 0 < roi_map.region.sum() < dose.region.sum()  # the GTV alone, without the 5 mm margin
    with pytest.raises(ValueError, match=r"--region-roi 'PTV_none': no such ROI .*\(ROIs: "):
        dose_outputs.compute(
            synthetic_dicom_patient, ct, probability, None, DoseMapOptions(region_roi="PTV_none"), {}, True
        )
