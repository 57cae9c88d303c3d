"""Calibration (issue 21 §1-2, §5 --boost-cc, §6): the fit recovers a known temperature, the logit inversion
of saved probabilities does not bias it, ECE falls on held-out cases, our ECE/MCE equal torchmetrics' on the
same voxels (through `recur-eval calibration`), a calibrated input has ECE ~ 0 within its bootstrap CI,
`recur calibrate` writes calibration.json, and --boost-cc meets its volumes despite ties at 1.0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from nnunet_recur.evaluation import calibration as cal
from nnunet_recur.prediction import calibration as pc
from nnunet_recur.prediction.levels import make_levels

SHAPE = (10, 24, 24)  # z, y, x
SPACING = (2.0, 2.0, 3.0)  # x, y, z mm
TRUE_T = 2.5


def synthetic_logits(rng, n, spread=2.0):
    """True logits z, labels y ~ Bernoulli(sigmoid(z)), and an overconfident model's logits TRUE_T * z."""
    z = rng.normal(0.0, spread, n)
    y = rng.random(n) < pc.sigmoid(z)
    return z, y, TRUE_T * z


def test_fit_recovers_a_known_temperature_and_platt_parameters():
    z, y, model_logits = synthetic_logits(np.random.default_rng(0), 200_000)
    fitted = pc.fit(model_logits, y)
    assert fitted.method == "temperature"
    assert abs(fitted.temperature / TRUE_T - 1) < 0.05
    platt = pc.fit(model_logits - 0.8, y, "platt")  # a shifted model: z = m / T + 0.8 / T
    assert abs(platt.slope * TRUE_T - 1) < 0.05 and abs(platt.intercept / (0.8 / TRUE_T) - 1) < 0.05


def test_logits_from_clipped_probabilities_do_not_bias_the_fit():
    """nnU-Net saves float32 probabilities; 10+ % of these voxels are saturated at exactly 0 or 1."""
    z, y, model_logits = synthetic_logits(np.random.default_rng(1), 200_000, spread=5.0)
    saved = pc.sigmoid(model_logits).astype(np.float32)
    assert pc.saturated_fraction(saved) > 0.10
    exact = pc.fit(model_logits, y).temperature
    inverted = pc.fit(pc.logit_from_probability(saved), y).temperature
    assert abs(inverted / exact - 1) < 0.01 and abs(inverted / TRUE_T - 1) < 0.05
    # the clip is symmetric: 0.5 stays 0.5, and temperature scaling keeps it there
    assert pc.logit_from_probability(np.float32(0.5)) == 0.0
    assert pc.apply_calibration(np.array([0.5], np.float32), pc.Calibration("temperature", 0.3))[0] == 0.5


def test_ece_falls_after_the_fit_on_held_out_cases():
    rng = np.random.default_rng(2)
    cases = [synthetic_logits(rng, 20_000) for _ in range(8)]
    fit_on, held_out = cases[:4], cases[4:]
    calibration = pc.fit(np.concatenate([c[2] for c in fit_on]), np.concatenate([c[1] for c in fit_on]))

    def ece(transform):
        stats = [cal.CaseStats.of(str(i), transform(c[2]), c[1]) for i, c in enumerate(held_out)]
        return cal.pooled_metrics(stats, bootstrap=0)

    before = ece(lambda logits: pc.sigmoid(logits))
    after = ece(lambda logits: pc.apply_to_logits(logits, calibration))
    assert after["ece"]["value"] < 0.3 * before["ece"]["value"]
    assert (
        after["nll"]["value"] < before["nll"]["value"] and after["brier"]["value"] < before["brier"]["value"]
    )


def test_perfectly_calibrated_input_has_ece_near_zero_within_its_bootstrap_ci():
    rng = np.random.default_rng(3)
    calibrated, overconfident = [], []
    for i in range(10):
        z, y, model_logits = synthetic_logits(rng, 20_000)
        calibrated.append(cal.CaseStats.of(str(i), pc.sigmoid(z), y))
        overconfident.append(cal.CaseStats.of(str(i), pc.sigmoid(model_logits), y))
    good = cal.pooled_metrics(calibrated, bootstrap=300, seed=0)["ece"]
    bad = cal.pooled_metrics(overconfident, bootstrap=300, seed=0)["ece"]
    low, high = good["ci95"]
    assert good["value"] < 0.01 and low <= good["value"] <= high and high < 0.02
    assert bad["ci95"][0] > high  # the miscalibrated model's CI lies clear above


def test_metrics_of_an_empty_region_are_undefined_not_an_error():
    empty = cal.CaseStats.of("a", np.zeros(0), np.zeros(0, bool))
    assert cal.pooled_metrics([empty])["ece"]["value"] is None


# -- recur-eval calibration on files -----------------------------------------------------------------------
def write(array: np.ndarray, path: Path) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def synthetic_dataset(root: Path, cases=("C1", "C2", "C3"), seed=4) -> dict:
    """Labels drawn from a true probability map; the model's .npz overconfident by TRUE_T."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(SHAPE)
    truth = {}
    for n, case in enumerate(cases):
        centre = np.array([5, 12, 12 + n])
        distance = np.sqrt(((np.stack([zz, yy, xx], -1) - centre) * [3.0, 2.0, 2.0]) ** 2).sum(-1)
        z = 2.0 - distance / 4.0 + rng.normal(0, 0.7, SHAPE)
        label = (rng.random(SHAPE) < pc.sigmoid(z)).astype(np.uint8)
        gtv = (distance < 6).astype(np.uint8)
        ct = np.full(SHAPE, -1000, np.int16)
        ct[:, 2:22, 2:22] = 40
        write(label, root / "labels" / f"{case}.nii.gz")
        write(gtv, root / "masks" / f"{case}_gtv.nii.gz")
        write(ct, root / "images" / f"{case}_0000.nii.gz")
        saved = pc.sigmoid(TRUE_T * z).astype(np.float32)[None]
        (root / "model").mkdir(exist_ok=True)
        np.savez_compressed(root / "model" / f"{case}.npz", probabilities=saved)
        truth[case] = (saved[0], label, gtv, ct)
    return truth


def test_recur_eval_calibration_equals_torchmetrics_on_the_same_voxels(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")
    import torch

    from nnunet_recur.evaluation.cli import app

    truth = synthetic_dataset(tmp_path)
    out = tmp_path / "report"
    args = ["calibration", "--gt", str(tmp_path / "labels"), "--masks", str(tmp_path / "masks")]
    args += ["--images", str(tmp_path / "images"), "--pred", f"AI={tmp_path / 'model'}", "--out", str(out)]
    result = CliRunner().invoke(app, args + ["--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "calibration.json").read_text())["methods"]["AI"]
    assert (out / "reliability.png").stat().st_size > 1000 and (out / "po_reliability.csv").is_file()

    probabilities, labels = [], []
    for probability, label, gtv, ct in truth.values():
        region = cal.region_mask(gtv, (3.0, 2.0, 2.0), "gtv+20mm", ct=ct)
        assert region.any() and not region.all()  # the region really selects
        probabilities.append(probability[region])
        labels.append(label[region])
    p = torch.from_numpy(np.concatenate(probabilities).astype(np.float64))
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    assert report["voxels"] == p.numel()
    error = torchmetrics.functional.classification.binary_calibration_error
    assert report["ece"]["value"] == pytest.approx(float(error(p, y, n_bins=15, norm="l1")), abs=1e-9)
    assert report["mce"]["value"] == pytest.approx(float(error(p, y, n_bins=15, norm="max")), abs=1e-9)
    assert report["ece"]["value"] > 0.03  # an overconfident model is visibly miscalibrated


def test_recur_eval_calibration_refuses_bad_input_in_one_line(tmp_path):
    from nnunet_recur.evaluation.cli import app

    synthetic_dataset(tmp_path, cases=("C1",))
    base = ["calibration", "--gt", str(tmp_path / "labels"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, base + ["--pred", f"AI={tmp_path / 'model'}"])  # no --masks
    assert result.exit_code == 2 and "needs --masks" in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "C1.npz", probabilities=np.full((1, *SHAPE), 1.5, np.float32))
    result = CliRunner().invoke(app, base + ["--region", "all", "--pred", f"AI={bad}"])
    assert result.exit_code == 2 and "outside [0, 1]" in result.output and "Traceback" not in result.output


# -- recur calibrate -> calibration.json -------------------------------------------------------------------
def test_recur_calibrate_writes_calibration_json_that_recovers_the_temperature(tmp_path, monkeypatch):
    from nnunet_recur.cli import app

    truth = synthetic_dataset(tmp_path, cases=("C1", "C2", "C3", "C4"))
    model = tmp_path / "Dataset123_X" / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur"
    (model / "fold_0" / "validation").mkdir(parents=True)
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    dataset = {"channel_names": {"0": "CT", "1": "PET"}, "recur_crop": {"mode": "fixed"}}
    (model / "dataset.json").write_text(json.dumps(dataset))
    (model / "plans.json").write_text(json.dumps({"dataset_name": "Dataset123_X"}))
    for case in truth:
        (tmp_path / "model" / f"{case}.npz").rename(model / "fold_0" / "validation" / f"{case}.npz")
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    folders = ["--gt", str(tmp_path / "labels"), "--masks", str(tmp_path / "masks")]
    result = CliRunner().invoke(
        app, ["calibrate", str(model), *folders, "--images", str(tmp_path / "images")]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((model / "calibration.json").read_text())
    assert record["method"] == "temperature"
    assert abs(record["parameters"]["temperature"] / TRUE_T - 1) < 0.05
    assert [c["case"] for c in record["fitted_on"]["cases"]] == sorted(truth)
    assert record["metrics"]["after"]["ece"]["value"] < record["metrics"]["before"]["ece"]["value"]
    loaded = pc.load_calibration(model)
    assert loaded.temperature == pytest.approx(record["parameters"]["temperature"])

    # held-out "test" cases, scored as saved and after the fitted calibration
    from nnunet_recur.evaluation.cli import app as eval_app

    held_out = tmp_path / "test"
    synthetic_dataset(held_out, cases=("T1", "T2"), seed=9)
    args = ["calibration", "--gt", str(held_out / "labels"), "--masks", str(held_out / "masks")]
    args += ["--pred", f"AI={held_out / 'model'}", "--calibration", str(model / "calibration.json")]
    result = CliRunner().invoke(eval_app, [*args, "--bootstrap", "20", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "eval" / "calibration.json").read_text())["methods"]
    assert scored["AI, calibrated"]["ece"]["value"] < 0.5 * scored["AI"]["ece"]["value"]
    assert scored["AI, calibrated"]["voxels"] == scored["AI"]["voxels"]

    (model / "calibration.json").write_text("{not json")
    with pytest.raises(pc.CalibrationError, match="calibration.json: unreadable"):
        pc.load_calibration(model)
    result = CliRunner().invoke(app, ["calibrate", str(model), "--folds", "3", *folders])
    assert result.exit_code == 2 and "unknown fold 3" in result.output


# -- --boost-cc ranks by logits ----------------------------------------------------------------------------
def test_boost_cc_with_ties_at_one_meets_both_volumes_by_the_logits():
    """Regression (issue 21 §5): 60 voxels at probability exactly 1.0 gave --boost-cc 5,10 two identical
    ROIs of every tied voxel. Ranked by the logits, each ROI has its requested volume within one voxel."""
    rng = np.random.default_rng(5)
    logits = rng.normal(-4.0, 3.0, SHAPE).astype(np.float32)
    logits[4:7, 10:14, 10:15] = 18.0 + rng.random((3, 4, 5)).astype(np.float32) * 10  # 60 voxels
    probability = pc.sigmoid(logits).astype(np.float32)
    assert np.count_nonzero(probability == 1.0) >= 60
    voxel_ml = 0.1  # 5 cc = 50 voxels, 10 cc = 100 voxels
    notes: list[str] = []
    scores = pc.ranking_scores(logits=logits)
    five, ten = make_levels(probability, voxel_ml, [], [5, 10], scores=scores, notes=notes)
    assert (five.name, ten.name) == ("Recur_5cc", "Recur_10cc") and notes == []
    assert abs(five.mask.sum() * voxel_ml - 5) <= voxel_ml and abs(ten.mask.sum() * voxel_ml - 10) <= voxel_ml
    assert not np.array_equal(five.mask, ten.mask) and (five.mask <= ten.mask).all()

    # the same map without logits: the ties cannot be split; the names say so and no ROI is written twice
    notes = []
    levels = make_levels(probability, voxel_ml, [], [5, 5.5], notes=notes)
    (only,) = levels
    assert only.name.startswith("Recur_5cc_got") and "reached" in only.describe()
    assert any("tie" in n for n in notes) and any("not written twice" in n for n in notes)


def test_calibrate_folds_keeps_probabilities_without_calibration_and_ranks_by_mean_logit():
    logits = [np.array([[[30.0, 20.0, -200.0]]], np.float32), np.array([[[28.0, 25.0, -1.0]]], np.float32)]
    probabilities = [pc.sigmoid(z).astype(np.float32) for z in logits]
    same, score = pc.calibrate_folds(probabilities, logits, None)
    assert all(np.array_equal(a, b) for a, b in zip(same, probabilities, strict=True))
    assert score[0, 0, 0] > score[0, 0, 1]  # both saturate at 1.0 in float32; the logits tell them apart
    calibration = pc.Calibration("temperature", 1 / 4.0)
    scaled, _ = pc.calibrate_folds(probabilities, logits, calibration)
    np.testing.assert_allclose(scaled[1], pc.sigmoid(logits[1] / 4.0), rtol=1e-6)


def test_predict_applies_the_model_calibration_unless_turned_off(tmp_path):
    from types import SimpleNamespace

    from nnunet_recur.prediction.pipeline import PredictOptions, _calibration

    model = SimpleNamespace(folder=tmp_path)
    assert _calibration(model, PredictOptions()) is None  # no calibration.json: uncalibrated
    pc.write_calibration(tmp_path, pc.Calibration("temperature", 0.5, fitted_on={"cases": [{"case": "A"}]}))
    assert _calibration(model, PredictOptions()).temperature == 2.0
    assert _calibration(model, PredictOptions(calibration=False)) is None  # --no-calibration
    entry = pc.summary_entry(None, tmp_path, disabled=True)
    assert entry["applied"] is False and "--no-calibration" in entry["note"]
    applied = pc.summary_entry(pc.load_calibration(tmp_path), tmp_path, disabled=False)
    assert applied["parameters"] == {"temperature": 2.0} and applied["fitted_on_cases"] == 1
