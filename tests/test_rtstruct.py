"""RTSTRUCT -> masks: IBSI reference masks (Dice 1.0), real-file quirks, and synthetic geometry cases."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_files import new_dataset
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from real_data import real

from nnunet_recur.dataset_conversion.dicom_series import image_series_in, read_image_series
from nnunet_recur.dataset_conversion.errors import ConversionError
from nnunet_recur.dataset_conversion.rtstruct import (
    RoiPlacement,
    rasterise_roi,
    read_rtstruct,
    rtstruct_to_masks,
    sanitise_roi_name,
)

FOR_UID = "1.2.826.0.1.3680043.8.498.77"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def reference_grid(size=(20, 16, 5), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write_rtstruct(path: Path, rois: dict[str, list[np.ndarray]], frame_of_reference=FOR_UID) -> Path:
    """Minimal RTSTRUCT with CLOSED_PLANAR contours ((N, 3) mm arrays); [] = an ROI without contours."""
    ds = new_dataset("RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3")
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_of_reference
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ds.StructureSetROISequence = []
    ds.ROIContourSequence = []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ContourSequence = []
        for points in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6g}" for v in np.asarray(points, dtype=float).ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def square(x0, y0, x1, y1, z):
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


# --------------------------------------------------------------------------------------------------
# IBSI reference masks


@pytest.mark.parametrize("modality", ["CT", "PET"])
def test_ibsi_rtstruct_reproduces_reference_mask_exactly(modality):
    base = real("ibsi_validation_STS_001")
    image = read_image_series(image_series_in(base / "dicom" / modality / "image"))
    result = rtstruct_to_masks(base / "dicom" / modality / "mask" / "RS.dcm", image)
    assert list(result.masks) == [f"GTV_Mass_{modality}"]
    assert result.warnings == [] and result.empty_rois == []
    mask = sitk.GetArrayFromImage(result.masks[f"GTV_Mass_{modality}"])
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "nifti" / f"{modality}_mask.nii.gz")))
    assert mask.dtype == np.uint8 and mask.shape == reference.shape
    assert dice(mask, reference) == 1.0
    assert np.array_equal(mask, reference)  # measured: CT 117145 voxels, PET 5095 voxels


def test_raw_pet_gtv_rasterised_then_cropped_matches_ibsi_pet_mask():
    raw_series = image_series_in(real("mirp_sts_raw_STS001_FDG_PET/image"), "PT")
    raw = read_image_series(raw_series)
    result = rtstruct_to_masks(
        real("mirp_sts_raw_STS001_FDG_PET/mask/1-1.dcm"),
        raw,
        roi_filter=lambda name: name == "GTV_Mass",
        frame_of_reference_uid=raw_series.frame_of_reference_uid,
    )
    assert list(result.masks) == ["GTV_Mass"]
    base = real("ibsi_validation_STS_001")
    reference = sitk.ReadImage(str(base / "nifti" / "PET_mask.nii.gz"))
    start = raw.TransformPhysicalPointToIndex(reference.GetOrigin())
    crop = sitk.RegionOfInterest(result.masks["GTV_Mass"], reference.GetSize(), start)
    assert dice(sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(reference)) == 1.0
    # nothing of the GTV lies outside the crop
    assert sitk.GetArrayFromImage(crop).sum() == sitk.GetArrayFromImage(result.masks["GTV_Mass"]).sum()


def test_read_rtstruct_parses_rois_and_contours():
    structure = read_rtstruct(real("mirp_sts_raw_STS001_FDG_PET/mask/1-1.dcm"))
    assert structure.roi_names == ["GTV_Mass", "GTV_Edema"]
    assert structure.frame_of_reference_uid.endswith(".316167340799089327122304118088")
    gtv = structure.roi("GTV_Mass")
    assert gtv.number == 1 and len(gtv.contours) > 10
    assert all(c.ndim == 2 and c.shape[1] == 3 for c in gtv.contours)
    assert all(np.ptp(c[:, 2]) < 1e-6 for c in gtv.contours)  # planar axial contours


# --------------------------------------------------------------------------------------------------
# real-file quirks


def test_rt_utils_contour_on_missing_slice_is_reported():
    base = real("rt-utils_mock_data")
    image = read_image_series(image_series_in(base, "CT"))
    result = rtstruct_to_masks(base / "invalid_reference_rt.dcm", image)
    assert sorted(result.masks) == ["ROI-1", "ROI-2", "ROI-3", "ROI-4"]
    assert result.empty_rois == []
    assert len(result.warnings) == 4
    assert all("match no slice" in w and "z = 70.00" in w for w in result.warnings)
    for mask in result.masks.values():
        per_slice = sitk.GetArrayFromImage(mask).reshape(2, -1).sum(axis=1)
        assert (per_slice > 0).all()  # both present slices (z = 60, 65) filled


def test_dicompyler_empty_roi_and_partial_series_are_reported():
    base = real("dicompyler-core_example_data")
    image = read_image_series(image_series_in(base, "CT"))
    result = rtstruct_to_masks(base / "rtss.dcm", image)
    assert len(result.masks) == 10
    assert "Areola" in result.empty_rois
    assert any(w == "Areola: ROI has no contours" for w in result.warnings)
    assert sitk.GetArrayFromImage(result.masks["BODY"]).sum() > 10_000  # the one present slice
    assert "BODY" not in result.empty_rois
    assert any(w.startswith("BODY: 137 contour(s) match no slice") for w in result.warnings)


# --------------------------------------------------------------------------------------------------
# synthetic geometry


def test_voxel_centre_rule_and_even_odd_hole(tmp_path):
    reference = reference_grid(size=(20, 16, 3), spacing=(1.0, 1.0, 2.0))
    outer = square(1.5, 1.5, 12.5, 10.5, 2.0)  # centres 2..12 x 2..10 -> 11 x 9 voxels
    inner = square(4.5, 3.5, 8.5, 6.5, 2.0)  # centres 5..8 x 4..6 -> 4 x 3 voxels hole
    mask = sitk.GetArrayFromImage(rasterise_roi([outer, inner], reference))
    assert mask.dtype == np.uint8
    assert mask[0].sum() == 0 and mask[2].sum() == 0
    expected = np.zeros((16, 20), np.uint8)
    expected[2:11, 2:13] = 1
    expected[4:7, 5:9] = 0
    assert np.array_equal(mask[1], expected)


def test_contour_placed_on_nearest_slice_within_half_a_step_and_outside_reported():
    reference = reference_grid(size=(10, 10, 4), spacing=(1.0, 1.0, 3.0), origin=(0, 0, -5.0))
    warnings: list[str] = []
    near = square(1.5, 1.5, 4.5, 4.5, -5.0 + 3.0 + 0.02)  # slice 1, 0.02 mm off
    between = square(1.5, 1.5, 4.5, 4.5, -5.0 + 1.5)  # half-way between slices 0 and 1: the upper one
    off = square(1.5, 1.5, 3.5, 3.5, -5.0 + 9.0 - 1.4)  # 1.4 mm (< half a step) below slice 3
    outside = square(1.5, 1.5, 4.5, 4.5, 40.0)
    below = square(1.5, 1.5, 4.5, 4.5, -5.0 - 1.6)  # more than half a step below slice 0
    line = np.array([[1, 1, 1.0], [2, 2, 1.0]])
    placement = RoiPlacement()
    contours = [near, between, off, outside, below, line]
    mask = sitk.GetArrayFromImage(rasterise_roi(contours, reference, warnings, "GTV", placement))
    # slice 1 has two candidate planes (0.02 mm and 1.5 mm off): the nearer one is used, not their XOR
    assert mask[1].sum() == 9 and mask[3].sum() == 4 and mask[0].sum() == 0 and mask.sum() == 13
    assert any("GTV: skipped a contour with 2 point(s)" in w for w in warnings)
    assert any("GTV: 2 contour(s) match no slice" in w and "-6.60" in w and "40.00" in w for w in warnings)
    assert placement.n_contours == 6 and placement.n_failed == 1
    assert placement.outside_fraction == pytest.approx(18 / (9 * 4 + 4))


def test_flipped_direction_reference_is_handled():
    # x axis pointing to -x: the same physical square must land on the mirrored indices
    reference = reference_grid(
        size=(10, 10, 1), origin=(9.0, 0.0, 0.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    mask = sitk.GetArrayFromImage(rasterise_roi([square(0.5, 0.5, 2.5, 2.5, 0.0)], reference))
    assert mask.sum() == 4
    assert mask[0, 1:3, 7:9].sum() == 4  # physical x = 1, 2 -> index 8, 7


def test_oblique_reference_is_refused():
    c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
    reference = reference_grid(direction=(1, 0, 0, 0, c, -s, 0, s, c))
    with pytest.raises(ConversionError) as err:
        rasterise_roi([square(1, 1, 3, 3, 0)], reference)
    assert err.value.cause == "oblique_series"


def test_rtstruct_file_roundtrip_filter_and_frame_of_reference(tmp_path):
    path = write_rtstruct(
        tmp_path / "rs.dcm",
        {
            "GTV": [square(1.5, 1.5, 4.5, 4.5, 2.0)],
            "Relapse 1": [square(5.5, 5.5, 7.5, 7.5, 4.0)],
            "Brain": [],
        },
    )
    reference = reference_grid(size=(10, 10, 3))
    result = rtstruct_to_masks(path, reference, roi_filter=lambda n: n != "GTV")
    assert sorted(result.masks) == ["Brain", "Relapse 1"]
    assert result.empty_rois == ["Brain"]
    assert sitk.GetArrayFromImage(result.masks["Relapse 1"])[2].sum() == 4
    with pytest.raises(ConversionError) as err:
        rtstruct_to_masks(path, reference, frame_of_reference_uid="1.2.3.4")
    assert err.value.cause == "frame_of_reference_mismatch"
    assert sanitise_roi_name("Relapse 1/2 (PO)") == "Relapse_1_2_PO"
    assert sanitise_roi_name("   ", 7) == "roi_7"


def test_matches_matplotlib_contains_points_on_random_polygons():
    """Cross-check of the scan-line crossing count against an independent point-in-polygon test."""
    rng = np.random.default_rng(3)
    reference = reference_grid(size=(64, 48, 1))
    for _ in range(20):
        n = int(rng.integers(3, 30))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(5, 22, n)
        xy = np.column_stack([30 + radii * np.cos(angles), 24 + radii * np.sin(angles)]) + rng.uniform(
            -0.3, 0.3, 2
        )
        polygon = np.column_stack([xy, np.zeros(n)])
        ours = sitk.GetArrayFromImage(rasterise_roi([polygon], reference))[0]
        jj, ii = np.mgrid[0:48, 0:64]
        theirs = MplPath(xy).contains_points(np.column_stack([ii.ravel(), jj.ravel()])).reshape(48, 64)
        assert np.array_equal(ours.astype(bool), theirs)


def test_rasterisation_speed_on_512_ct_grid():
    reference = reference_grid(size=(512, 512, 60), spacing=(0.98, 0.98, 3.0))
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    contours = [
        np.column_stack([250 + 60 * np.cos(t), 250 + 45 * np.sin(t), np.full_like(t, 3.0 * k)])
        for k in range(60)
    ]
    start = time.perf_counter()
    mask = rasterise_roi(contours, reference)
    elapsed = time.perf_counter() - start
    area = sitk.GetArrayViewFromImage(mask)[0].sum() * 0.98 * 0.98
    assert area == pytest.approx(np.pi * 60 * 45, rel=0.02)
    assert elapsed < 2.0  # measured ~0.1 s for 60 slices on the 2-core CI machine
