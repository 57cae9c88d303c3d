"""Training curves: read nnU-Net's logger out of our trainer's checkpoints, mark the kept epoch, plot.

The checkpoints are written here with nnU-Net's own logger (``LocalLogger``, what ``nnUNetTrainer`` logs
through) and the keys ``nnUNetTrainerRecur.save_checkpoint`` writes, so the reader sees the structure a real
``nnUNetv2_train`` run leaves; the slow trainer tests train real runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_recur.evaluation.training_curves import (
    TrainingCurveError,
    read_training_curve,
    write_training_curves,
)


def _fake_run(
    fold_dir: Path, dice, lrs, best_epoch=None, file="checkpoint_final.pth", recur_state=True
) -> Path:
    from nnunetv2.training.logging.nnunet_logger import LocalLogger

    logger = LocalLogger()
    for epoch, (d, lr) in enumerate(zip(dice, lrs, strict=True)):
        logger.log("lrs", lr, epoch)
        logger.log("train_losses", np.float32(1 - d), epoch)  # numpy scalars, as nnU-Net logs them
        logger.log("mean_fg_dice", d, epoch)
        logger.log("val_losses", 1 - d, epoch)
    fold_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = {"network_weights": {}, "logging": logger.get_checkpoint(), "current_epoch": len(dice)}
    if recur_state:
        checkpoint["recur_state"] = {"best_epoch": best_epoch, "monitor": "val_dice"}
    torch.save(checkpoint, fold_dir / file)
    return fold_dir


def test_reads_dice_lr_and_the_kept_epoch_from_recur_best(tmp_path):
    fold = _fake_run(tmp_path / "fold_0", [0.1, 0.3, 0.2, 0.25], [0.1, 0.1, 0.1, 0.005], best_epoch=1)
    (fold / "recur_best.json").write_text(json.dumps({"best_epoch": 2, "monitor": "val_loss"}))
    curve = read_training_curve(fold, label="AI random seed 0")
    assert curve.val_dice == pytest.approx([0.1, 0.3, 0.2, 0.25])
    assert curve.lr == pytest.approx([0.1, 0.1, 0.1, 0.005])
    assert curve.train_loss == pytest.approx([0.9, 0.7, 0.8, 0.75])
    # recur_best.json is what the trainer chose and wins over the checkpoint's state
    assert curve.chosen_epoch == 2 and curve.monitor == "val_loss"


def test_kept_epoch_falls_back_to_checkpoint_state_then_best_dice(tmp_path):
    a = _fake_run(tmp_path / "a" / "fold_0", [0.1, 0.3, 0.2], [0.1] * 3, best_epoch=0)
    assert read_training_curve(a).chosen_epoch == 0
    b = _fake_run(tmp_path / "b" / "fold_0", [0.1, 0.3, 0.2], [0.1] * 3, recur_state=False)
    assert read_training_curve(b).chosen_epoch == 1


def test_interrupted_run_reads_latest_and_keeps_nan_as_gaps(tmp_path):
    fold = _fake_run(tmp_path / "fold_1", [0.2, float("nan"), 0.4], [0.1] * 3, file="checkpoint_latest.pth")
    curve = read_training_curve(fold)
    assert curve.source.endswith("checkpoint_latest.pth") and curve.epochs == 3
    # no best epoch recorded yet: the highest finite Dice, skipping the NaN epoch
    assert math.isnan(curve.val_dice[1]) and curve.chosen_epoch == 2


def test_missing_and_truncated_checkpoints_name_the_file(tmp_path):
    with pytest.raises(TrainingCurveError, match="no checkpoint_final.pth"):
        read_training_curve(tmp_path / "fold_0")
    fold = _fake_run(tmp_path / "fold_2", [0.1, 0.2], [0.1, 0.1])
    data = (fold / "checkpoint_final.pth").read_bytes()
    (fold / "checkpoint_final.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingCurveError, match=r"fold_2/checkpoint_final.pth: cannot be read"):
        read_training_curve(fold)
    torch.save({"network_weights": {}}, fold / "checkpoint_final.pth")
    with pytest.raises(TrainingCurveError, match="no nnU-Net 'logging' dict"):
        read_training_curve(fold)


def test_writes_png_csv_json_for_several_runs(tmp_path):
    runs = [
        read_training_curve(_fake_run(tmp_path / "r" / "fold_0", [0.1, 0.3, 0.2], [0.1] * 3, 1), "AI random"),
        read_training_curve(_fake_run(tmp_path / "f" / "fold_0", [0.2, 0.1], [0.1, 0.005], 0), "AI finetune"),
    ]
    paths = write_training_curves(runs, tmp_path / "report")
    assert paths["png"].stat().st_size > 10_000
    lines = paths["csv"].read_text().splitlines()
    assert lines[0].startswith("run,epoch,val_dice,lr") and len(lines) == 1 + 3 + 2
    summary = json.loads(paths["json"].read_text())
    assert summary["AI random"]["chosen_epoch"] == 1
    assert summary["AI random"]["val_dice_at_chosen"] == pytest.approx(0.3)
    assert summary["AI finetune"]["final_lr"] == pytest.approx(0.005)
    assert not list((tmp_path / "report").glob(".*tmp*"))  # nothing half-written left behind


def test_command_writes_the_figure_and_rejects_a_bad_run_argument(tmp_path):
    import typer
    from typer.testing import CliRunner

    from nnunet_recur.evaluation.cli_training_curves import training_curves

    app = typer.Typer()
    app.command("training-curves")(training_curves)
    app.command("other")(lambda: None)  # two commands keep typer from flattening the app
    fold = _fake_run(tmp_path / "fold_0", [0.1, 0.3], [0.1, 0.1], best_epoch=1)
    ok = CliRunner().invoke(app, ["training-curves", "--run", f"AI random={fold}", "--out", str(tmp_path)])
    assert ok.exit_code == 0 and "kept epoch 1" in ok.output, ok.output
    assert (tmp_path / "training_curves.png").is_file()
    bad = CliRunner().invoke(app, ["training-curves", "--run", str(fold), "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "expected LABEL=FOLD_DIR" in bad.output and "Traceback" not in bad.output
