"""The two baselines of paper II.F: SUVmax threshold and GTV contour, and the one-pass threshold sweep.

SUVmax threshold: SUVmax is the highest PET (SUV) voxel inside the GTV; the prediction at p % is
`pet >= p / 100 * suvmax` (both float64), with brain voxels removed. The paper tried p = 1..100
on the validation set and kept the best mean Dice (38 %).

The sweep does not threshold the volume 100 times. For every voxel it counts how many thresholds it
passes, `level = #{p : pet >= t_p}` with `t_p = p / 100 * suvmax` in float64 (computed in
`percent_levels`); because float64 division and multiplication by a positive number are monotone,
`pet >= t_p  <=>  level >= p` exactly, voxels lying exactly on a threshold included. A histogram of
levels (all voxels, and reference voxels) then gives, by a reverse cumulative sum, the prediction
size and the intersection for all 100 thresholds: the same Dice values as the naive loop, bit for bit.
The same `percent_levels` (scale 1) turns a CNN probability map into a threshold curve.
"""

from __future__ import annotations

import numpy as np

from nnunet_recur.evaluation.metrics import OverlapCounts, as_mask, dice_from_counts
from nnunet_recur.evaluation.volumes import EvaluationError, Volume, require_same_grid

PERCENTS = np.arange(1, 101)


class SuvmaxUndefinedError(EvaluationError):
    """SUVmax inside the GTV is undefined (empty GTV) or unusable (<= 0 or non-finite)."""


def suvmax_in_gtv(pet: Volume, gtv: Volume) -> float:
    """Highest SUV inside the GTV (float64), > 0 and finite; anything else is an error naming the files.

    SUVmax <= 0 would put the threshold at or below 0 and turn the whole field of view (minus the
    brain) into the prediction, so it is refused rather than scored.
    """
    require_same_grid(gtv, pet)
    inside = as_mask(gtv.array)
    if not inside.any():
        raise SuvmaxUndefinedError(f"{gtv.name}: GTV mask is empty, SUVmax is undefined")
    values = pet.array[inside].astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise SuvmaxUndefinedError(f"{pet.name}: non-finite PET values inside the GTV ({gtv.name})")
    suvmax = float(np.max(values))
    if not suvmax > 0:
        raise SuvmaxUndefinedError(
            f"{pet.name}: SUVmax inside the GTV ({gtv.name}) is {suvmax:g}; a threshold needs SUVmax > 0 "
            "(a PET without uptake in the GTV, or NaN read as 0 upstream)"
        )
    return suvmax


def require_percent(percent: float, where: str = "--percent") -> float:
    """A threshold percent must lie in (0, 100]: at 0 every voxel would be predicted."""
    percent = float(percent)
    if not (np.isfinite(percent) and 0 < percent <= 100):
        raise EvaluationError(f"{where}: percent {percent:g} is not in (0, 100]")
    return percent


def suv_thresholds(suvmax: float, percents=PERCENTS) -> np.ndarray:
    """`p / 100 * suvmax` in float64 for each percent, in the same operation order as the paper's loop."""
    return np.asarray(percents, dtype=np.float64) / 100.0 * np.float64(suvmax)


def suvmax_prediction(pet: Volume, gtv: Volume, brain: Volume, percent: float) -> np.ndarray:
    """The SUVmax-threshold prediction (bool array on the PET grid) at `percent` % of SUVmax."""
    require_same_grid(brain, pet)
    threshold = np.float64(require_percent(percent)) / 100.0 * np.float64(suvmax_in_gtv(pet, gtv))
    return (pet.array.astype(np.float64, copy=False) >= threshold) & ~as_mask(brain.array)


def gtv_prediction(gtv: Volume) -> np.ndarray:
    """The GTV-contour baseline: the GTV itself is the predicted relapse region."""
    return as_mask(gtv.array)


def _exact_percent_levels(values: np.ndarray, scale: np.float64, n_percents: int) -> np.ndarray:
    """float64 path: a guess `floor(100 v / scale)` corrected once up and once down against the very
    threshold expression of the naive loop (the guess is at most one level off)."""
    v = values.astype(np.float64, copy=False)
    guess = v * (100.0 / scale)
    np.clip(guess, 0, n_percents, out=guess)
    level = np.floor(guess, out=guess)
    level += v >= (level + 1.0) / 100.0 * scale
    level -= v < level / 100.0 * scale
    np.clip(level, 0, n_percents, out=level)
    level[np.isnan(level)] = 0  # NaN passes no threshold, as in the naive comparison
    return level.astype(np.uint8 if n_percents < 256 else np.int32)


# A float32 product is within ~1.3e-5 levels of the exact ratio for levels <= 101; voxels closer
# than this margin to a threshold are recomputed exactly.
_FLOAT32_MARGIN = 1e-3


def percent_levels(values: np.ndarray, scale: float, n_percents: int = len(PERCENTS)) -> np.ndarray:
    """Per voxel, how many of the thresholds `t_p = p / 100 * scale` (p = 1..n) it reaches.

    `values >= p / 100 * scale` (compared in float64) is exactly `level >= p`. float32 images (PET,
    probability maps) take a fast float32 pass, and only the voxels lying within a hair of a threshold
    go through the exact float64 comparison; other dtypes take the exact path throughout.
    """
    scale = np.float64(scale)
    if not scale > 0:
        raise ValueError(f"threshold scale must be positive, got {scale}")
    if values.dtype != np.float32:
        return _exact_percent_levels(values, scale, n_percents)
    with np.errstate(invalid="ignore", over="ignore"):
        x = values * np.float32(100.0 / scale)
        nearest = np.rint(x)
        unsure = np.abs(x - nearest) < _FLOAT32_MARGIN
        unsure &= (nearest >= 1) & (nearest <= n_percents)
        unsure |= np.isnan(x)
        np.clip(x, 0, n_percents, out=x)
        level = np.floor(x, out=x).astype(np.uint8 if n_percents < 256 else np.int32)
    where = np.flatnonzero(unsure)
    if where.size:
        flat = level.reshape(-1)
        flat[where] = _exact_percent_levels(values.reshape(-1)[where], scale, n_percents)
    return level


def suv_levels(pet: Volume, gtv: Volume, brain: Volume, n_percents: int = len(PERCENTS)) -> np.ndarray:
    """Per-voxel count of SUV percents reached (0 in the brain): prediction at p % = `level >= p`."""
    require_same_grid(brain, pet)
    levels = percent_levels(pet.array, suvmax_in_gtv(pet, gtv), n_percents)
    levels[as_mask(brain.array)] = 0
    return levels


def counts_per_level(levels: np.ndarray, reference: np.ndarray, n_thresholds: int) -> list[OverlapCounts]:
    """OverlapCounts of the prediction `levels > i` for i = 0..n-1, from two histograms (one pass)."""
    ref = as_mask(reference)
    all_hist = np.bincount(levels.ravel(), minlength=n_thresholds + 1)
    ref_hist = np.bincount(levels[ref].ravel(), minlength=n_thresholds + 1)
    # number of voxels with level >= i+1, i.e. reverse cumulative sums from the top level down
    predicted = np.cumsum(all_hist[::-1])[::-1][1:]
    intersection = np.cumsum(ref_hist[::-1])[::-1][1:]
    n_ref = int(np.count_nonzero(ref))
    return [
        OverlapCounts(prediction=int(p), reference=n_ref, intersection=int(i))
        for p, i in zip(predicted, intersection, strict=True)
    ]


def sweep_dice(levels: np.ndarray, reference: np.ndarray, n_thresholds: int = len(PERCENTS)) -> np.ndarray:
    """Dice at every threshold of a level map (index i = threshold i), same values as thresholding."""
    return np.array([dice_from_counts(c) for c in counts_per_level(levels, reference, n_thresholds)])


def case_sweep_dice(pet: Volume, gtv: Volume, brain: Volume, reference: Volume) -> np.ndarray:
    """Dice of the SUVmax-threshold prediction for p = 1..100 % on one case, in one pass."""
    require_same_grid(reference, pet)
    return sweep_dice(suv_levels(pet, gtv, brain), reference.array)


def naive_sweep_dice(pet: Volume, gtv: Volume, brain: Volume, reference: Volume) -> np.ndarray:
    """The reference implementation (100 thresholdings): only for tests and the benchmark."""
    from nnunet_recur.evaluation.metrics import dice

    return np.array([dice(suvmax_prediction(pet, gtv, brain, p), reference.array) for p in PERCENTS])


def best_percent(percents: np.ndarray, mean_dice: np.ndarray) -> tuple[int, float]:
    """The percent with the highest mean Dice (the lowest such percent on ties)."""
    index = int(np.nanargmax(mean_dice))
    return int(percents[index]), float(mean_dice[index])
