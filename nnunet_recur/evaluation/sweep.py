"""Disk-side jobs of the baselines: the SUVmax percent sweep and the baseline prediction writers.

`suvmax-sweep` scores p = 1..100 % on the validation cases (one pass per case, see
`baselines.percent_levels`) and keeps the percent with the best mean Dice; `suvmax-predict` and
`gtv-predict` write `<case>.nii.gz` masks into a folder that `compare` then reads like any model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import baselines
from nnunet_recur.evaluation.volumes import (
    EvaluationError,
    Volume,
    brain_path,
    gtv_path,
    label_path,
    pet_path,
    read_volume,
    require_same_grid,
    write_mask,
)


@dataclass(frozen=True)
class BaselineInputs:
    images: Path | None
    masks: Path
    labels: Path | None = None


def _read_pet_and_masks(inputs: BaselineInputs, case: str) -> tuple[Volume, Volume, Volume]:
    if inputs.images is None:
        raise EvaluationError("the SUVmax threshold needs --images (PET <case>_0001.nii.gz)")
    pet = read_volume(pet_path(inputs.images, case))
    gtv = read_volume(gtv_path(inputs.masks, case))
    brain = read_volume(brain_path(inputs.masks, case))
    require_same_grid(gtv, pet)
    require_same_grid(brain, pet)
    return pet, gtv, brain


class SweepCase:
    """Picklable `case -> Dice at p = 1..100` (one read of each file, one pass over the voxels).

    A case whose inputs are unusable (missing file, empty GTV, grids that differ) comes back as its
    error message, so the sweep records it and goes on with the others.
    """

    def __init__(self, inputs: BaselineInputs):
        self.inputs = inputs

    def __call__(self, case: str) -> np.ndarray | str:
        try:
            pet, gtv, brain = _read_pet_and_masks(self.inputs, case)
            reference = read_volume(label_path(self.inputs.labels, case))
            require_same_grid(reference, pet)
            return baselines.case_sweep_dice(pet, gtv, brain, reference)
        except EvaluationError as exc:
            return str(exc)


# Alike in shape to prediction/calibration.py's read_calibration: another file (suvmax-sweep's best.json),
# its own error class (EvaluationError) and its own content rules.
def read_best(path: Path) -> dict:
    """best.json of `suvmax-sweep`: {'percent': P in (0, 100], 'cases': [...]}; anything else is refused."""
    import json

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: file not found")
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(best, dict) or "percent" not in best:
        raise EvaluationError(f"{path}: no 'percent' (not a best.json written by recur-eval suvmax-sweep?)")
    value = best["percent"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"{path}: 'percent' is {value!r}, not a number")
    cases = best.get("cases", [])
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise EvaluationError(f"{path}: 'cases' must be a list of case ids")
    return {"percent": baselines.require_percent(value, f"{path}: 'percent'"), "cases": cases}


def mean_dice(per_case: np.ndarray) -> np.ndarray:
    """Mean over cases at each percent (one `np.mean` per column, like the naive loop would)."""
    return np.array([np.mean(per_case[:, i]) for i in range(per_case.shape[1])])


class _WriteCase:
    """Shared batch behaviour of the prediction writers: skip finished cases, record failures, go on."""

    def __init__(self, out: Path, overwrite: bool):
        self.out, self.overwrite = Path(out), overwrite

    def __call__(self, case: str) -> dict:
        target = self.out / f"{case}.nii.gz"
        if target.is_file() and not self.overwrite:
            return {"case": case, "status": "skipped", "path": str(target)}
        try:
            mask, grid = self.predict(case)
        except EvaluationError as exc:
            return {"case": case, "status": "failed", "error": str(exc)}
        write_mask(mask, grid, target)
        return {"case": case, "status": "written", "path": str(target)}

    def predict(self, case: str):  # pragma: no cover - overridden
        raise NotImplementedError


class SuvmaxPredictCase(_WriteCase):
    """The SUVmax-threshold mask of one case at a fixed percent of SUVmax."""

    def __init__(self, inputs: BaselineInputs, percent: float, out: Path, overwrite: bool = False):
        super().__init__(out, overwrite)
        self.inputs, self.percent = inputs, percent

    def predict(self, case: str):
        pet, gtv, brain = _read_pet_and_masks(self.inputs, case)
        return baselines.suvmax_prediction(pet, gtv, brain, self.percent), pet.grid


class GtvPredictCase(_WriteCase):
    """The GTV contour of one case written as its prediction."""

    def __init__(self, masks: Path, out: Path, overwrite: bool = False):
        super().__init__(out, overwrite)
        self.masks = Path(masks)

    def predict(self, case: str):
        gtv = read_volume(gtv_path(self.masks, case))
        return baselines.gtv_prediction(gtv), gtv.grid
