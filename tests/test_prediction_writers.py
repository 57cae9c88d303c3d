"""The clinical writers of `recur predict`, proven by reading their files back with other code.

RTSTRUCT: our own reader (dataset_conversion.rtstruct), dicompyler-core (its contour parser and its
matplotlib voxel-centre rasteriser, XOR over a slice's contours) and rt-utils (which must accept every SOP
reference and finds each ROI); on the real IBSI STS_001 planning CT and on a synthetic patient's CT.
SEG: highdicom reads it back voxel for voxel, on the CT's geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from planning_ct import read_ct_and_gtv
from real_data import REAL

from nnunet_recur.dataset_conversion.dicom_series import read_image_series, scan_folder
from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct
from nnunet_recur.prediction.rtstruct_writer import RoiSpec, build_rtstruct, trace_pixel_edges
from nnunet_recur.prediction.seg_writer import build_binary_seg, build_probability_seg

IBSI = REAL / "ibsi_validation_STS_001"
IBSI_CT = IBSI / "dicom" / "CT" / "image"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


# -- tracing ---------------------------------------------------------------------------------------------
def test_pixel_edge_loops_fill_back_to_the_mask_with_holes_islands_and_corner_touches():
    rng = np.random.default_rng(0)
    reference = sitk.Image(17, 13, 1, sitk.sitkUInt8)
    masks = [rng.random((13, 17)) > 0.5 for _ in range(100)]
    ring = np.zeros((13, 17), bool)
    ring[2:9, 2:9] = True
    ring[4:7, 4:7] = False  # a hole
    ring[10, 12] = ring[11, 13] = True  # two pixels touching at one corner
    for mask in [*masks, ring]:
        contours = [np.c_[loop - 0.5, np.zeros(len(loop))] for loop in trace_pixel_edges(mask)]
        back = sitk.GetArrayFromImage(rasterise_roi(contours, reference))[0]
        np.testing.assert_array_equal(back, mask)
    area = sum(
        abs(_signed_area(loop)) * (1 if _signed_area(loop) > 0 else -1) for loop in trace_pixel_edges(ring)
    )
    assert area == ring.sum()  # edge-traced contours enclose exactly the voxel area (right TPS volume)


def _signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# -- helpers ---------------------------------------------------------------------------------------------
def planning_ct(folder: Path):
    series = next(s for s in scan_folder(folder) if s.modality == "CT")
    return series, read_image_series(series)


def roi_specs_for(ct: sitk.Image, gtv: np.ndarray) -> list[RoiSpec]:
    """The GTV, a ring with a hole and a separate island, and an empty ROI."""
    shape = gtv.shape
    z, y, x = np.nonzero(gtv)
    ring = np.zeros(shape, bool)
    zc, yc, xc = int(np.median(z)), int(np.median(y)), int(np.median(x))
    ring[zc - 2 : zc + 3, yc - 12 : yc + 12, xc - 12 : xc + 12] = True
    ring[zc - 2 : zc + 3, yc - 5 : yc + 5, xc - 5 : xc + 5] = False
    ring[zc, max(0, yc - 20) : yc - 16, xc : xc + 4] = True  # island on the same slice
    return [
        RoiSpec("GTV_copy", gtv.astype(bool), (255, 0, 0)),
        RoiSpec("Recur_ring", ring, (0, 255, 0)),
        RoiSpec("Recur_empty", np.zeros(shape, bool), (0, 0, 255)),
    ]


def dicompyler_masks(rtstruct_path: Path, ct: sitk.Image) -> dict[str, np.ndarray]:
    """Masks on the CT grid rasterised by dicompyler-core's voxel-centre test (`dvhcalc.get_contour_mask`,
    matplotlib paths, XOR over a slice's contours, as its DVH code does). The contours are taken straight
    from the pydicom dataset (dicompyler-core's own parser needs pydicom < 3)."""
    from dicompylercore import dvhcalc

    ds = pydicom.dcmread(rtstruct_path)
    nx, ny, nz = ct.GetSize()
    direction = np.asarray(ct.GetDirection()).reshape(3, 3)
    assert np.allclose(direction, np.eye(3)), "this check assumes an axial CT without flips"
    x_lut = ct.GetOrigin()[0] + np.arange(nx) * ct.GetSpacing()[0]
    y_lut = ct.GetOrigin()[1] + np.arange(ny) * ct.GetSpacing()[1]
    grid_x, grid_y = np.meshgrid(x_lut, y_lut)
    points = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    dd = {"lut": (x_lut, y_lut), "x_lut_index": 0, "rows": ny, "columns": nx}
    z_positions = ct.GetOrigin()[2] + np.arange(nz) * ct.GetSpacing()[2]
    names = {item.ROINumber: item.ROIName for item in ds.StructureSetROISequence}
    out = {}
    for roi_contour in ds.ROIContourSequence:
        mask = np.zeros((nz, ny, nx), bool)
        for contour in roi_contour.get("ContourSequence", []):
            xyz = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            k = int(np.argmin(np.abs(z_positions - xyz[0, 2])))
            mask[k] ^= dvhcalc.get_contour_mask(dd, 0, points, [tuple(p) for p in xyz[:, :2]]).astype(bool)
        out[names[roi_contour.ReferencedROINumber]] = mask
    return out


def check_rtstruct(path: Path, series, ct: sitk.Image, rois: list[RoiSpec], ct_folder: Path) -> None:
    ds = pydicom.dcmread(path)
    first = series.headers[0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3" and ds.Modality == "RTSTRUCT"
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert ds.StudyInstanceUID == first.StudyInstanceUID and ds.PatientID == first.get("PatientID", "")
    assert ds.SeriesInstanceUID != first.SeriesInstanceUID and pydicom.uid.UID(ds.SOPInstanceUID).is_valid
    assert (
        "NOT A MEDICAL DEVICE" in ds.SeriesDescription
        and "NOT A MEDICAL DEVICE" in ds.StructureSetDescription
    )
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    series_ref = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == first.SeriesInstanceUID
    sop_uids = set(series.sop_instance_uids)
    assert {item.ReferencedSOPInstanceUID for item in series_ref.ContourImageSequence} == sop_uids
    z_by_sop = {h.SOPInstanceUID: float(h.ImagePositionPatient[2]) for h in series.headers}
    for structure_roi in ds.StructureSetROISequence:
        assert structure_roi.ROIGenerationAlgorithm == "AUTOMATIC" and len(structure_roi.ROIName) <= 64
    for roi_contour in ds.ROIContourSequence:
        assert len(roi_contour.ROIDisplayColor) == 3
        for contour in roi_contour.get("ContourSequence", []):
            sop = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            assert sop in sop_uids  # every referenced SOP exists
            zs = np.asarray(contour.ContourData, dtype=float)[2::3]
            assert np.all(zs == pytest.approx(z_by_sop[sop], abs=1e-3))  # on that slice's position

    ours = read_rtstruct(path)
    independent = dicompyler_masks(path, ct)
    for spec in rois:
        back = sitk.GetArrayFromImage(rasterise_roi(ours.roi(spec.name).contours, ct))
        assert dice(back, spec.mask) >= 0.98
        np.testing.assert_array_equal(back.astype(bool), spec.mask)  # edge tracing is exact
        assert dice(independent[spec.name], spec.mask) >= 0.98, spec.name

    from rt_utils import RTStructBuilder

    loaded = RTStructBuilder.create_from(str(ct_folder), str(path))  # validates every SOP reference
    assert set(loaded.get_roi_names()) == {spec.name for spec in rois}
    square = ct.GetSize()[0] == ct.GetSize()[1]  # rt-utils 1.2.7 allocates (Columns, Rows): only square works
    for spec in rois:
        if spec.mask.any() and square:
            rt_mask = np.moveaxis(loaded.get_roi_mask_by_name(spec.name), -1, 0)  # (z, y, x)
            assert rt_mask.shape == spec.mask.shape
            # rt-utils rounds vertices to voxel centres and fills inclusively: it may add part of the
            # boundary ring but never loses a voxel
            assert not (spec.mask & ~rt_mask).any()
            print(f"rt-utils Dice {spec.name}: {dice(rt_mask, spec.mask):.3f}")


def check_seg(ct_headers, ct: sitk.Image, rois: list[RoiSpec], tmp_path: Path) -> None:
    import highdicom as hd

    nonempty = [r for r in rois if r.mask.any()]
    path = tmp_path / "seg.dcm"
    build_binary_seg(ct_headers, nonempty, "test").save_as(path)
    seg = hd.seg.segread(path)
    assert "NOT A MEDICAL DEVICE" in seg.SeriesDescription
    assert seg.FrameOfReferenceUID == ct_headers[0].FrameOfReferenceUID
    sop_uids = [h.SOPInstanceUID for h in ct_headers]
    for number, spec in enumerate(nonempty, start=1):
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=sop_uids, segment_numbers=[number], ignore_spatial_locations=True
        )
        np.testing.assert_array_equal(pixels[..., 0].astype(bool), spec.mask)
    volume = seg.get_volume(combine_segments=False)  # geometry of the read-back
    affine = volume.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert spacing[1:] == pytest.approx(ct.GetSpacing()[:2][::-1], rel=1e-5) or spacing[:2] == pytest.approx(
        ct.GetSpacing()[:2][::-1], rel=1e-5
    )
    origin_frames = [
        np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        for item in seg.PerFrameFunctionalGroupsSequence
    ]
    ct_positions = {
        round(float(h.ImagePositionPatient[2]), 3): np.asarray(h.ImagePositionPatient, float)
        for h in ct_headers
    }
    for position in origin_frames:
        np.testing.assert_allclose(position, ct_positions[round(position[2], 3)], atol=1e-4)
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    np.testing.assert_allclose(
        orientation, np.asarray(ct.GetDirection()).reshape(3, 3)[:, :2].T.ravel(), atol=1e-6
    )
    pixel_spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert pixel_spacing == pytest.approx([ct.GetSpacing()[1], ct.GetSpacing()[0]], rel=1e-6)

    probability = np.zeros(nonempty[0].mask.shape, np.float32)
    probability[nonempty[0].mask] = 0.8
    probability[nonempty[1].mask] = 0.25
    build_probability_seg(ct_headers, probability, "test").save_as(tmp_path / "prob.dcm")
    fractional = hd.seg.segread(tmp_path / "prob.dcm")
    assert (
        fractional.SegmentationType == "FRACTIONAL" and fractional.SegmentationFractionalType == "PROBABILITY"
    )
    back = fractional.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids, segment_numbers=[1], ignore_spatial_locations=True
    )[..., 0]
    np.testing.assert_allclose(back, probability, atol=1 / 255)


# -- real IBSI STS_001 planning CT -----------------------------------------------------------------------
@pytest.mark.skipif(not IBSI_CT.is_dir(), reason="real test data (../shared/testdata/real) not present")
def test_rtstruct_and_seg_round_trip_on_the_real_ibsi_planning_ct(tmp_path):
    series, ct = planning_ct(IBSI_CT)
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(IBSI / "nifti" / "CT_mask.nii.gz"))) > 0
    assert gtv.shape == tuple(reversed(ct.GetSize())) and gtv.any()
    rois = roi_specs_for(ct, gtv)
    path = tmp_path / "RS.dcm"
    build_rtstruct(series.headers, rois, software_version="test", algorithm_description="round trip").save_as(
        path, enforce_file_format=True
    )
    check_rtstruct(path, series, ct, rois, IBSI_CT)
    check_seg(series.headers, ct, rois, tmp_path)


# -- synthetic patient -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_patient(tmp_path_factory):
    from nnunet_recur.synthetic.cohort import make_cohort

    out = tmp_path_factory.mktemp("synth_writers")
    make_cohort(out, 1, 3, "inhouse-dicom", "small", False)
    return next((out / "patients").iterdir())


def test_rtstruct_and_seg_round_trip_on_a_synthetic_patient(synthetic_patient, tmp_path):
    series, ct, gtv = read_ct_and_gtv(synthetic_patient)
    rois = roi_specs_for(ct, gtv)
    path = tmp_path / "RS.dcm"
    build_rtstruct(series.headers, rois, software_version="test", algorithm_description="round trip").save_as(
        path, enforce_file_format=True
    )
    ct_only = tmp_path / "ct_only"  # rt-utils reads every image in a folder: give it the CT series alone
    ct_only.mkdir()
    for file in series.files:
        (ct_only / file.name).symlink_to(file)
    check_rtstruct(path, series, ct, rois, ct_only)
    check_seg(series.headers, ct, rois, tmp_path)
