"""Table 1's "best CNN": the method chosen on the validation set, not the first one listed (paper III.C).

The comparison with the baselines uses "the best CNN", which the paper selects on the validation set. Each
method stands for the seed ``recur best-seed`` kept (``seed_selection.json`` in its model folder, which must
still match the fold results: :func:`nnunet_recur.trainers.seeds.selection_state`), and its value is that
seed's ``best_metric``: the mean whole-volume validation Dice at its best epoch, i.e. of the weights that
predicted the test set. The methods are then compared by the best-seed rule itself
(:func:`nnunet_recur.trainers.seeds.best_on_validation`): the highest Dice wins, NaN never wins, and a tie
goes to the label that sorts first, so the order of ``methods`` in a study file does not change the choice.
A method whose seeds monitored the validation *loss* has no Dice to compare and is refused.

``REPORT/best_cnn.json`` records the choice, the rule and every method's fold and Dice; the study's
``compare`` job passes the choice as ``recur-eval compare --best``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.trainers.seeds import SELECTION_FILE, best_on_validation, selection_state
from nnunet_recur.workflow.graph import Job

BEST_CNN_FILE = "best_cnn.json"
BEST_CNN_JOB = "select_best_cnn"
RULE = (
    "highest validation Dice of the seed `recur best-seed` kept (its best_metric, val_dice); NaN never wins; "
    "ties: the label that sorts first"
)


class BestMethodError(ValueError):
    """A method cannot be scored on validation (no, stale or loss-monitored seed selection)."""


@dataclass(frozen=True)
class MethodScore:
    label: str
    trainer: str
    fold: int
    val_dice: float


def method_score(label: str, trainer: str, model_dir: Path) -> MethodScore:
    """The validation Dice of the seed kept for one method (from its ``seed_selection.json``)."""
    path = Path(model_dir) / SELECTION_FILE
    state = selection_state(model_dir)
    if state == "missing":
        raise BestMethodError(f"{path}: no seed selection for {label}; run `recur best-seed` first")
    if state == "stale":
        raise BestMethodError(
            f"{path}: the fold results of {label} changed after the seed selection; "
            "run `recur best-seed` again"
        )
    data = json.loads(path.read_text())
    best = data.get("best") or {}
    if best.get("monitor") != "val_dice":
        raise BestMethodError(
            f"{path}: {label} kept its seed on {best.get('monitor')!r}, not the validation Dice; "
            "the best CNN is chosen on validation Dice"
        )
    value = best.get("best_metric")
    return MethodScore(label, trainer, int(data["best_fold"]), math.nan if value is None else float(value))


def choose_best_method(scores: Sequence[MethodScore]) -> MethodScore:
    best = best_on_validation(scores, lambda s: s.val_dice, lambda s: s.label, higher_is_better=True)
    if best is None:
        raise BestMethodError(
            f"no method has a finite validation Dice ({', '.join(s.label for s in scores) or 'no methods'})"
        )
    return best


def write_best_method(path: Path, methods: Iterable[tuple[str, str, Path]]) -> MethodScore:
    """Score ``(label, trainer, model_dir)`` of every method, choose, and write ``path`` (best_cnn.json)."""
    scores = [method_score(label, trainer, model_dir) for label, trainer, model_dir in methods]
    best = choose_best_method(scores)
    write_json_atomic(
        Path(path),
        {"best": best.label, "rule": RULE, "methods": [asdict(s) for s in scores]},
        allow_nan=True,
    )
    return best


def read_best_method(path: Path) -> str:
    """The label ``write_best_method`` chose (for ``recur-eval compare --best``)."""
    path = Path(path)
    try:
        return str(json.loads(path.read_text())["best"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BestMethodError(
            f"{path}: no best CNN recorded ({exc}); the {BEST_CNN_JOB} job writes it"
        ) from exc


def best_method_job(path: Path, methods: Sequence[tuple[str, str, Path]], after: Sequence[str]) -> Job:
    """The in-driver step that chooses the best CNN once every method's seed is selected."""
    methods = list(methods)

    def show(console) -> None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return
        scores = ", ".join(f"{m['label']} {m['val_dice']:.3f} (seed {m['fold']})" for m in data["methods"])
        console.print(f"    best CNN on validation Dice: {data['best']} ({scores})")

    return Job(
        BEST_CNN_JOB,
        "Choose the best CNN on the validation Dice of each method's kept seed (Table 1)",
        action=lambda: write_best_method(path, methods),
        outputs=[Path(path)],
        after=tuple(after),
        show=show,
    )
