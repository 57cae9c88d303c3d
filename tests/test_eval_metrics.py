"""Per-case metrics: known answers by construction, the documented empty cases, MedPy cross-check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nnunet_recur.evaluation import metrics
from nnunet_recur.evaluation.volumes import GeometryMismatchError, Grid, Volume, require_same_grid


def grid_for(shape_zyx, spacing_xyz=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> Grid:
    return Grid(
        size=tuple(reversed(shape_zyx)),
        spacing=tuple(float(s) for s in spacing_xyz),
        origin=tuple(float(o) for o in origin),
        direction=tuple(direction or (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)),
    )


def test_dice_recall_precision_known_counts():
    reference = np.zeros((4, 5, 6), dtype=np.uint8)
    prediction = np.zeros_like(reference)
    reference[0, 0, :4] = 1  # 4 voxels
    prediction[0, 0, 2:6] = 7  # 4 voxels, any non-zero counts, 2 overlap
    assert metrics.dice(prediction, reference) == pytest.approx(2 * 2 / 8)
    assert metrics.recall(prediction, reference) == pytest.approx(2 / 4)
    prediction[1, 1, 1] = 1  # 5 predicted voxels now
    assert metrics.precision(prediction, reference) == pytest.approx(2 / 5)
    assert metrics.recall(prediction, reference) == pytest.approx(2 / 4)
    assert metrics.dice(prediction, reference) == pytest.approx(4 / 9)


def test_empty_cases_are_defined_not_nan():
    empty = np.zeros((3, 3, 3), dtype=bool)
    some = empty.copy()
    some[1, 1, 1] = True
    assert metrics.dice(empty, empty) == 1.0  # both empty: perfect agreement
    assert metrics.dice(empty, some) == 0.0
    assert metrics.precision(empty, some) == 0.0  # empty prediction
    assert metrics.recall(some, empty) == 0.0  # empty reference
    assert metrics.recall(empty, some) == 0.0
    assert metrics.precision(some, empty) == 0.0


def test_volume_cc_uses_anisotropic_spacing():
    array = np.zeros((10, 10, 10), dtype=np.uint8)
    array[2:4, 3:6, 1:5] = 1  # 2 * 3 * 4 = 24 voxels
    volume = Volume(array, grid_for(array.shape, spacing_xyz=(0.5, 2.0, 3.0)))
    assert metrics.volume_cc(volume) == pytest.approx(24 * 0.5 * 2.0 * 3.0 / 1000.0)


def test_hd95_is_nan_when_a_mask_is_empty():
    grid = grid_for((6, 6, 6))
    empty = Volume(np.zeros((6, 6, 6), dtype=np.uint8), grid)
    full = np.zeros((6, 6, 6), dtype=np.uint8)
    full[2:4, 2:4, 2:4] = 1
    assert math.isnan(metrics.hd95_mm(empty, Volume(full, grid)))
    assert math.isnan(metrics.hd95_mm(Volume(full, grid), empty))


def test_hd95_known_shift_along_anisotropic_axis():
    grid = grid_for((12, 12, 12), spacing_xyz=(1.0, 1.0, 2.5))
    a = np.zeros((12, 12, 12), dtype=np.uint8)
    a[3:6, 3:6, 3:6] = 1
    b = np.roll(a, 2, axis=0)  # two slices along z, 2.5 mm each
    assert metrics.hd95_mm(Volume(a, grid), Volume(b, grid)) == pytest.approx(5.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_medpy_on_random_non_empty_masks(seed):
    from medpy.metric import binary

    rng = np.random.default_rng(seed)
    shape = (14, 17, 11)
    spacing_zyx = (3.0, 0.9, 1.3)
    smooth = rng.random(shape)
    prediction = smooth > 0.8
    reference = np.roll(smooth, 2, axis=1) > 0.75
    reference[0, 0, 0] = True  # a mask touching the volume edge
    grid = grid_for(shape, spacing_xyz=tuple(reversed(spacing_zyx)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert metrics.dice(prediction, reference) == binary.dc(prediction, reference)
        assert metrics.recall(prediction, reference) == binary.recall(prediction, reference)
        assert metrics.precision(prediction, reference) == binary.precision(prediction, reference)
        expected_hd95 = binary.hd95(prediction, reference, voxelspacing=spacing_zyx)
    assert metrics.hd95_mm(Volume(prediction, grid), Volume(reference, grid)) == pytest.approx(
        expected_hd95, rel=1e-12
    )


def test_geometry_mismatch_names_both_files(tmp_path):
    grid = grid_for((4, 4, 4))
    shifted = grid_for((4, 4, 4), origin=(0.0, 0.0, 2.0))
    a = Volume(np.zeros((4, 4, 4)), grid, tmp_path / "labelsTs" / "A.nii.gz")
    b = Volume(np.zeros((4, 4, 4)), shifted, tmp_path / "preds" / "A.nii.gz")
    with pytest.raises(GeometryMismatchError) as info:
        require_same_grid(b, a)
    assert "labelsTs/A.nii.gz" in str(info.value) and "preds/A.nii.gz" in str(info.value)
    assert "origin" in str(info.value)
    within = grid_for((4, 4, 4), spacing_xyz=(1.0 + 1e-5, 1.0, 1.0))
    require_same_grid(Volume(np.zeros((4, 4, 4)), within), a)  # inside the one tolerance


def test_index_to_physical_matches_simpleitk():
    import SimpleITK as sitk

    image = sitk.Image(7, 5, 3, sitk.sitkUInt8)
    image.SetSpacing((0.8, 1.7, 3.0))
    image.SetOrigin((-12.5, 40.0, 7.25))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    grid = Grid.of(image)
    assert grid.shape == (3, 5, 7)
    z, y, x = 2, 4, 6
    assert grid.index_to_physical((z, y, x)) == pytest.approx(image.TransformIndexToPhysicalPoint((x, y, z)))


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_inside_the_reference_box_equal_whole_volume_counts(seed):
    rng = np.random.default_rng(seed)
    reference = np.zeros((9, 10, 11), dtype=np.uint8)
    reference[2:5, 3:8, 1:4] = rng.random((3, 5, 3)) > 0.3
    prediction = (rng.random((9, 10, 11)) > 0.6).astype(np.uint8) * 3
    prepared = metrics.ReferenceMask.of(reference)
    assert prepared.box == metrics.bounding_box(reference)
    assert metrics.overlap_counts_with(prediction, prepared) == metrics.overlap_counts(prediction, reference)
    empty = metrics.ReferenceMask.of(np.zeros_like(reference))
    assert empty.box is None
    assert metrics.overlap_counts_with(prediction, empty).intersection == 0
