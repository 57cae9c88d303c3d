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
import os
from dataclasses import asdict, dataclass
from pathlib import Path

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
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


def read_seed_runs(model_dir: Path) -> list[SeedRun]:
    """Every ``fold_*/recur_best.json`` under a trainer's model folder (``.../Trainer__Plans__3d_recur``)."""
    runs = []
    for path in sorted(Path(model_dir).glob(f"fold_*/{BEST_FILE}")):
        data = json.loads(path.read_text())
        runs.append(SeedRun(**{k: data[k] for k in SeedRun.__dataclass_fields__}))
    return runs


def select_best_seed(model_dir: Path) -> SeedRun:
    """The run with the best validation metric (highest Dice or lowest loss), saved to seed_selection.json."""
    runs = read_seed_runs(model_dir)
    if not runs:
        raise FileNotFoundError(f"{model_dir}: no fold_*/{BEST_FILE}; train the folds first")
    monitors = {run.monitor for run in runs}
    if len(monitors) > 1:
        raise ValueError(f"{model_dir}: the folds monitored different metrics {sorted(monitors)}")
    lower_is_better = monitors.pop() == "val_loss"
    best = (
        min(runs, key=lambda r: r.best_metric) if lower_is_better else max(runs, key=lambda r: r.best_metric)
    )
    write_json_atomically(
        {"best_fold": best.fold, "best": asdict(best), "runs": [asdict(r) for r in runs]},
        Path(model_dir) / SELECTION_FILE,
    )
    return best
