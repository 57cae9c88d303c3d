"""Geometry of the conversion: grids, PET onto CT, axial cut, crop box, auto box derivation, split."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion import geometry
from nnunet_recur.dataset_conversion.crop import CropBox, derive_auto_box, fixed_box
from nnunet_recur.dataset_conversion.split import make_split, split_counts


def image(array: np.ndarray, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.SetSpacing(spacing)
    out.SetOrigin(origin)
    return out


def test_same_grid_tolerates_float_noise_but_not_a_shift():
    a = image(np.zeros((4, 5, 6), np.float32))
    b = image(np.zeros((4, 5, 6), np.float32), origin=(1e-5, 0, 0))
    c = image(np.zeros((4, 5, 6), np.float32), origin=(0.5, 0, 0))
    assert geometry.same_grid(a, b)
    assert not geometry.same_grid(a, c)
    assert not geometry.same_grid(a, image(np.zeros((4, 5, 7), np.float32)))


def test_pet_resampled_linearly_onto_ct_grid_keeps_a_linear_ramp():
    # PET on a coarse 2 mm grid holding x (mm); CT grid 1 mm offset by 0.5 mm: linear interpolation
    # of a linear function is exact inside the PET.
    zz, yy, xx = np.meshgrid(np.arange(6), np.arange(10), np.arange(10), indexing="ij")
    pet = image((xx * 2.0).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    ct = image(np.zeros((6, 12, 12), np.int16), spacing=(1.0, 1.0, 2.0), origin=(0.5, 0.5, 0.0))
    out = geometry.resample_onto(pet, ct, interpolator="linear", pixel_type=sitk.sitkFloat32)
    assert out.GetSize() == ct.GetSize() and out.GetOrigin() == ct.GetOrigin()
    values = sitk.GetArrayFromImage(out)
    x_mm = 0.5 + np.arange(12)
    np.testing.assert_allclose(values[2, 3, :], x_mm, atol=1e-4)


def test_axial_overlap_keeps_only_ct_slices_inside_the_pet():
    ct = image(np.zeros((20, 4, 4), np.int16), spacing=(1, 1, 2.0), origin=(0, 0, 0))  # z 0..38
    pet = image(np.ones((5, 4, 4), np.float32), spacing=(1, 1, 4.0), origin=(0, 0, 9.5))  # z 9.5..25.5
    overlap = geometry.axial_overlap(ct, pet)
    # half a PET slice (2 mm) of tolerance: CT z in [7.5, 27.5] -> z 8..26 = slices 4..13
    assert (overlap.first, overlap.stop, overlap.removed) == (4, 14, 10)
    cut = geometry.take_slices(ct, overlap.first, overlap.stop)
    assert cut.GetSize()[2] == 10 and cut.GetOrigin()[2] == pytest.approx(8.0)
    pet_on_ct = sitk.GetArrayFromImage(geometry.resample_onto(pet, cut, default_value=-1))
    assert (pet_on_ct == 1).all(), "no default-filled PET slice may remain after the cut"


def test_axial_overlap_empty_when_disjoint():
    ct = image(np.zeros((5, 4, 4), np.int16), origin=(0, 0, 0))
    pet = image(np.ones((5, 4, 4), np.float32), origin=(0, 0, 100.0))
    assert geometry.axial_overlap(ct, pet).empty


def test_mask_centre_and_extent():
    array = np.zeros((10, 20, 30), np.uint8)
    array[4:7, 5:10, 10:21] = 1  # centre z 5, y 7, x 15
    mask = image(array, spacing=(0.5, 1.0, 2.0))
    centre = geometry.mask_centre_index(mask)
    assert centre == (15, 7, 5)
    extent = geometry.max_extent_from_centre_mm(mask, centre)
    assert extent == pytest.approx((5 * 0.5, 2 * 1.0, 1 * 2.0))
    with pytest.raises(ValueError):
        geometry.mask_centre_index(image(np.zeros((3, 3, 3), np.uint8)))


def test_crop_box_pads_outside_and_keeps_physical_alignment():
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    src = image(array, spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0))
    start, size = (-2, 1, 2), (5, 3, 4)  # leaves the image at x < 0 and z >= 4
    out = geometry.crop_box(src, start, size, pad_value=-1024)
    assert out.GetSize() == size
    assert out.GetOrigin() == pytest.approx((8.0, 22.0, 36.0))
    values = sitk.GetArrayFromImage(out)
    assert (values[:, :, :2] == -1024).all() and (values[2:, :, :] == -1024).all()
    # every copied voxel sits at the same physical point as in the source
    for idx in [(2, 0, 0), (4, 2, 1), (3, 1, 0)]:
        point = out.TransformIndexToPhysicalPoint(idx)
        assert out[idx] == src[src.TransformPhysicalPointToIndex(point)]


def test_box_start_centres_box():
    assert geometry.box_start((50, 60, 70), (160, 224, 128)) == (-30, -52, 6)


def test_auto_box_covers_the_furthest_voxel_with_padding():
    extents = [(10.0, 20.0, 8.0), (30.0, 5.0, 12.0)]
    spacings = [(1.0, 1.0, 2.0), (1.0, 1.0, 2.0)]
    box = derive_auto_box(extents, spacings, padding=0.15)
    assert box.mode == "auto" and box.derived_from_cases == 2
    # half = ceil(max * 1.15 / spacing) + 1 -> x: 35+1, y: 23+1, z: ceil(6.9)+1 = 8
    assert box.size_voxels == (72, 48, 16)
    # a box starting at centre - size//2 covers centre +- max extent in voxels on both sides
    for axis, (ext, sp) in enumerate(zip((30.0, 20.0, 12.0), (1.0, 1.0, 2.0), strict=True)):
        half = box.size_voxels[axis] // 2
        assert half >= ext / sp and box.size_voxels[axis] - half - 1 >= ext / sp
    again = CropBox.from_json(box.to_json())
    assert again == box
    assert fixed_box().size_voxels == (160, 224, 128)


def test_paper_split_sizes_and_determinism():
    assert split_counts(37) == (23, 7, 7)  # the paper's 23/7/7
    assert split_counts(10) == (6, 2, 2)
    cases = [f"RECUR_{i:03d}" for i in range(1, 38)]
    a, b = make_split(cases, "paper", 7), make_split(list(reversed(cases)), "paper", 7)
    assert a == b
    assert sorted(a.train + a.val + a.test) == cases
    assert make_split(cases, "paper", 8).test != a.test
    folds = a.folds()
    assert len(folds) == 5 and all(f == folds[0] for f in folds)
    assert sorted(folds[0]["val"]) == sorted(a.val)


def test_cv5_split_pools_train_and_val():
    cases = [f"RECUR_{i:03d}" for i in range(1, 21)]
    split = make_split(cases, "cv5", 3)
    folds = split.folds()
    assert len(folds) == 5
    vals = sorted(c for f in folds for c in f["val"])
    assert vals == sorted(split.train_val)
    assert not set(vals) & set(split.test)
