"""Turn per-case results into the report: per_case.csv, Table 1 (Markdown + CSV), stats.json, summary.json.

Table 1 follows the paper's layout: a Ground truth row (relapse volume median (IQR) and number of
POs) and one row per method (Dice median (IQR), predicted volume median (IQR), POs captured).
Medians and quartiles use numpy's default (linear) percentile interpolation.
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
PO_CAPTURE_COLUMNS = ["method", "case", "po", "captured", "captured_published"]
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


def median_iqr(values) -> tuple[float, float, float]:
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    q1, median, q3 = np.percentile(values, [25, 50, 75])
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


def table1_rows(results: list[CaseResult], methods: list[Method]) -> list[dict]:
    """Machine-readable Table 1: a 'Ground truth' row, then one row per method."""
    gt = median_iqr([r.gt_cc for r in results])
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
        dice = median_iqr([m.dice for m in scored])
        volume = median_iqr([m.pred_cc for m in scored])
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


def table1_markdown(rows: list[dict], results: list[CaseResult]) -> str:
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
        marker = "" if row["method"] == "Ground truth" or row["po_total"] == rows[0]["po_total"] else " *"
        lines.append(f"| {row['method']} | {dice} | {volume} | {row['po_captured']}{marker} |")
    n = len(results)
    notes = [
        "",
        f"n = {n} cases. Dice and volume: median (first quartile, third quartile). A PO is captured when "
        "its voxel (centre of volume of the 3x3x3-eroded relapse component, snapped into the component) "
        "lies inside the prediction; components are 26-connected.",
    ]
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
        {"method": m.method, "case": r.case, "po": p["po"], "captured": c, "captured_published": cp}
        for r in results
        for m in r.methods
        for p, (c, cp) in zip(r.points, m.po_flags, strict=True)
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
            "bootstrap": "percentile 95 % CI of the median paired difference a - b, cases resampled",
            "fisher": "scipy.stats.fisher_exact, two-sided, [[captured_a, missed_a], [captured_b, missed_b]]",
        },
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
    out: Path, results: list[CaseResult], methods: list[Method], best: str, seed: int, settings: dict
) -> dict:
    """Write every table and JSON of `compare`; returns the summary that went into summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = per_case_rows(results)
    write_csv(out / "per_case.csv", rows, PER_CASE_COLUMNS)
    points, capture = po_rows(results)
    write_csv(out / "points_of_origin.csv", points, PO_COLUMNS)
    write_csv(out / "po_capture.csv", capture, PO_CAPTURE_COLUMNS)
    table = table1_rows(results, methods)
    write_csv(out / "table1.csv", table, TABLE1_COLUMNS)
    write_text(out / "table1.md", table1_markdown(table, results))
    statistics = _json_safe(comparison_stats(results, methods, best, seed))
    write_json(out / "stats.json", statistics)
    curves = aggregate_curves(results)
    if curves:
        write_csv(out / "capture_curve.csv", curve_rows(curves), CURVE_COLUMNS)
    summary = _json_safe(
        {
            "settings": settings,
            "cases": [r.case for r in results],
            "methods": [{"name": m.name, "folder": str(m.folder), "threshold": m.threshold} for m in methods],
            "best": best,
            "missing": {m.name: [r.case for r in results if m.name in r.missing] for m in methods},
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
