"""Dose painting by numbers: the mapping, the --iso-mean solve, the levels and the RT Dose scaling, on
small synthetic arrays (no model, no DICOM)."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_recur.prediction.dose_painting import (
    DoseMapOptions,
    dose_map,
    grow_region,
    level_masks,
    level_names,
    solve_iso_mean,
)
from nnunet_recur.prediction.rtdose_writer import MAX_ERROR_GY, choose_scaling


def _probability(seed: int = 0, shape=(6, 20, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probability = rng.beta(0.6, 1.5, shape).astype(np.float32)
    region = np.zeros(shape, bool)
    region[1:5, 4:16, 4:16] = True
    return probability, region


def test_linear_mapping_escalates_between_p_lo_and_p_hi_and_leaves_base_outside():
    probability, region = _probability()
    options = DoseMapOptions(base_gy=68, boost_gy=80, p_lo=0.2, p_hi=0.6)
    result = dose_map(probability, region, options, voxel_ml=0.001)
    dose = result.dose.astype(np.float64)
    assert np.all(dose[~region] == 68)
    p = probability.astype(np.float64)
    inside = region & (p > 0.2) & (p < 0.6)
    np.testing.assert_allclose(dose[inside], 68 + 12 * (p[inside] - 0.2) / 0.4, atol=1e-4)
    assert np.all(dose[region & (p <= 0.2)] == 68) and np.allclose(dose[region & (p >= 0.6)], 80)
    summary = result.summary
    assert summary["region"]["voxels"] == region.sum()
    assert summary["region"]["mean_gy"] == pytest.approx(dose[region].mean(), abs=1e-3)
    assert summary["parameters"]["p_lo"] == 0.2 and summary["probability_source"].startswith("model")


@pytest.mark.parametrize(("seed", "min_gy", "max_gy"), [(0, 60, 80), (1, 66, 84), (2, 50, 76)])
def test_iso_mean_keeps_the_mean_within_0_1_gy_and_every_voxel_within_bounds(seed, min_gy, max_gy):
    probability, region = _probability(seed)
    options = DoseMapOptions(base_gy=68, iso_mean=True, min_gy=min_gy, max_gy=max_gy, p_lo=0.1, p_hi=0.8)
    result = dose_map(probability, region, options, voxel_ml=0.001)
    inside = result.dose[region].astype(np.float64)
    assert abs(inside.mean() - 68) < 0.1
    assert inside.min() >= min_gy - 1e-4 and inside.max() <= max_gy + 1e-4
    assert inside.max() - inside.min() > 1.0  # it redistributed, not a uniform 68 Gy


def test_iso_mean_solution_takes_the_lower_bound_branch_when_the_upper_would_break_it():
    d_low, d_high = solve_iso_mean(0.5, target=68, low=66, high=80)  # D_low = 56 < 66: clip to 66
    assert (d_low, d_high) == (66, pytest.approx(70))
    assert solve_iso_mean(0.0, 68, 60, 80) == (68, 68) and solve_iso_mean(1.0, 68, 60, 80) == (68, 68)


def test_levels_are_disjoint_cover_the_region_and_carry_their_dose_in_the_name():
    probability, region = _probability(3)
    result = dose_map(probability, region, DoseMapOptions(levels=5), voxel_ml=0.001)
    assert len(result.levels) == 5
    masks = level_masks(result.dose, region, result.levels)
    stacked = np.stack([m for _, m in masks]).astype(int)
    assert np.array_equal(stacked.sum(axis=0) > 0, region) and stacked.sum(axis=0).max() == 1
    names = [row["roi"] for row in result.summary["levels"]]
    assert names[0] == f"DP_{result.levels[0]:.1f}Gy" and len(set(names)) == len(names)
    assert set(np.unique(result.dose[region])) <= {np.float32(v) for v in result.levels}
    assert level_names([70.01, 70.04]) == ["DP_70.01Gy", "DP_70.04Gy"]  # never two ROIs of one name


def test_margin_grows_in_millimetres_on_anisotropic_voxels():
    mask = np.zeros((9, 21, 21), bool)
    mask[4, 10, 10] = True
    grown = grow_region(mask, 5.0, (3.0, 1.0, 1.0))
    assert grown[4, 10, 15] and not grown[4, 10, 16]  # 5 mm in-plane at 1 mm
    assert grown[5, 10, 10] and not grown[6, 10, 10]  # 3 mm slices: 6 mm is outside


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DoseMapOptions(p_lo=0.6, p_hi=0.4), "--p-lo/--p-hi"),
        (DoseMapOptions(levels=2), "--levels"),
        (DoseMapOptions(iso_mean=True, min_gy=70), "--iso-mean"),
        (DoseMapOptions(margin_mm=float("nan")), "--margin-mm"),
    ],
)
def test_bad_options_give_one_line_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        options.validate()


def test_empty_region_is_refused():
    probability, region = _probability()
    with pytest.raises(ValueError, match="region is empty"):
        dose_map(probability, np.zeros_like(region), DoseMapOptions(), voxel_ml=0.001)


@pytest.mark.parametrize("top", [0.5, 80.0, 200.0, 1000.0, 5000.0])
def test_dose_grid_scaling_keeps_the_quantisation_error_within_0_01_gy(top):
    scaling, bits = choose_scaling(top)
    assert scaling / 2 <= MAX_ERROR_GY and round(top / scaling) <= 2**bits - 1
    assert float(f"{scaling:.4e}") == scaling  # the DS string written is the number used


def test_rt_dose_refuses_a_single_slice_ct():
    from pydicom.dataset import Dataset

    from nnunet_recur.prediction.rtdose_writer import build_rtdose

    header = Dataset()
    header.Rows, header.Columns = 2, 2
    with pytest.raises(ValueError, match="at least 2 slices"):
        build_rtdose([header], np.full((1, 2, 2), 68.0), software_version="t", plan_reference=[])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--levels", "2"], "--levels: 2 is outside 3..11"),
        (["--iso-mean", "--min-gy", "70"], "--iso-mean: need"),
    ],
)
def test_recur_predict_refuses_bad_dose_options_in_one_line_before_anything_runs(tmp_path, extra, message):
    from typer.testing import CliRunner

    from nnunet_recur.cli import app

    out = tmp_path / "out"
    args = ["predict", str(tmp_path), "--model", str(tmp_path / "none"), "--out", str(out), "--dose-map"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert message in result.output and len(result.output.strip().splitlines()) == 1 and not out.exists()
