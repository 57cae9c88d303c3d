"""Tests stratified by site, for pooling several centres' results without pooling their patients.

- Cochran-Mantel-Haenszel (CMH) for PO capture, method a vs method b: one 2x2 table per site
  [[captured_a, missed_a], [captured_b, missed_b]]; the test asks whether a captures more POs than b
  *within* sites, so a site that is simply easier does not pass for a better method. With the
  continuity correction; a site table with fewer than 2 POs in total carries no information and is
  skipped (its variance is 0). POs are clustered by patient, which CMH ignores, as Fisher does.
- DerSimonian-Laird random-effects meta-analysis of a per-site effect (here the mean paired Dice
  difference a - b) with its within-site variance var(d) / n. A site with fewer than 2 paired cases,
  or with zero variance, has no usable variance and is left out (listed). With one usable site the
  pooled estimate is that site's; tau^2 = 0.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def _normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def cochran_mantel_haenszel(tables: list[tuple[int, int, int, int]]) -> dict:
    """CMH chi-square (1 df, continuity-corrected) and the Mantel-Haenszel common odds ratio.

    `tables`: per stratum (a, b, c, d) = (captured_a, missed_a, captured_b, missed_b). Edge cases: no
    informative stratum -> statistic, p and odds ratio None; a common odds ratio with a zero
    denominator -> None (infinite)."""
    from scipy import stats

    numerator = expected = variance = 0.0
    or_num = or_den = 0.0
    used = 0
    for a, b, c, d in tables:
        if min(a, b, c, d) < 0:
            raise ValueError(f"negative count in the 2x2 table {(a, b, c, d)}")
        n = a + b + c + d
        if n < 2:
            continue
        row1, row2, col1, col2 = a + b, c + d, a + c, b + d
        v = row1 * row2 * col1 * col2 / (n * n * (n - 1))
        numerator += a
        expected += row1 * col1 / n
        variance += v
        or_num += a * d / n
        or_den += b * c / n
        used += 1 if v > 0 else 0
    result = {
        "strata": len(tables),
        "informative_strata": used,
        "statistic": None,
        "p_value": None,
        "common_odds_ratio": (or_num / or_den) if or_den > 0 else None,
        "test": "Cochran-Mantel-Haenszel chi-square, 1 df, continuity-corrected",
    }
    if variance > 0:
        statistic = max(abs(numerator - expected) - 0.5, 0.0) ** 2 / variance
        result["statistic"] = statistic
        result["p_value"] = float(stats.chi2.sf(statistic, 1))
    if or_num == 0 and or_den == 0:
        result["common_odds_ratio"] = None
    return result


def site_effect(differences) -> dict:
    """Mean paired difference of one site, its within-site variance var(d, ddof=1) / n and 95 % CI."""
    d = np.asarray([x for x in differences if x is not None and math.isfinite(x)], dtype=np.float64)
    n = int(d.size)
    mean = float(d.mean()) if n else None
    variance = float(d.var(ddof=1) / n) if n >= 2 else None
    ci = None
    if variance is not None:
        half = Z95 * math.sqrt(variance)
        ci = [mean - half, mean + half]
    return {"n": n, "effect": mean, "variance": variance, "ci95": ci}


def dersimonian_laird(effects: list[float], variances: list[float]) -> dict:
    """Random-effects pooled estimate (DerSimonian & Laird 1986) of per-site effects.

    Returns estimate, standard error, 95 % CI, z-test p, tau^2 (between-site variance), Cochran's Q
    and I^2 (percent). Every variance must be > 0."""
    y = np.asarray(effects, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    if y.size == 0:
        return {
            "k": 0,
            "estimate": None,
            "se": None,
            "ci95": None,
            "p_value": None,
            "tau2": None,
            "q": None,
            "i2_percent": None,
        }
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("every within-site variance must be finite and > 0")
    w = 1.0 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    k = int(y.size)
    denominator = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / denominator) if k > 1 and denominator > 0 else 0.0
    w_star = 1.0 / (v + tau2)
    estimate = float(np.sum(w_star * y) / np.sum(w_star))
    se = float(math.sqrt(1.0 / np.sum(w_star)))
    i2 = max(0.0, (q - (k - 1)) / q) * 100.0 if q > 0 else 0.0
    return {
        "k": k,
        "estimate": estimate,
        "se": se,
        "ci95": [estimate - Z95 * se, estimate + Z95 * se],
        "p_value": _normal_two_sided_p(estimate / se) if se > 0 else None,
        "tau2": tau2,
        "q": q,
        "i2_percent": i2,
        "method": "DerSimonian-Laird random effects, inverse-variance weights 1 / (v_i + tau^2)",
    }
