"""Paper II.F: train five models from different seeds, keep the one with the best validation metric.

The converter writes ``splits_final.json`` with 5 identical folds, and the trainer seeds itself with the fold
number (unless ``RECUR_SEED`` is set), so folds 0-4 are five seeds on the paper's single train/val split:

    for fold in 0 1 2 3 4; do
        nnUNetv2_train 501 3d_recur $fold -p nnUNetRecurPlans -tr nnUNetTrainerRecur
    done
    recur best-seed 501    # select_best_seed() on that trainer's model folder

Each run writes ``fold_N/recur_best.json``; :func:`select_best_seed` compares them and writes
``seed_selection.json`` in the model folder. Predict with that fold only (``nnUNetv2_predict ... -f N``);
``-f 0 1 2 3 4`` would ensemble all five, which the paper did not do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic

BEST_FILE = "recur_best.json"
SELECTION_FILE = "seed_selection.json"


@dataclass
class SeedRun:
    fold: int
    seed: int
    monitor: str
    best_metric: float
    best_epoch: int
    epochs_trained: int


def write_json_atomically(data: dict, path: Path) -> None:
    """recur_best.json / seed_selection.json: indent 2, no final newline (the bytes they always had)."""
    write_json_atomic(path, data, indent=2, allow_nan=True, final_newline=False)


def _read_run(path: Path) -> SeedRun:
    try:
        data = json.loads(path.read_text())
        run = SeedRun(**{k: data[k] for k in SeedRun.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: unreadable or incomplete {BEST_FILE} ({error})") from error
    run.best_metric = float(run.best_metric) if run.best_metric is not None else math.nan
    return run


def read_seed_runs(model_dir: Path, folds: Sequence[int] | None = None) -> list[SeedRun]:
    """``fold_*/recur_best.json`` under a trainer's model folder (``.../Trainer__Plans__3d_recur``), by fold
    number; only ``folds`` when given (a missing one is an error)."""
    model_dir = Path(model_dir)
    if folds is None:
        paths = [p for p in model_dir.glob(f"fold_*/{BEST_FILE}") if p.parent.name[len("fold_") :].isdigit()]
    else:
        paths = [model_dir / f"fold_{int(fold)}" / BEST_FILE for fold in folds]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{model_dir}: no {BEST_FILE} for {', '.join(missing)}; train those folds first"
            )
    return sorted((_read_run(p) for p in paths), key=lambda run: run.fold)


def select_best_seed(model_dir: Path | str, folds: Sequence[int] | None = None) -> SeedRun:
    """THE best-seed rule (paper II.F: "the model with the highest value in the evaluation metric calculated
    on the validation set"), used by ``recur best-seed`` and the workflows.

    * Metric: each run's ``best_metric`` in ``fold_N/recur_best.json`` - the monitored validation value at the
      run's best epoch, i.e. of the weights in its ``checkpoint_final.pth``: mean whole-volume Dice over the
      validation cases (``val_dice``, higher is better) or the validation Dice loss (``val_loss``, lower).
    * Runs: every ``fold_*`` with that file, or exactly ``folds``.
    * Ties: the lowest fold number wins. NaN (or a missing value) never wins; if every run is NaN, ValueError.
    * Runs that monitored different metrics cannot be compared: ValueError.

    Writes ``seed_selection.json`` (best fold, its record, all runs) in ``model_dir``; returns the best
    :class:`SeedRun` (``.fold`` is what ``nnUNetv2_predict -f`` takes).
    """
    model_dir = Path(model_dir)
    runs = read_seed_runs(model_dir, folds)
    if not runs:
        raise FileNotFoundError(f"{model_dir}: no fold_*/{BEST_FILE}; train the folds first")
    monitors = {run.monitor for run in runs}
    if len(monitors) > 1:
        raise ValueError(f"{model_dir}: the folds monitored different metrics {sorted(monitors)}")
    sign = 1.0 if monitors.pop() == "val_loss" else -1.0  # sort ascending: best first
    finite = [run for run in runs if math.isfinite(run.best_metric)]
    if not finite:
        raise ValueError(f"{model_dir}: no fold has a finite validation metric ({[r.fold for r in runs]})")
    best = min(finite, key=lambda run: (sign * run.best_metric, run.fold))
    write_json_atomically(
        {"best_fold": best.fold, "best": asdict(best), "runs": [asdict(r) for r in runs]},
        model_dir / SELECTION_FILE,
    )
    return best
