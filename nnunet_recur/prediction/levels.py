"""From a probability map to the binary ROIs a planner boosts: fixed thresholds or a planned volume.

- threshold t: voxels with probability > t (nnU-Net's own rule for a sigmoid output at 0.5), so a list of
  thresholds gives nested ROIs;
- boost V cc: the voxels with the highest probabilities until V cc are reached, i.e. probability >= the
  k-th highest value, k = round(V / voxel volume); ties at that value are all kept, and when fewer voxels
  have any probability the ROI is every voxel with probability > 0 (the summary reports the volume reached);
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

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"relapse probability > {self.requested:g}"
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


def boost_name(cc: float, within_gtv: bool) -> str:
    return f"Recur_{cc:g}cc" + ("_inGTV" if within_gtv else "")


def make_levels(
    probability: np.ndarray,
    voxel_ml: float,
    thresholds: list[float],
    boost_cc: list[float],
    gtv: np.ndarray | None = None,
    within_gtv: bool = False,
) -> list[Level]:
    """The ROIs of `thresholds` then `boost_cc` (each in increasing order) on `probability` (z, y, x)."""
    for t in thresholds:
        if not 0.0 <= t < 1.0:
            raise ValueError(f"--thresholds: {t} is outside [0, 1)")
    for v in boost_cc:
        if v <= 0:
            raise ValueError(f"--boost-cc: {v} is not a positive volume")
    if within_gtv and gtv is None:
        raise ValueError("--within-gtv needs the GTV")
    region = gtv.astype(bool) if within_gtv else None
    levels = []
    for t in sorted(set(thresholds)):
        mask = probability > t
        if region is not None:
            mask &= region
        levels.append(Level(threshold_name(t, within_gtv), "threshold", t, t, mask))
    candidates = probability[region] if region is not None else probability.ravel()
    candidates = candidates[candidates > 0]
    ordered = np.sort(candidates)[::-1]
    for cc in sorted(set(boost_cc)):
        k = max(1, int(round(cc / voxel_ml)))
        cut = float(ordered[min(k, ordered.size) - 1]) if ordered.size else np.inf
        mask = (probability >= cut) & (probability > 0)
        if region is not None:
            mask &= region
        levels.append(Level(boost_name(cc, within_gtv), "boost_cc", cc, cut, mask))
    return levels
