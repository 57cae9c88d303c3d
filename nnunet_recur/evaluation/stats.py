"""Significance tests of paper II.H, plus the ones a 7-patient test set needs beside them.

- paired t-test (`scipy.stats.ttest_rel`), as the paper, on Dice and on predicted volume;
- Wilcoxon signed-rank (`scipy.stats.wilcoxon`, two-sided), which does not assume normal differences;
- a seeded bootstrap 95 % CI of the median paired difference (cases resampled with replacement),
  which is anti-conservative at n = 7 (too narrow), so two distribution-free intervals stand beside it:
  the order-statistic CI of the median difference (sign-test inversion, binomial(n, 1/2), no
  assumption on the differences) and the Hodges-Lehmann estimate with its exact CI (Walsh averages,
  Wilcoxon signed-rank null distribution, assumes symmetric differences). Table 1 quotes the first;
- Fisher's exact test (`scipy.stats.fisher_exact`, two-sided) on captured / missed POs (the paper's),
  and McNemar's exact test on the same POs paired by PO (both methods score the same relapses).

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


def _binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ binomial(n, 1/2), exactly (integers, then one division)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2**n


def _signed_rank_cdf(n: int) -> list[float]:
    """P(T+ <= t), t = 0..n(n+1)/2, of the exact Wilcoxon signed-rank null distribution (no ties)."""
    top = n * (n + 1) // 2
    counts = [1] + [0] * top
    for rank in range(1, n + 1):
        for t in range(top, rank - 1, -1):
            counts[t] += counts[t - rank]
    cumulative, total, out = 0, 2**n, []
    for c in counts:
        cumulative += c
        out.append(cumulative / total)
    return out


def order_statistic_median_ci(differences, level: float = 0.95) -> dict:
    """Distribution-free CI of the median difference: [d_(k), d_(n-k+1)] of the sorted differences.

    k is the largest integer with P(B <= k - 1) <= (1 - level) / 2, B ~ binomial(n, 1/2) (sign-test
    inversion); `coverage` is the exact coverage 1 - 2 P(B <= k - 1) >= level. No assumption on the
    distribution of the differences. None when n is too small for any such interval (n < 6 at 95 %).
    """
    d = np.sort(np.asarray(differences, dtype=np.float64))
    n = int(d.size)
    alpha_half = (1.0 - level) / 2.0
    k = 0
    while k < n and _binomial_cdf_half(k, n) <= alpha_half:
        k += 1
    if k == 0 or k > n - k + 1:
        return {"ci": [None, None], "coverage": None, "k": None, "method": "order statistics (sign test)"}
    return {
        "ci": [_finite(d[k - 1]), _finite(d[n - k])],
        "coverage": 1.0 - 2.0 * _binomial_cdf_half(k - 1, n),
        "k": k,
        "method": "order statistics (sign test)",
    }


def hodges_lehmann(differences, level: float = 0.95) -> dict:
    """Hodges-Lehmann estimate (median of the Walsh averages) with its exact Wilcoxon CI.

    Walsh averages (d_i + d_j) / 2, i <= j, sorted: W_(1..M), M = n(n+1)/2. CI = [W_(k), W_(M-k+1)]
    with k - 1 the largest t whose signed-rank null probability P(T+ <= t) <= (1 - level) / 2; exact
    coverage when the differences are symmetric about their centre and untied (approximate with ties).
    None when n is too small (n < 6 at 95 %).
    """
    d = np.asarray(differences, dtype=np.float64)
    n = int(d.size)
    result: dict = {"estimate": None, "ci": [None, None], "coverage": None, "k": None}
    if n == 0:
        return result
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    result["estimate"] = _finite(np.median(walsh))
    cdf = _signed_rank_cdf(n)
    alpha_half = (1.0 - level) / 2.0
    below = [t for t, p in enumerate(cdf) if p <= alpha_half]
    if not below:
        return result
    k = below[-1] + 1
    m = walsh.size
    result.update(ci=[_finite(walsh[k - 1]), _finite(walsh[m - k])], coverage=1.0 - 2.0 * cdf[k - 1], k=k)
    return result


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
    result["median_difference_ci95"] = [low, high]  # percentile bootstrap (kept: anti-conservative)
    order = order_statistic_median_ci(differences)
    result["median_difference_ci95_order_statistics"] = order["ci"]
    result["median_difference_ci95_order_statistics_coverage"] = order["coverage"]
    hl = hodges_lehmann(differences)
    result["hodges_lehmann"] = hl["estimate"]
    result["hodges_lehmann_ci95"] = hl["ci"]
    result["hodges_lehmann_ci95_coverage"] = hl["coverage"]
    return result


def mcnemar_po(flags_a, flags_b) -> dict:
    """McNemar's exact test on POs scored by two methods (paired: the same relapse, two answers).

    Only discordant POs count: b = captured by a only, c = captured by b only; two-sided exact
    p = min(1, 2 P(X <= min(b, c))), X ~ binomial(b + c, 1/2); p = 1 when no PO is discordant. POs of
    one patient are not independent (clustered by patient); this test, like Fisher's, ignores that.
    """
    flags_a = [bool(x) for x in flags_a]
    flags_b = [bool(x) for x in flags_b]
    if len(flags_a) != len(flags_b):
        raise ValueError(f"paired PO flags differ in length: {len(flags_a)} vs {len(flags_b)}")
    only_a = sum(x and not y for x, y in zip(flags_a, flags_b, strict=True))
    only_b = sum(y and not x for x, y in zip(flags_a, flags_b, strict=True))
    both = sum(x and y for x, y in zip(flags_a, flags_b, strict=True))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else min(1.0, 2.0 * _binomial_cdf_half(min(only_a, only_b), discordant))
    return {
        "n_po": len(flags_a),
        "both": both,
        "only_a": only_a,
        "only_b": only_b,
        "neither": len(flags_a) - both - discordant,
        "p_value": p if flags_a else None,
    }


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


#: Two-sided 95 % standard-normal quantile, z_{0.975} (to 16 digits; no scipy needed).
Z_95 = 1.959963984540054


def wilson_ci(successes: int, total: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion k / n (Wilson 1927; Newcombe 1998, method 3, no continuity
    correction): centre (k + z^2/2) / (n + z^2), half-width z sqrt(k (n - k) / n + z^2/4) / (n + z^2).

    Chosen over the Wald interval because it stays inside [0, 1] and keeps its coverage at 0 / n and n / n,
    which a handful of POs per class makes common. (None, None) for n = 0: no proportion exists.
    """
    k, n = int(successes), int(total)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= total, got {k} / {n}")
    if n == 0:
        return None, None
    z2 = z * z
    centre = (k + z2 / 2.0) / (n + z2)
    half = z * math.sqrt(k * (n - k) / n + z2 / 4.0) / (n + z2)
    return max(0.0, centre - half), min(1.0, centre + half)
