"""Fast checks of `recur predict`'s pieces: the way back onto the planning CT, the ROI levels, model and fold
resolution, and the command line's argument handling (no network, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion import geometry
from nnunet_recur.prediction.levels import make_levels, parse_list
from nnunet_recur.prediction.model import ModelError, choose_folds, resolve_model
from nnunet_recur.prediction.uncrop import uncrop


def ct_image(size=(30, 26, 12), spacing=(0.9, 1.1, 2.5), origin=(-12.0, 30.0, -40.0)) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("start", [(3, 4, 2), (-5, 20, 8)])  # inside, and a box leaving the image
def test_uncrop_is_an_exact_paste_that_agrees_with_sitk_resample(start):
    full = ct_image()
    crop = geometry.crop_box(full, start, (16, 10, 6), 0)
    values = np.random.default_rng(1).random((6, 10, 16)).astype(np.float32) + 0.1
    back = uncrop(values, crop, full)
    assert back.GetSize() == full.GetSize() and back.GetOrigin() == full.GetOrigin()
    moving = sitk.GetImageFromArray(values)
    moving.CopyInformation(crop)
    resampled = sitk.Resample(moving, full, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(resampled), atol=1e-6)
    pasted = sitk.GetArrayFromImage(back)
    if start[0] >= 0:  # box inside the image: every value pasted
        assert np.isclose(pasted.sum(), values.sum(), rtol=1e-6)
    assert (pasted > 0).sum() == sum(
        1
        for z in range(6)
        for y in range(10)
        for x in range(16)
        if 0 <= start[0] + x < 30 and 0 <= start[1] + y < 26 and 0 <= start[2] + z < 12
    )


def test_levels_thresholds_are_nested_and_boost_hits_the_volume():
    rng = np.random.default_rng(0)
    probability = rng.random((10, 20, 20)).astype(np.float32)
    gtv = np.zeros_like(probability, bool)
    gtv[2:8, 5:15, 5:15] = True
    levels = make_levels(probability, 0.008, [0.7, 0.3, 0.5], [1.6, 0.8], gtv)
    assert [lv.name for lv in levels] == ["Recur_p30", "Recur_p50", "Recur_p70", "Recur_0.8cc", "Recur_1.6cc"]
    p30, p50, p70 = (lv.mask for lv in levels[:3])
    assert (p70 <= p50).all() and (p50 <= p30).all()
    np.testing.assert_array_equal(p50, probability > 0.5)
    assert levels[3].mask.sum() == 100 and levels[4].mask.sum() == 200  # 0.8 cc / 0.008 ml
    assert probability[levels[3].mask].min() >= probability[~levels[3].mask].max()
    inside = make_levels(probability, 0.008, [0.5], [0.8], gtv, within_gtv=True)
    assert (
        not (inside[0].mask & ~gtv).any()
        and inside[1].mask.sum() == 100
        and not (inside[1].mask & ~gtv).any()
    )
    assert [lv.name for lv in inside] == ["Recur_p50_inGTV", "Recur_0.8cc_inGTV"]


def test_boost_larger_than_any_probability_takes_every_positive_voxel():
    probability = np.zeros((4, 4, 4), np.float32)
    probability[0, 0, :3] = [0.2, 0.4, 0.9]
    (level,) = make_levels(probability, 1.0, [], [50.0])
    assert level.mask.sum() == 3


@pytest.mark.parametrize("text", ["0.3,x", "nan"])
def test_parse_list_refuses_bad_values(text):
    with pytest.raises(ValueError, match="--thresholds"):
        parse_list(text, "--thresholds")


def write_model(folder: Path, folds=(0, 1), channels=None, crop=True) -> Path:
    folder.mkdir(parents=True)
    dataset = {
        "channel_names": channels or {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "relapse": [1, 1]},
    }
    if crop:
        dataset["recur_crop"] = {"mode": "fixed", "size_voxels": [16, 16, 8]}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps({"dataset_name": "Dataset123_X"}))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def test_model_resolution_and_fold_choice(tmp_path, monkeypatch):
    folder = write_model(tmp_path / "Dataset123_X" / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur")
    model = resolve_model(folder)
    assert model.available_folds == [0, 1] and model.trainer == "nnUNetTrainerRecur"
    with pytest.raises(ModelError, match="seed_selection.json"):
        choose_folds(model, ["best"])  # two folds, no selection: say so, do not guess
    assert choose_folds(model, ["0", "1"])[0] == [0, 1]
    with pytest.raises(ModelError, match="unknown fold 4"):
        choose_folds(model, ["4"])
    for fold in (0, 1):
        (folder / f"fold_{fold}" / "recur_best.json").write_text(
            json.dumps(
                {
                    "fold": fold,
                    "seed": fold,
                    "monitor": "val_dice",
                    "best_metric": 0.1 + fold * 0.2,
                    "best_epoch": 3,
                    "epochs_trained": 5,
                }
            )
        )
    assert choose_folds(model, ["best"])[0] == [1]  # select_best_seed's rule, written to seed_selection.json
    assert json.loads((folder / "seed_selection.json").read_text())["best_fold"] == 1
    # issue 18 1.4: fold 0 retrained after the selection and now better: the stale selection is recomputed
    record = json.loads((folder / "fold_0" / "recur_best.json").read_text())
    (folder / "fold_0" / "recur_best.json").write_text(json.dumps({**record, "best_metric": 0.9}))
    folds, how = choose_folds(model, ["best"])
    assert folds == [0] and "recomputed" in how
    assert json.loads((folder / "seed_selection.json").read_text())["best_fold"] == 0
    assert choose_folds(model, ["best"]) == ([0], "best seed (fold 0, seed_selection.json)")  # now current
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert resolve_model(dataset="123").folder == folder
    assert resolve_model(dataset="X").folder == folder
    with pytest.raises(ModelError, match="trainer nnUNetTrainerOther"):
        resolve_model(dataset="123", trainer="nnUNetTrainerOther")


def test_models_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ModelError, match="input channels"):
        resolve_model(write_model(tmp_path / "a", channels={"0": "CT", "1": "MR"}))
    with pytest.raises(ModelError, match="recur_crop"):
        resolve_model(write_model(tmp_path / "b", crop=False))
    with pytest.raises(ModelError, match="no fold_N"):
        resolve_model(write_model(tmp_path / "c", folds=()))
    with pytest.raises(ModelError, match="no such model"):
        resolve_model(tmp_path / "missing")


def test_zip_model_is_unpacked_and_found(tmp_path):
    import shutil

    folder = write_model(
        tmp_path / "results" / "Dataset123_X" / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur", folds=(2,)
    )
    archive = shutil.make_archive(str(tmp_path / "model"), "zip", tmp_path / "results")
    model = resolve_model(archive)
    try:
        assert model.available_folds == [2] and model.folder.name == folder.name
        assert choose_folds(model, ["best"])[0] == [2]  # the only fold needs no selection
    finally:
        unpacked = model.folder
        model.close()
    assert not unpacked.exists()


def test_cli_fold_numbers_and_bad_options(tmp_path):
    from typer.testing import CliRunner

    from nnunet_recur.cli import app
    from nnunet_recur.prediction.cli import _split_fold_numbers

    patient = tmp_path / "p"
    patient.mkdir()
    assert _split_fold_numbers([patient, Path("1"), Path("2")], "0") == ([patient], ["0", "1", "2"])
    assert _split_fold_numbers([patient], "best") == ([patient], ["best"])
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["predict", str(patient), "--model", str(tmp_path), "--out", str(out), "--thresholds", "1.5"]
    )
    assert result.exit_code == 2 and "outside [0, 1)" in result.output and not out.exists()
    result = runner.invoke(
        app, ["predict", str(patient), "--model", str(tmp_path / "nope"), "--out", str(out)]
    )
    assert result.exit_code == 2 and "no such model folder" in result.output and not out.exists()
