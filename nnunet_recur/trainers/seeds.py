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

import contextlib
import json
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from nnunet_recur.atomic_io import write_json_atomic

BEST_FILE = "recur_best.json"
SELECTION_FILE = "seed_selection.json"
HIGHER_IS_BETTER = {"val_dice": True, "val_loss": False}  # the monitors a run records

Candidate = TypeVar("Candidate")


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


def best_on_validation(
    candidates: Sequence[Candidate],
    value: Callable[[Candidate], float],
    tie_order: Callable[[Candidate], Hashable],
    higher_is_better: bool,
) -> Candidate | None:
    """THE comparison of the best-seed rule, shared with the choice of Table 1's best CNN
    (:mod:`nnunet_recur.workflow.best_method`): the best finite ``value`` wins; NaN (or a missing value) never
    wins; ties go to the lowest ``tie_order``. None when no candidate has a finite value."""
    finite = [c for c in candidates if value(c) is not None and math.isfinite(value(c))]
    if not finite:
        return None
    sign = -1.0 if higher_is_better else 1.0  # min() below: best first
    return min(finite, key=lambda c: (sign * value(c), tie_order(c)))


def _runs_text(runs: list[dict]) -> str:
    """A comparable form of recorded runs (NaN == NaN here, as JSON writes both as NaN)."""
    return json.dumps(runs, sort_keys=True, allow_nan=True)


def selection_state(model_dir: Path | str) -> str:
    """Whether ``seed_selection.json`` still describes the fold results (issue 18 1.4):

    * ``missing``: no selection file (or an unreadable one);
    * ``current``: it lists exactly the runs that ``fold_*/recur_best.json`` hold now (for the folds it was
      made over: every fold, or the ``folds`` it records);
    * ``stale``: a run changed, appeared or disappeared after it was written (a fold retrained or added);
    * ``unverifiable``: a selection without any ``recur_best.json`` beside it (an exported model): trusted.

    The check compares content (fold, seed, monitor, metric, epochs of every run), not file times or hashes,
    so a copied or re-exported model folder stays ``current`` and a retrained fold is ``stale`` even when
    its clock is behind.
    """
    model_dir = Path(model_dir)
    try:
        recorded = json.loads((model_dir / SELECTION_FILE).read_text())
        recorded_runs = list(recorded["runs"])
    except (OSError, ValueError, KeyError, TypeError):
        return "missing"
    if not any(model_dir.glob(f"fold_*/{BEST_FILE}")):
        return "unverifiable"
    try:
        now = read_seed_runs(model_dir, recorded.get("folds"))
    except (OSError, ValueError):
        return "stale"
    return "current" if _runs_text([asdict(r) for r in now]) == _runs_text(recorded_runs) else "stale"


def refresh_selection(model_dir: Path | str) -> str:
    """Make ``seed_selection.json`` describe the fold results before it is used: recompute it by
    :func:`select_best_seed` (over the folds it was made over) when it is ``stale``, or ``missing`` while
    ``fold_*/recur_best.json`` exist. Returns the state found (see :func:`selection_state`); raises what
    :func:`select_best_seed` raises."""
    model_dir = Path(model_dir)
    state = selection_state(model_dir)
    if state in ("missing", "stale") and read_seed_runs(model_dir):
        folds = None
        if state == "stale":
            with contextlib.suppress(OSError, ValueError, AttributeError):
                folds = json.loads((model_dir / SELECTION_FILE).read_text()).get("folds")
        select_best_seed(model_dir, folds)
    return state


def select_best_seed(model_dir: Path | str, folds: Sequence[int] | None = None) -> SeedRun:
    """THE best-seed rule (paper II.F: "the model with the highest value in the evaluation metric calculated
    on the validation set"), used by ``recur best-seed`` and the workflows.

    * Metric: each run's ``best_metric`` in ``fold_N/recur_best.json`` - the monitored validation value at the
      run's best epoch, i.e. of the weights in its ``checkpoint_final.pth``: mean whole-volume Dice over the
      validation cases (``val_dice``, higher is better) or the validation Dice loss (``val_loss``, lower).
    * Runs: every ``fold_*`` with that file, or exactly ``folds``.
    * Ties: the lowest fold number wins. NaN (or a missing value) never wins; if every run is NaN, ValueError.
      (:func:`best_on_validation`.)
    * Runs that monitored different metrics cannot be compared: ValueError.

    Writes ``seed_selection.json`` (best fold, its record, all runs, the folds asked for) in ``model_dir``;
    returns the best :class:`SeedRun` (``.fold`` is what ``nnUNetv2_predict -f`` takes).
    """
    model_dir = Path(model_dir)
    runs = read_seed_runs(model_dir, folds)
    if not runs:
        raise FileNotFoundError(f"{model_dir}: no fold_*/{BEST_FILE}; train the folds first")
    monitors = {run.monitor for run in runs}
    if len(monitors) > 1:
        raise ValueError(f"{model_dir}: the folds monitored different metrics {sorted(monitors)}")
    monitor = monitors.pop()
    best = best_on_validation(
        runs, lambda run: run.best_metric, lambda run: run.fold, HIGHER_IS_BETTER.get(monitor, True)
    )
    if best is None:
        raise ValueError(f"{model_dir}: no fold has a finite validation metric ({[r.fold for r in runs]})")
    write_json_atomically(
        {
            "best_fold": best.fold,
            "best": asdict(best),
            "runs": [asdict(r) for r in runs],
            "folds": None if folds is None else [int(f) for f in folds],
        },
        model_dir / SELECTION_FILE,
    )
    return best
