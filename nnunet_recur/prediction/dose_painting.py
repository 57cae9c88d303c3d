"""Dose painting by numbers: from a relapse-probability map to a voxel dose prescription (Gy).

Linear mapping (Bentzen 2005, Lancet Oncol 6:112; Bentzen & Gregoire 2011, Semin Radiat Oncol 21:101):

    D(x) = D_low + (D_high - D_low) * r(x),   r(x) = clip((p(x) - p_lo) / (p_hi - p_lo), 0, 1)

inside an allowed region (the GTV grown by a margin, or a named ROI); the base dose outside it.

- escalation (default): D_low = --base-gy, D_high = --boost-gy;
- --iso-mean (redistribution at equal mean target dose, as Grönlund et al. 2017, Radiother Oncol 122:236,
  and 2019, Phys Imaging Radiat Oncol 12:56, do from retrospective recurrence probabilities): D_low and
  D_high are solved so that the mean over the region equals --mean-gy with every voxel in
  [--min-gy, --max-gy]. The mean is linear in them: mean = D_low + (D_high - D_low) * mean(r). With
  D_high = max the solution is D_low = (M - max * mean(r)) / (1 - mean(r)); when that falls below min,
  D_low = min and D_high = min + (M - min) / mean(r), which is then <= max. A closed form, exact to
  floating point; no iteration. When mean(r) is 0 or 1 (every voxel on one side of the ramp) the only
  solution is the uniform dose M.
- --levels N quantises the region's dose to N equally spaced levels between its lowest and highest dose
  (planning systems that optimise on contours): each voxel takes the nearest level; the level ROIs are
  DISJOINT (every region voxel in exactly one ROI, their union is the region).

p is the calibrated probability when the model has a calibration (the caller passes it in; this module
does not care where p came from).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_LEVELS, MAX_LEVELS = 3, 11


# A dataclass of options with defaults, alike in shape only to federated.rounds.Settings.
@dataclass
class DoseMapOptions:
    base_gy: float = 68.0
    boost_gy: float = 80.0
    p_lo: float = 0.0
    p_hi: float = 1.0
    margin_mm: float = 5.0
    region_roi: str | None = None  # a ROI of the patient's RTSTRUCT instead of GTV + margin
    iso_mean: bool = False
    mean_gy: float | None = None  # default: base_gy
    min_gy: float = 60.0
    max_gy: float | None = None  # default: boost_gy
    levels: int | None = None

    def validate(self) -> None:
        """One-line ValueError naming the option."""
        values = {k: v for k, v in asdict(self).items() if isinstance(v, float)}
        for key, value in values.items():
            if not np.isfinite(value):
                raise ValueError(f"--{key.replace('_', '-')}: {value} is not finite")
        if not 0.0 <= self.p_lo < self.p_hi <= 1.0:
            raise ValueError(f"--p-lo/--p-hi: need 0 <= p_lo < p_hi <= 1, got {self.p_lo}, {self.p_hi}")
        if self.base_gy < 0 or self.boost_gy < 0:
            raise ValueError("--base-gy/--boost-gy: a dose is negative")
        if self.margin_mm < 0:
            raise ValueError(f"--margin-mm: {self.margin_mm} is negative")
        if self.levels is not None and not MIN_LEVELS <= self.levels <= MAX_LEVELS:
            raise ValueError(f"--levels: {self.levels} is outside {MIN_LEVELS}..{MAX_LEVELS}")
        if self.iso_mean:
            lo, mean, hi = self.min_gy, self.target_mean_gy, self.upper_gy
            if not 0 <= lo <= mean <= hi:
                raise ValueError(
                    f"--iso-mean: need 0 <= --min-gy <= --mean-gy <= --max-gy, got {lo}, {mean}, {hi}"
                )

    @property
    def target_mean_gy(self) -> float:
        return self.base_gy if self.mean_gy is None else self.mean_gy

    @property
    def upper_gy(self) -> float:
        return self.boost_gy if self.max_gy is None else self.max_gy


def ramp(probability: np.ndarray, p_lo: float, p_hi: float) -> np.ndarray:
    """r(x) = clip((p - p_lo) / (p_hi - p_lo), 0, 1) (float64)."""
    return np.clip((np.asarray(probability, dtype=np.float64) - p_lo) / (p_hi - p_lo), 0.0, 1.0)


def grow_region(mask: np.ndarray, margin_mm: float, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """`mask` grown by `margin_mm` (Euclidean, in mm, anisotropic spacing)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing_zyx)
    return distance <= margin_mm + 1e-6


def solve_iso_mean(mean_ramp: float, target: float, low: float, high: float) -> tuple[float, float]:
    """(D_low, D_high) with D_low + (D_high - D_low) * mean_ramp == target, low <= D_low <= D_high <= high."""
    if mean_ramp <= 0.0 or mean_ramp >= 1.0:
        return target, target
    d_low = (target - high * mean_ramp) / (1.0 - mean_ramp)
    if d_low >= low:
        return d_low, high
    return low, low + (target - low) / mean_ramp


@dataclass
class DoseMap:
    dose: np.ndarray  # float32 Gy, z, y, x (full planning-CT grid)
    region: np.ndarray  # bool
    d_low: float
    d_high: float
    levels: list[float]  # the quantised doses (empty without --levels)
    summary: dict


def quantise(dose: np.ndarray, region: np.ndarray, n: int) -> tuple[np.ndarray, list[float]]:
    """Region voxels to the nearest of n equally spaced levels between the region's min and max dose."""
    values = dose[region]
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        return dose.copy(), [round(lo, 4)]
    levels = np.linspace(lo, hi, n)
    index = np.clip(np.round((values - lo) / (hi - lo) * (n - 1)).astype(int), 0, n - 1)
    out = dose.copy()
    out[region] = levels[index]
    return out, [float(v) for v in levels]


def level_masks(dose: np.ndarray, region: np.ndarray, levels: list[float]) -> list[tuple[float, np.ndarray]]:
    """Disjoint masks, one per level that holds a voxel (empty levels are left out, never written)."""
    out = []
    for level in levels:
        mask = region & np.isclose(dose, level, atol=1e-4)
        if mask.any():
            out.append((level, mask))
    return out


def level_names(doses: list[float]) -> list[str]:
    """DP_74.0Gy, ...; more decimals when two levels would otherwise share a name."""
    for decimals in (1, 2, 3, 4):
        names = [f"DP_{d:.{decimals}f}Gy" for d in doses]
        if len(set(names)) == len(names):
            return names
    return [f"DP_{i}_{d:.4f}Gy" for i, d in enumerate(doses, start=1)]


def dose_map(
    probability: np.ndarray,
    region: np.ndarray,
    options: DoseMapOptions,
    voxel_ml: float,
    probability_source: str = "model probability (uncalibrated)",
) -> DoseMap:
    """The prescription on the grid of `probability` (z, y, x); raises ValueError for an empty region."""
    options.validate()
    region = np.asarray(region, dtype=bool)
    if not region.any():
        raise ValueError("the dose-painting region is empty")
    if not np.all(np.isfinite(probability[region])):
        raise ValueError("the probability map has non-finite values in the dose-painting region")
    r = ramp(probability, options.p_lo, options.p_hi)
    mean_ramp = float(r[region].mean())
    if options.iso_mean:
        d_low, d_high = solve_iso_mean(mean_ramp, options.target_mean_gy, options.min_gy, options.upper_gy)
    else:
        d_low, d_high = options.base_gy, options.boost_gy
    dose = np.full(probability.shape, options.base_gy, dtype=np.float64)
    dose[region] = d_low + (d_high - d_low) * r[region]
    levels: list[float] = []
    if options.levels:
        dose, levels = quantise(dose, region, options.levels)
    inside = dose[region]
    summary = {
        "parameters": {**asdict(options), "mean_gy": options.target_mean_gy, "max_gy": options.upper_gy},
        "probability_source": probability_source,
        "mapping": "D = D_low + (D_high - D_low) * clip((p - p_lo) / (p_hi - p_lo), 0, 1) in the region; "
        "base dose outside",
        "d_low_gy": round(d_low, 6),
        "d_high_gy": round(d_high, 6),
        "mean_ramp_in_region": round(mean_ramp, 6),
        "region": {
            "definition": f"ROI {options.region_roi!r}"
            if options.region_roi
            else f"GTV + {options.margin_mm:g} mm",
            "voxels": int(region.sum()),
            "volume_ml": round(float(region.sum()) * voxel_ml, 4),
            "mean_gy": round(float(inside.mean()), 4),
            "min_gy": round(float(inside.min()), 4),
            "max_gy": round(float(inside.max()), 4),
        },
        "grid": {"min_gy": round(float(dose.min()), 4), "max_gy": round(float(dose.max()), 4)},
        "levels": [],
        "levels_layout": "disjoint: every region voxel in exactly one level ROI" if levels else None,
    }
    present = level_masks(dose, region, levels)
    for name, (value, mask) in zip(level_names([v for v, _ in present]), present, strict=True):
        volume = round(float(mask.sum()) * voxel_ml, 4)
        summary["levels"].append({"roi": name, "dose_gy": round(value, 4), "volume_ml": volume})
    return DoseMap(dose.astype(np.float32), region, d_low, d_high, levels, summary)
