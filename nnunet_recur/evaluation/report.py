"""Turn per-case results into the report: per_case.csv, Table 1 (Markdown + CSV), stats.json, summary.json.

Table 1 follows the paper's layout: a Ground truth row (relapse volume median (IQR) and number of
POs) and one row per method (Dice median (IQR), predicted volume median (IQR), POs captured).
Medians and quartiles use one documented definition, `--quartiles` (numpy's percentile methods:
`linear`, the default, is Hyndman-Fan type 7; `weibull` is type 6, SPSS's; ...), recorded in
summary.json: at n = 7 they differ a lot, so a reader must know which one was used.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import stats
from nnunet_recur.evaluation.comparison import CaseResult, Method
from nnunet_recur.evaluation.volumes import write_json, write_text

PER_CASE_COLUMNS = [
    "method",
    "case",
    "dice",
    "recall",
    "precision",
    "pred_cc",
    "gt_cc",
    "po_count",
    "po_captured",
    "po_captured_published",
    "hd95_mm",
    "source",
]
PO_COLUMNS = [
    "case",
    "po",
    "voxels",
    "eroded_voxels",
    "index_x",
    "index_y",
    "index_z",
    "x_mm",
    "y_mm",
    "z_mm",
]
PO_CAPTURE_COLUMNS = ["method", "case", "po", "captured", "captured_published", "distance_mm"]
#: `--quartiles`: numpy.percentile methods (Hyndman & Fan 1996 types) offered for median (IQR).
QUARTILE_METHODS = {
    "linear": "Hyndman-Fan type 7 (numpy/R default): h = (n - 1) p + 1",
    "weibull": "Hyndman-Fan type 6 (SPSS, Minitab): h = (n + 1) p",
    "hazen": "Hyndman-Fan type 5: h = n p + 1/2",
    "median_unbiased": "Hyndman-Fan type 8: h = (n + 1/3) p + 1/3",
    "nearest": "the nearest order statistic (no interpolation)",
}
DEFAULT_QUARTILES = "linear"
TABLE1_COLUMNS = [
    "method",
    "n_cases",
    "dice_median",
    "dice_q1",
    "dice_q3",
    "volume_cc_median",
    "volume_cc_q1",
    "volume_cc_q3",
    "po_captured",
    "po_total",
    "po_captured_published",
]
CURVE_COLUMNS = ["method", "threshold", "mean_pred_cc", "po_captured", "po_total", "n_cases"]


def _cell(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else repr(float(value))
    return "" if value is None else str(value)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    write_text(path, buffer.getvalue())


def median_iqr(values, method: str = DEFAULT_QUARTILES) -> tuple[float, float, float]:
    """(median, Q1, Q3) with the `--quartiles` definition; NaN values are left out."""
    if method not in QUARTILE_METHODS:
        raise ValueError(f"unknown quartile method {method!r}; one of {', '.join(QUARTILE_METHODS)}")
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    q1, median, q3 = np.percentile(values, [25, 50, 75], method=method)
    return float(median), float(q1), float(q3)


def format_dice(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def format_cc(value: float) -> str:
    """Two significant digits like the paper (4.6, 18, 28), no exponent."""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if value == 0:
        return "0"
    return f"{value:.2g}" if abs(value) >= 1e-3 else f"{value:.1e}"


def _triple(formatter, triple) -> str:
    median, q1, q3 = triple
    return f"{formatter(median)} ({formatter(q1)}, {formatter(q3)})"


def table1_rows(
    results: list[CaseResult], methods: list[Method], quartiles: str = DEFAULT_QUARTILES
) -> list[dict]:
    """Machine-readable Table 1: a 'Ground truth' row, then one row per method."""
    gt = median_iqr([r.gt_cc for r in results], quartiles)
    po_total = sum(len(r.points) for r in results)
    rows = [
        {
            "method": "Ground truth",
            "n_cases": len(results),
            "dice_median": None,
            "dice_q1": None,
            "dice_q3": None,
            "volume_cc_median": gt[0],
            "volume_cc_q1": gt[1],
            "volume_cc_q3": gt[2],
            "po_captured": po_total,
            "po_total": po_total,
            "po_captured_published": po_total,
        }
    ]
    for method in methods:
        scored = [m for r in results for m in r.methods if m.method == method.name]
        dice = median_iqr([m.dice for m in scored], quartiles)
        volume = median_iqr([m.pred_cc for m in scored], quartiles)
        rows.append(
            {
                "method": method.name,
                "n_cases": len(scored),
                "dice_median": dice[0],
                "dice_q1": dice[1],
                "dice_q3": dice[2],
                "volume_cc_median": volume[0],
                "volume_cc_q1": volume[1],
                "volume_cc_q3": volume[2],
                "po_captured": sum(m.po_captured for m in scored),
                "po_total": sum(m.po_count for m in scored),
                "po_captured_published": sum(m.po_captured_published for m in scored),
            }
        )
    return rows


def table1_markdown(
    rows: list[dict],
    results: list[CaseResult],
    quartiles: str = DEFAULT_QUARTILES,
    statistics: dict | None = None,
) -> str:
    lines = [
        "| Method | Dice coefficient (Median, IQR) | Relapse volume size in cc (Median, IQR) "
        "| No. of relapse volumes PO |",
        "|---|---|---|---|",
    ]
    for row in rows:
        dice = (
            ""
            if row["dice_median"] is None
            else _triple(format_dice, (row["dice_median"], row["dice_q1"], row["dice_q3"]))
        )
        volume = _triple(format_cc, (row["volume_cc_median"], row["volume_cc_q1"], row["volume_cc_q3"]))
        # `*`: the method misses cases (--allow-missing), whatever their PO count
        marker = "" if row["method"] == "Ground truth" or row["n_cases"] == rows[0]["n_cases"] else " *"
        lines.append(f"| {row['method']} | {dice} | {volume} | {row['po_captured']}{marker} |")
    n = len(results)
    notes = [
        "",
        f"n = {n} cases. Dice and volume: median (first quartile, third quartile), quartiles by "
        f"numpy's '{quartiles}' method ({QUARTILE_METHODS[quartiles]}). A PO is captured when its voxel "
        "(centre of volume of the 3x3x3-eroded relapse component, snapped into that core) lies inside "
        "the prediction; components are 26-connected.",
    ]
    if statistics:
        cis = []
        for pair in statistics["comparisons"]:
            if not pair["best_vs_other"]:
                continue
            d = pair["dice"]
            low, high = d["median_difference_ci95_order_statistics"]
            ci = "n/a (too few cases)" if low is None else f"{low:.2f} to {high:.2f}"
            median = "n/a" if d["median_difference"] is None else f"{d['median_difference']:.2f}"
            cis.append(f"{pair['a']} - {pair['b']}: {median} (95 % CI {ci})")
        if cis:
            notes.append(
                "Median paired Dice difference with its distribution-free 95 % CI (order statistics, "
                "sign-test inversion; stats.json also holds Hodges-Lehmann and the bootstrap CI): "
                + "; ".join(cis)
                + "."
            )
    published = ", ".join(f"{r['method']} {r['po_captured_published']}" for r in rows[1:])
    if published:
        notes.append(
            f"POs captured by the published code's criterion (eroded component overlaps): {published}."
        )
    missing = [(r.case, name) for r in results for name in r.missing]
    if missing:
        notes.append(
            "\\* Missing predictions (--allow-missing), left out of that method's row: "
            + "; ".join(f"{name}: {case}" for case, name in missing)
            + "."
        )
    return "\n".join(lines + notes) + "\n"


def per_case_rows(results: list[CaseResult]) -> list[dict]:
    return [m.row() for r in results for m in r.methods]


def po_rows(results: list[CaseResult]) -> tuple[list[dict], list[dict]]:
    points = [p for r in results for p in r.points]
    capture = [
        {
            "method": m.method,
            "case": r.case,
            "po": p["po"],
            "captured": c,
            "captured_published": cp,
            "distance_mm": distance,
        }
        for r in results
        for m in r.methods
        for p, (c, cp, distance) in zip(r.points, m.po_flags, strict=True)
    ]
    return points, capture


def comparison_stats(results: list[CaseResult], methods: list[Method], best: str, seed: int) -> dict:
    """Every pair of methods: paired tests on Dice and volume, Fisher on POs, over their common cases."""
    by_method = {
        m.name: {r.case: x for r in results for x in r.methods if x.method == m.name} for m in methods
    }
    comparisons = []
    for a, b in itertools.combinations([m.name for m in methods], 2):
        if b == best:
            a, b = b, a
        common = [r.case for r in results if r.case in by_method[a] and r.case in by_method[b]]
        xa = [by_method[a][c] for c in common]
        xb = [by_method[b][c] for c in common]
        comparisons.append(
            {
                "a": a,
                "b": b,
                "best_vs_other": a == best,
                "cases": common,
                "dice": stats.paired_comparison([x.dice for x in xa], [x.dice for x in xb], seed=seed),
                "pred_cc": stats.paired_comparison(
                    [x.pred_cc for x in xa], [x.pred_cc for x in xb], seed=seed
                ),
                "po_fisher": stats.fisher_po(
                    sum(x.po_captured for x in xa),
                    sum(x.po_count for x in xa),
                    sum(x.po_captured for x in xb),
                    sum(x.po_count for x in xb),
                ),
                "po_mcnemar": stats.mcnemar_po(
                    [f[0] for x in xa for f in x.po_flags], [f[0] for x in xb for f in x.po_flags]
                ),
            }
        )
    return {
        "n_cases": len(results),
        "note": stats.small_sample_note(len(results)),
        "best": best,
        "seed": seed,
        "bootstrap_resamples": stats.BOOTSTRAP_RESAMPLES,
        "tests": {
            "t": "scipy.stats.ttest_rel, two-sided, on paired cases (a - b)",
            "wilcoxon": "scipy.stats.wilcoxon, two-sided, exact for small n",
            "bootstrap": "percentile 95 % CI of the median paired difference a - b, cases resampled "
            "(anti-conservative at small n)",
            "order_statistics": "distribution-free 95 % CI of the median difference: [d_(k), d_(n-k+1)], "
            "k from binomial(n, 1/2) (sign-test inversion); Table 1 quotes this one",
            "hodges_lehmann": "median of Walsh averages, exact CI from the Wilcoxon signed-rank null "
            "distribution (assumes symmetric differences)",
            "fisher": "scipy.stats.fisher_exact, two-sided, [[captured_a, missed_a], [captured_b, missed_b]]",
            "mcnemar": "exact McNemar on the same POs paired (discordant only_a vs only_b, binomial 1/2), "
            "two-sided; POs are clustered by patient, which neither PO test accounts for",
        },
        "table1_ci": "order_statistics",
        "comparisons": comparisons,
    }


def aggregate_curves(results: list[CaseResult]) -> dict[str, dict]:
    """Per curve: mean predicted volume (cc) and total captured POs at each threshold p = 1..100."""
    names = list(dict.fromkeys(name for r in results for name in r.curves))
    curves = {}
    for name in names:
        having = [r for r in results if name in r.curves]
        volumes = np.mean([r.curves[name].predicted_cc for r in having], axis=0)
        captured = np.sum([r.curves[name].captured for r in having], axis=0)
        curves[name] = {
            "thresholds": list(range(1, len(volumes) + 1)),
            "threshold_unit": "percent of SUVmax" if name.startswith("SUVmax") else "probability x 100",
            "mean_pred_cc": [float(v) for v in volumes],
            "po_captured": [int(c) for c in captured],
            "po_total": int(sum(len(r.points) for r in having)),
            "n_cases": len(having),
        }
    return curves


def curve_rows(curves: dict[str, dict]) -> list[dict]:
    return [
        {
            "method": name,
            "threshold": t / 100.0 if not name.startswith("SUVmax") else t,
            "mean_pred_cc": v,
            "po_captured": c,
            "po_total": curve["po_total"],
            "n_cases": curve["n_cases"],
        }
        for name, curve in curves.items()
        for t, v, c in zip(curve["thresholds"], curve["mean_pred_cc"], curve["po_captured"], strict=True)
    ]


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_compare_report(
    out: Path,
    results: list[CaseResult],
    methods: list[Method],
    best: str,
    seed: int,
    settings: dict,
    extra: dict | None = None,
) -> dict:
    """Write every table and JSON of `compare` into `out` (the staging folder); returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quartiles = settings.get("quartiles", DEFAULT_QUARTILES)
    rows = per_case_rows(results)
    write_csv(out / "per_case.csv", rows, PER_CASE_COLUMNS)
    points, capture = po_rows(results)
    write_csv(out / "points_of_origin.csv", points, PO_COLUMNS)
    write_csv(out / "po_capture.csv", capture, PO_CAPTURE_COLUMNS)
    table = table1_rows(results, methods, quartiles)
    write_csv(out / "table1.csv", table, TABLE1_COLUMNS)
    statistics = _json_safe(comparison_stats(results, methods, best, seed))
    write_text(out / "table1.md", table1_markdown(table, results, quartiles, statistics))
    write_json(out / "stats.json", statistics)
    curves = aggregate_curves(results)
    if curves:
        write_csv(out / "capture_curve.csv", curve_rows(curves), CURVE_COLUMNS)
    summary = _json_safe(
        {
            "settings": settings,
            "quartiles": {"method": quartiles, "definition": QUARTILE_METHODS[quartiles]},
            "cases": [r.case for r in results],
            "methods": [
                {
                    "name": m.name,
                    "folder": str(m.folder),
                    "threshold": m.threshold if m.threshold is not None else m.nifti_threshold,
                    "files": m.extension,
                }
                for m in methods
            ],
            "best": best,
            "missing": {m.name: [r.case for r in results if m.name in r.missing] for m in methods},
            "warnings": list(dict.fromkeys(note for r in results for note in r.notes)),
            **(extra or {}),
            "table1": table,
            "per_case": rows,
            "points_of_origin": points,
            "po_capture": capture,
            "stats": statistics,
            "capture_curves": curves,
        }
    )
    write_json(out / "summary.json", summary)
    return summary
