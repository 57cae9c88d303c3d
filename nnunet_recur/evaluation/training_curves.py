"""Training curves: validation Dice and learning rate per epoch for every trained run, chosen epoch marked.

Why: Table 1 shows only the end result; the curves show whether a run learned at all, where the plateau
scheduler cut the learning rate, and which epoch's weights ``checkpoint_final.pth`` holds. nnU-Net's own
``progress.png`` stays where nnU-Net puts it; this figure puts all methods and seeds side by side.

Sources, per ``fold_k`` folder that ``nnUNetv2_train`` wrote with a ``nnUNetTrainerRecur*`` trainer:

* the ``logging`` dict of nnU-Net's logger inside ``checkpoint_final.pth`` (``checkpoint_latest.pth`` when
  the run was interrupted): ``mean_fg_dice`` (our trainer logs the whole-volume validation Dice there),
  ``lrs``, ``train_losses``, ``val_losses``, one entry per epoch;
* ``recur_best.json`` (the trainer's chosen epoch and metric); without it, the ``recur_state`` of the
  checkpoint, and failing that the epoch of the highest validation Dice.

Edge cases: a missing, truncated or foreign checkpoint raises :class:`TrainingCurveError` naming the file;
non-finite values (a NaN Dice of an empty validation set) stay NaN and show as gaps; lists of unequal
length (a run stopped mid-epoch) are cut to the epochs that have a validation Dice.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_recur.atomic_io import atomic_path, write_json_atomic

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth")
BEST_FILE = "recur_best.json"  # written by nnUNetTrainerRecur.on_train_end (trainers/seeds.py BEST_FILE)


class TrainingCurveError(ValueError):
    """A run folder whose training log cannot be read (the message names the file)."""


@dataclass
class TrainingCurve:
    """One training run: per-epoch values (index = epoch) and the epoch whose weights were kept."""

    label: str
    source: str
    val_dice: list[float]
    lr: list[float]
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    chosen_epoch: int | None = None
    monitor: str = "val_dice"

    @property
    def epochs(self) -> int:
        return len(self.val_dice)

    def rows(self) -> list[dict]:
        """One row per epoch, for the CSV."""
        return [
            {
                "run": self.label,
                "epoch": e,
                "val_dice": self.val_dice[e],
                "lr": _at(self.lr, e),
                "train_loss": _at(self.train_loss, e),
                "val_loss": _at(self.val_loss, e),
                "chosen": e == self.chosen_epoch,
            }
            for e in range(self.epochs)
        ]


def _at(values: list[float], i: int) -> float:
    return values[i] if i < len(values) else math.nan


def _floats(values, name: str, path: Path) -> list[float]:
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        raise TrainingCurveError(f"{path}: logging[{name!r}] is not a list")
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):  # dice_per_class_or_region-like entries: first region
            v = v[0] if v else math.nan
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f if math.isfinite(f) else math.nan)
    return out


def _load_checkpoint(path: Path) -> dict:
    import torch  # noqa: PLC0415 - only when reading a run

    try:
        # our own trainer's file; its logger holds numpy scalars, which weights_only=True refuses
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - truncated/foreign files raise many types
        raise TrainingCurveError(
            f"{path}: cannot be read as a checkpoint ({type(error).__name__})"
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("logging"), dict):
        raise TrainingCurveError(f"{path}: no nnU-Net 'logging' dict (not an nnUNetv2_train checkpoint)")
    return checkpoint


def read_training_curve(fold_dir: Path, label: str | None = None) -> TrainingCurve:
    """The curve of one ``fold_k`` folder (see the module docstring for what is read)."""
    fold_dir = Path(fold_dir)
    path = next((fold_dir / n for n in CHECKPOINTS if (fold_dir / n).is_file()), None)
    if path is None:
        raise TrainingCurveError(f"{fold_dir}: no {' or '.join(CHECKPOINTS)}; train this fold first")
    checkpoint = _load_checkpoint(path)
    log = checkpoint["logging"]
    dice = _floats(log.get("mean_fg_dice"), "mean_fg_dice", path)
    n = len(dice)
    curve = TrainingCurve(
        label=label or fold_dir.name,
        source=str(path),
        val_dice=dice,
        lr=_floats(log.get("lrs"), "lrs", path)[:n],
        train_loss=_floats(log.get("train_losses"), "train_losses", path)[:n],
        val_loss=_floats(log.get("val_losses"), "val_losses", path)[:n],
    )
    best_file = fold_dir / BEST_FILE
    state = checkpoint.get("recur_state") if isinstance(checkpoint.get("recur_state"), dict) else {}
    chosen, monitor = None, state.get("monitor", "val_dice")
    if best_file.is_file():
        try:
            best = json.loads(best_file.read_text())
            chosen, monitor = best.get("best_epoch"), best.get("monitor", monitor)
        except (OSError, json.JSONDecodeError) as error:
            raise TrainingCurveError(f"{best_file}: unreadable JSON ({error})") from error
    elif state.get("best_epoch") is not None:
        chosen = state["best_epoch"]
    elif any(math.isfinite(v) for v in dice):
        chosen = max(range(n), key=lambda e: dice[e] if math.isfinite(dice[e]) else -math.inf)
    curve.chosen_epoch = int(chosen) if chosen is not None and 0 <= int(chosen) < max(n, 1) else None
    curve.monitor = str(monitor)
    return curve


def plot_training_curves(curves: Sequence[TrainingCurve], path: Path) -> Path:
    """Two panels sharing the epoch axis: validation Dice (chosen epoch marked) and the learning rate."""
    from nnunet_recur.evaluation.figures import _pyplot, _save, method_colours  # noqa: PLC0415

    if not curves:
        raise ValueError("no training curves to plot")
    plt = _pyplot()
    colours = method_colours([c.label for c in curves])
    fig, (ax_dice, ax_lr) = plt.subplots(2, 1, figsize=(7.0, 6.0), sharex=True, height_ratios=(2, 1))
    for c in curves:
        epochs = list(range(c.epochs))
        ax_dice.plot(epochs, c.val_dice, "-", color=colours[c.label], label=c.label, linewidth=1.4)
        if c.chosen_epoch is not None:
            e = c.chosen_epoch
            ax_dice.plot([e], [c.val_dice[e]], "*", color=colours[c.label], markersize=13,
                         markeredgecolor="black", zorder=5)  # fmt: skip
            ax_dice.axvline(e, color=colours[c.label], linestyle=":", linewidth=0.8)
        if c.lr:
            ax_lr.plot(list(range(len(c.lr))), c.lr, "-", color=colours[c.label], linewidth=1.2)
    ax_dice.set_ylabel("validation Dice (mean over cases)")
    ax_dice.set_ylim(bottom=0)
    ax_dice.grid(alpha=0.3)
    ax_dice.legend(fontsize=8, loc="best", title="run (★ = kept epoch)", title_fontsize=8)
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    ax_lr.grid(alpha=0.3, which="both")
    fig.suptitle("Training curves: validation Dice and learning rate per epoch", fontsize=10)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_training_curves(curves: Sequence[TrainingCurve], out: Path, stem: str = "training_curves") -> dict:
    """``OUT/<stem>.png`` plus the numbers beside it: ``<stem>.csv`` (per epoch) and ``<stem>.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_training_curves(curves, out / f"{stem}.png")
    rows = [row for c in curves for row in c.rows()]
    csv_path = out / f"{stem}.csv"
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["run", "epoch"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        c.label: {
            "source": c.source,
            "epochs": c.epochs,
            "chosen_epoch": c.chosen_epoch,
            "monitor": c.monitor,
            "val_dice_at_chosen": None if c.chosen_epoch is None else _json_float(c.val_dice[c.chosen_epoch]),
            "final_lr": _json_float(c.lr[-1]) if c.lr else None,
        }
        for c in curves
    }
    json_path = out / f"{stem}.json"
    # indent 2, no final newline: the bytes this file always had
    write_json_atomic(json_path, summary, indent=2, allow_nan=True, final_newline=False)
    return {"png": png, "csv": csv_path, "json": json_path}


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None
