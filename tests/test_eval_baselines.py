"""SUVmax threshold and GTV baselines; the one-pass sweep equals the naive loop exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnunet_recur.evaluation import baselines, metrics
from nnunet_recur.evaluation.volumes import EvaluationError, Grid, Volume


def grid_for(shape_zyx) -> Grid:
    return Grid(
        tuple(reversed(shape_zyx)), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    )


def synthetic_case(seed: int, dtype=np.float32, shape=(16, 20, 18)):
    """PET with a hot GTV, a brain with high uptake, a relapse next to the GTV."""
    rng = np.random.default_rng(seed)
    grid = grid_for(shape)
    pet = rng.gamma(2.0, 0.6, size=shape)
    gtv = np.zeros(shape, dtype=np.uint8)
    gtv[6:11, 7:13, 6:12] = 1
    pet[gtv == 1] += rng.uniform(3.0, 9.0, size=int(gtv.sum()))
    brain = np.zeros(shape, dtype=np.uint8)
    brain[:3] = 1
    pet[:3] += 12.0  # brain brighter than the tumour: must not set SUVmax, must be removed
    relapse = np.zeros(shape, dtype=np.uint8)
    relapse[8:13, 10:15, 9:14] = 1
    suvmax = float(pet[gtv == 1].max())
    # voxels lying exactly on thresholds (float64 values p / 100 * suvmax) and just below
    thresholds = np.arange(1, 101) / 100 * suvmax
    flat = pet.reshape(-1)
    flat[1000:1100] = thresholds
    flat[1100:1200] = np.nextafter(thresholds, 0)
    pet = pet.astype(dtype)
    return tuple(Volume(a, grid) for a in (pet, gtv, brain, relapse))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sweep_equals_naive_loop_bit_for_bit(dtype):
    pet, gtv, brain, reference = synthetic_case(3, dtype)
    suvmax = baselines.suvmax_in_gtv(pet, gtv)
    sweep = baselines.case_sweep_dice(pet, gtv, brain, reference)
    naive = []
    for p in range(1, 101):  # the literal definition of the issue
        prediction = (pet.array.astype(np.float64) >= p / 100 * suvmax) & (brain.array == 0)
        naive.append(metrics.dice(prediction, reference.array))
    assert sweep.tolist() == naive
    assert baselines.naive_sweep_dice(pet, gtv, brain, reference).tolist() == naive


def test_sweep_matches_medpy_dc_where_defined():
    from medpy.metric import binary

    pet, gtv, brain, reference = synthetic_case(5)
    suvmax = baselines.suvmax_in_gtv(pet, gtv)
    sweep = baselines.case_sweep_dice(pet, gtv, brain, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medpy = [
            binary.dc(
                (pet.array.astype(np.float64) >= p / 100 * suvmax) & (brain.array == 0), reference.array
            )
            for p in range(1, 101)
        ]
    assert sweep.tolist() == medpy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [7.37, 1.0, 0.013])
def test_percent_levels_exact_on_thresholds_and_edges(dtype, scale):
    thresholds = (np.arange(1, 101) / 100 * scale).astype(dtype)
    values = np.concatenate(
        [
            thresholds,
            np.nextafter(thresholds, dtype(0)),
            np.nextafter(thresholds, dtype(np.inf)),
            np.random.default_rng(0).uniform(-2 * scale, 3 * scale, 20000).astype(dtype),
            np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, scale * 5], dtype=dtype),
        ]
    ).astype(dtype)
    levels = baselines.percent_levels(values, scale)
    as64 = values.astype(np.float64)
    for p in range(1, 101):
        assert np.array_equal(levels >= p, as64 >= p / 100 * scale), p


def test_suvmax_is_taken_inside_the_gtv_and_brain_is_removed():
    pet, gtv, brain, _ = synthetic_case(1)
    suvmax = baselines.suvmax_in_gtv(pet, gtv)
    assert suvmax == float(pet.array[gtv.array == 1].max())
    assert suvmax < float(pet.array.max())  # the brain is hotter
    prediction = baselines.suvmax_prediction(pet, gtv, brain, 38)
    assert not prediction[:3].any()
    assert prediction[gtv.array == 1].any()


def test_suvmax_prediction_on_a_case_worked_out_by_hand():
    """Expected masks written out, not recomputed with the formula under test."""
    grid = grid_for((1, 2, 5))
    pet = np.array([[[0.5, 3.7, 3.9, 9.0, 10.0], [12.0, 4.0, 1.0, 3.81, 0.0]]], dtype=np.float32)
    gtv = np.array([[[0, 1, 1, 1, 1], [0, 0, 0, 0, 0]]], dtype=np.uint8)
    brain = np.array([[[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]], dtype=np.uint8)
    volumes = [Volume(a, grid) for a in (pet, gtv, brain)]
    assert baselines.suvmax_in_gtv(volumes[0], volumes[1]) == 10.0  # not the brain's 12
    at_38 = baselines.suvmax_prediction(*volumes, 38)  # 3.8: 3.9, 9, 10, 4, 3.81; not the brain's 12
    assert at_38.tolist() == [[[False, False, True, True, True], [False, True, False, True, False]]]
    at_90 = baselines.suvmax_prediction(*volumes, 90)  # 9.0: 9.0 itself counts (>=)
    assert at_90.tolist() == [[[False, False, False, True, True], [False, False, False, False, False]]]


def test_empty_gtv_is_an_error_naming_the_file(tmp_path):
    pet, gtv, brain, _ = synthetic_case(2)
    empty = Volume(np.zeros_like(gtv.array), gtv.grid, tmp_path / "RECUR_009_gtv.nii.gz")
    with pytest.raises(EvaluationError, match="RECUR_009_gtv.nii.gz"):
        baselines.suvmax_in_gtv(pet, empty)


def test_gtv_baseline_is_the_gtv():
    _, gtv, _, _ = synthetic_case(4)
    assert np.array_equal(baselines.gtv_prediction(gtv), gtv.array != 0)


def test_best_percent_picks_highest_mean_lowest_on_ties():
    percents = np.arange(1, 6)
    assert baselines.best_percent(percents, np.array([0.1, 0.3, 0.3, 0.2, 0.0])) == (2, 0.3)
