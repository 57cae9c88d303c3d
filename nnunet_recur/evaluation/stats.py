"""Significance tests of paper II.H, plus the ones a 7-patient test set needs beside them.

- paired t-test (`scipy.stats.ttest_rel`), as the paper, on Dice and on predicted volume;
- Wilcoxon signed-rank (`scipy.stats.wilcoxon`, two-sided), which does not assume normal differences;
- a seeded bootstrap 95 % CI of the median paired difference (cases resampled with replacement);
- Fisher's exact test (`scipy.stats.fisher_exact`, two-sided) on captured / missed POs.

With n = 7 paired cases these tests have little power: the smallest two-sided p an exact Wilcoxon
test can reach is 2 / 2^n (0.016 for n = 7), and the t-test leans on normality nobody can check on
seven points. `small_sample_note` says so next to every p-value.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
DEFAULT_SEED = 0
SMALL_N = 20


def _finite(value) -> float | None:
    """JSON-friendly float: NaN/inf become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def small_sample_note(n: int) -> str:
    if n >= SMALL_N:
        return f"n = {n} paired cases."
    smallest = 2.0 / 2**n if n > 0 else float("nan")
    return (
        f"n = {n} paired cases is tiny: treat every p-value as indicative only. The t-test assumes "
        f"normally distributed differences, which {n} points cannot show; the smallest two-sided p an "
        f"exact Wilcoxon signed-rank test can reach with n = {n} is {smallest:.3g}; "
        "and no correction for multiple comparisons is applied."
    )


def bootstrap_median_difference_ci(
    differences: np.ndarray,
    seed: int = DEFAULT_SEED,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the median of paired differences (cases resampled, seeded)."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, differences.size, size=(resamples, differences.size))
    medians = np.median(differences[picks], axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return _finite(low), _finite(high)


def paired_comparison(a, b, seed: int = DEFAULT_SEED) -> dict:
    """Paired tests of a against b (same cases, same order): t-test, Wilcoxon, bootstrap CI of a - b."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    differences = a - b
    n = int(differences.size)
    result: dict = {
        "n": n,
        "mean_a": _finite(a.mean()) if n else None,
        "mean_b": _finite(b.mean()) if n else None,
        "median_difference": _finite(np.median(differences)) if n else None,
        "t_statistic": None,
        "t_p_value": None,
        "wilcoxon_statistic": None,
        "wilcoxon_p_value": None,
        "note": small_sample_note(n),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n >= 2:
            t = stats.ttest_rel(a, b)
            result["t_statistic"], result["t_p_value"] = _finite(t.statistic), _finite(t.pvalue)
        if n >= 1 and np.any(differences != 0):
            w = stats.wilcoxon(a, b, alternative="two-sided")
            result["wilcoxon_statistic"], result["wilcoxon_p_value"] = _finite(w.statistic), _finite(w.pvalue)
        elif n >= 1:
            result["wilcoxon_p_value"] = 1.0  # every paired difference is zero: no evidence of a shift
    low, high = bootstrap_median_difference_ci(differences, seed=seed)
    result["median_difference_ci95"] = [low, high]
    return result


def fisher_po(captured_a: int, total_a: int, captured_b: int, total_b: int) -> dict:
    """Fisher's exact test on the 2x2 table [[captured_a, missed_a], [captured_b, missed_b]]."""
    from scipy import stats

    table = [[int(captured_a), int(total_a - captured_a)], [int(captured_b), int(total_b - captured_b)]]
    if min(min(row) for row in table) < 0:
        raise ValueError(f"captured exceeds total in {table}")
    if total_a == 0 or total_b == 0:
        return {"table": table, "odds_ratio": None, "p_value": None}
    res = stats.fisher_exact(table, alternative="two-sided")
    return {"table": table, "odds_ratio": _finite(res.statistic), "p_value": _finite(res.pvalue)}
