"""`recur-eval calibration`'s report: calibration.json / .csv / .md, reliability.png, po_reliability.csv.

Written into a staging folder (the command swaps it in whole), from the per-case results of
`calibration_inputs.CalibrationCase`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nnunet_recur.evaluation import calibration as cal
from nnunet_recur.evaluation.volumes import write_json, write_text

OWNED = ("calibration.json", "calibration.csv", "calibration.md", "reliability.png", "po_reliability.csv")


def _fmt(entry: dict) -> str:
    if entry["value"] is None:
        return "n/a"
    low, high = entry["ci95"]
    ci = f" ({low:.4f}-{high:.4f})" if low is not None else ""
    return f"{entry['value']:.4f}{ci}"


def write_calibration_report(
    stage: Path, results: list[dict], names: list[str], settings: dict, extra: dict, seed: int, bootstrap: int
) -> dict:
    """Pool every method's case sums, bootstrap over patients, and write the report files into `stage`."""
    methods = {}
    tables = {}
    po_rows = []
    for name in names:
        stats = [r["methods"][name]["stats"] for r in results]
        metrics = cal.pooled_metrics(stats, bootstrap=bootstrap, seed=seed)
        tables[name] = cal.reliability_table(stats)
        points = [
            {"method": name, "case": r["case"], **row}
            for r in results
            for row in r["methods"][name]["points"]
        ]
        po_rows.extend(points)
        captured = sum(p["captured"] for p in points)
        methods[name] = {
            **metrics,
            "reliability": tables[name],
            "points_of_origin": {
                "count": len(points),
                "mean_probability": sum(p["probability"] for p in points) / len(points) if points else None,
                "captured_at_0.5": captured,
            },
        }
    notes = [n for r in results for n in r["notes"]]
    summary = {"settings": settings, "methods": methods, "notes": notes, **extra}
    write_json(stage / "calibration.json", summary)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "metric", "value", "ci95_low", "ci95_high", "voxels", "cases"])
    for name, m in methods.items():
        for metric in cal.METRICS:
            writer.writerow([name, metric, m[metric]["value"], *m[metric]["ci95"], m["voxels"], m["cases"]])
    write_text(stage / "calibration.csv", buffer.getvalue())

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "case", "po", "probability", "captured_at_0.5"])
    for row in po_rows:
        writer.writerow(
            [row["method"], row["case"], row["po"], f"{row['probability']:.6f}", int(row["captured"])]
        )
    write_text(stage / "po_reliability.csv", buffer.getvalue())

    counted = f"{len(results)} case{'' if len(results) == 1 else 's'}"
    lines = [
        f"# Calibration ({settings['region']} region, {counted})",
        "",
        "Pooled over the region's voxels; 95 % CIs from a patient-level bootstrap "
        f"({bootstrap} resamples, seed {seed}). ECE/MCE: 15 equal-width bins; adaptive ECE: equal-mass bins.",
        "",
        "| method | voxels | ECE | adaptive ECE | MCE | Brier | NLL | POs: mean p (captured at 0.5) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in methods.items():
        po = m["points_of_origin"]
        po_text = (
            f"{po['mean_probability']:.3f} ({po['captured_at_0.5']}/{po['count']})" if po["count"] else "-"
        )
        lines.append(
            f"| {name} | {m['voxels']} | " + " | ".join(_fmt(m[k]) for k in cal.METRICS) + f" | {po_text} |"
        )
    lines += ["", "![reliability diagram](reliability.png)", ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    write_text(stage / "calibration.md", "\n".join(lines))
    cal.plot_reliability(tables, stage / "reliability.png", f"{settings['region']} region, {counted}")
    return summary
