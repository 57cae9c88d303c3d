"""From a probability map to the binary ROIs a planner boosts: fixed thresholds or a planned volume.

- threshold t: voxels with probability > t (nnU-Net's own rule for a sigmoid output at 0.5), so a list of
  thresholds gives nested ROIs;
- boost V cc: the k = round(V / voxel volume) voxels ranked highest. The rank is the model's (calibrated)
  logit when the caller passes `scores` (`prediction.calibration.ranking_scores`), else the probability:
  float32 probabilities saturate at exactly 1.0 (a logit above ~16.6), and ranking those would keep every
  tied voxel (a check found 46 GTV voxels at 1.0 and two identical 12.6 cc ROIs for --boost-cc 5,10).
  Voxels whose scores tie exactly at the cut are all kept (no arbitrary choice among equals); when the
  volume reached is then more than one voxel from V, or fewer voxels have any probability (or, with
  --within-gtv, the GTV is smaller than V), the ROI's name and description carry the volume reached
  (``Recur_10cc_got12.6cc``) and a note says why. A boost ROI with exactly the voxels of an earlier boost
  ROI is not written a second time (a note says so);
- within GTV: each ROI intersected with the GTV (a sub-volume boost); the boost volume is then counted
  inside the GTV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Level:
    """One binary ROI: its name (LO, <= 64 chars), how it was chosen, and the voxels."""

    name: str
    kind: str  # "threshold" or "boost_cc"
    requested: float  # the threshold, or the volume in cc
    threshold: float  # the probability cut actually used
    mask: np.ndarray  # bool, z, y, x
    reached_cc: float | None = None  # boost: the volume the ROI holds
    shortfall: str = ""  # boost: why the requested volume was not met within one voxel ("" when met)

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"relapse probability > {self.requested:g}"
        if self.shortfall:
            return (
                f"highest relapse probabilities: {self.requested:g} cc requested, {self.reached_cc:.2f} cc "
                f"reached ({self.shortfall})"
            )
        return (
            f"highest relapse probabilities up to {self.requested:g} cc (probability >= {self.threshold:.4f})"
        )


def parse_list(text: str | None, what: str) -> list[float]:
    """'0.3,0.5' -> [0.3, 0.5]; one-line ValueError naming the option."""
    if text is None or not text.strip():
        return []
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError as exc:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of numbers") from exc
    if any(not np.isfinite(v) for v in values):
        raise ValueError(f"{what}: {text!r} has a non-finite value")
    return values


def threshold_name(t: float, within_gtv: bool) -> str:
    return f"Recur_p{round(t * 100):02d}" + ("_inGTV" if within_gtv else "")


def boost_name(cc: float, within_gtv: bool, reached_cc: float | None = None) -> str:
    reached = f"_got{reached_cc:.3g}cc" if reached_cc is not None else ""
    return f"Recur_{cc:g}cc{reached}" + ("_inGTV" if within_gtv else "")


def make_levels(
    probability: np.ndarray,
    voxel_ml: float,
    thresholds: list[float],
    boost_cc: list[float],
    gtv: np.ndarray | None = None,
    within_gtv: bool = False,
    scores: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> list[Level]:
    """The ROIs of `thresholds` then `boost_cc` (each in increasing order) on `probability` (z, y, x).

    `scores` (same shape) ranks the voxels for the boost volumes (see the module doc); `notes` collects
    the warnings about boost volumes not met and boost ROIs not written twice."""
    for t in thresholds:
        if not 0.0 <= t < 1.0:
            raise ValueError(f"--thresholds: {t} is outside [0, 1)")
    for v in boost_cc:
        if v <= 0:
            raise ValueError(f"--boost-cc: {v} is not a positive volume")
    if within_gtv and gtv is None:
        raise ValueError("--within-gtv needs the GTV")
    if scores is not None and scores.shape != probability.shape:
        raise ValueError(f"ranking scores of shape {scores.shape} for a map of shape {probability.shape}")
    notes = notes if notes is not None else []
    region = gtv.astype(bool) if within_gtv else None
    levels = []
    for t in sorted(set(thresholds)):
        mask = probability > t
        if region is not None:
            mask &= region
        levels.append(Level(threshold_name(t, within_gtv), "threshold", t, t, mask))
    candidates = probability > 0
    if region is not None:
        candidates &= region
    rank = np.asarray(scores if scores is not None else probability, dtype=np.float64)
    ordered = np.sort(rank[candidates])[::-1]
    boosts: list[Level] = []
    for cc in sorted(set(boost_cc)):
        k = max(1, int(round(cc / voxel_ml)))
        if ordered.size:
            cut_score = ordered[min(k, ordered.size) - 1]
            mask = candidates & (rank >= cut_score)
        else:
            mask = np.zeros(probability.shape, dtype=bool)
        count = int(np.count_nonzero(mask))
        reached = count * voxel_ml
        cut = float(probability[mask].min()) if count else float("inf")
        shortfall = ""
        if abs(reached - cc) > voxel_ml * (1 + 1e-9):
            where = " in the GTV" if region is not None else ""
            if count < k:
                shortfall = f"only {count} voxel(s){where} have a relapse probability > 0"
            else:
                shortfall = f"{count - k + 1} voxels tie at the cut and are kept together"
            notes.append(
                f"--boost-cc {cc:g}: {reached:.2f} cc reached instead of {cc:g} cc ({shortfall}); the ROI's "
                "name and description say so"
            )
        name = boost_name(cc, within_gtv, round(reached, 2) if shortfall else None)
        level = Level(name, "boost_cc", cc, cut, mask, round(reached, 4), shortfall)
        same = next((b for b in boosts if np.array_equal(b.mask, mask)), None)
        if same is not None:
            notes.append(
                f"--boost-cc {cc:g}: the same voxels as {same.name} ({reached:.2f} cc); not written twice"
            )
            continue
        boosts.append(level)
    return levels + boosts
