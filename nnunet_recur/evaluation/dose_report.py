"""The report of `recur-eval dose-pattern` (CSV, Markdown, JSON, figure) and the in-field column of Table 1.

Counts are of relapse components (one PO each). Proportions carry Wilson 95 % intervals
(`stats.wilson_ci`); POs of one patient are clustered, which these intervals, like the PO tests of
`compare`, do not account for. The cross-table says, for each PO-dose class, how many POs each
method's mask holds: a boost inside a method's volume would have covered its in-field POs. The exact
McNemar test pairs the best CNN and the GTV on the same in-field POs.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import dose_pattern, report, stats
from nnunet_recur.evaluation.volumes import EvaluationError, write_json, write_text

DOSE_AXIS_GY = tuple(float(v) for v in np.arange(0.0, 100.0 + 1e-9, 0.25))  # cumulative DVH sampling
OWNED = ("dose_pattern.csv", "dose_pattern.md", "dose_pattern.json", "dose_pattern.png")
COLUMNS = [
    "case",
    "po",
    "volume_cc",
    "voxels",
    "po_x_mm",
    "po_y_mm",
    "po_z_mm",
    "po_dose_gy",
    "po_dose_pct_rx",
    "nidus_min_gy",
    "centroid_dose_gy",
    "covered_fraction",
    "d98_gy",
    "d95_gy",
    "d50_gy",
    "dmean_gy",
    "dmin_gy",
    "dmax_gy",
    "d_cold1cc_gy",
    "v95_pct",
    "rx_high_gy",
    "rx_low_gy",
    "rx_source",
    "po_class",
    "dawson_class",
    "mdacc_type",
    "target",
    "target_distance_mm",
    "gtv_distance_mm",
]
CLASSIFICATIONS = {
    "po_class": (
        "PO dose",
        dose_pattern.PO_CLASSES,
        "Due et al. 2010/2014, Zukauskaite et al. 2017: in-field if the PO dose >= 95 % of the highest "
        "prescription, elective if >= 95 % of the lowest, else out-of-field",
    ),
    "dawson_class": (
        "Volume (Dawson)",
        dose_pattern.DAWSON_CLASSES,
        "Dawson et al. 2000: in-field if >= 95 % of the relapse volume lies inside the 95 % isodose of the "
        "highest prescription, marginal for 20-95 %, out-of-field below 20 %",
    ),
    "mdacc_type": (
        "MD Anderson type",
        dose_pattern.MDACC_TYPES,
        "Mohamed et al. 2016: A/B centroid inside the high-dose 95 % isodose with >= 95 % / less of the "
        "volume inside it; C/D the same for the elective (lowest prescription) 95 % isodose; E centroid "
        "outside both",
    ),
}
NOT_COVERED_NOTE = (
    "'not covered': the PO (or centroid) lies outside the dose grid (NaN in the dose), or voxels of the "
    "relapse outside the grid could change the class; never counted as 0 Gy."
)


def proportion(k: int, n: int) -> dict:
    low, high = stats.wilson_ci(k, n)
    return {"count": k, "n": n, "proportion": k / n if n else None, "ci95_wilson": [low, high]}


def format_proportion(p: dict) -> str:
    if not p["n"]:
        return f"{p['count']} / 0"
    low, high = p["ci95_wilson"]
    return f"{p['count']} / {p['n']} ({100 * p['proportion']:.0f} %, {100 * low:.0f}-{100 * high:.0f})"


def default_gtv_method(names: list[str]) -> str | None:
    """The --pred whose name holds 'gtv' (letter case ignored), when exactly one does."""
    found = [n for n in names if "gtv" in n.casefold()]
    return found[0] if len(found) == 1 else None


def summarise(cases: list, method_names: list[str], best: str | None, gtv: str | None) -> dict:
    """Counts per class (with Wilson CIs), the per-method capture cross-table and McNemar best vs GTV."""
    components = [c for case in cases for c in case.components]
    total = len(components)
    classes = {}
    for key, (title, labels, rule) in CLASSIFICATIONS.items():
        counts = {label: sum(c.row[key] == label for c in components) for label in labels}
        classes[key] = {
            "title": title,
            "rule": rule,
            "counts": {label: proportion(k, total) for label, k in counts.items()},
        }
    capture = {}
    for name in method_names:
        per_class = {}
        for label in dose_pattern.PO_CLASSES:
            flags = [c.captured[name] for c in components if c.row["po_class"] == label]
            per_class[label] = proportion(sum(flags), len(flags))
        per_class["all"] = proportion(sum(c.captured[name] for c in components), total)
        capture[name] = per_class
    mcnemar = None
    if best is not None and gtv is not None and best != gtv:
        infield = [c for c in components if c.row["po_class"] == "in-field"]
        mcnemar = {
            "a": best,
            "b": gtv,
            "on": "in-field POs (PO-dose class)",
            **stats.mcnemar_po([c.captured[best] for c in infield], [c.captured[gtv] for c in infield]),
        }
    cross = {
        po: {
            t: sum(c.row["po_class"] == po and c.row["mdacc_type"] == t for c in components)
            for t in dose_pattern.MDACC_TYPES
        }
        for po in dose_pattern.PO_CLASSES
    }
    return {
        "n_cases": len(cases),
        "n_components": total,
        "classifications": classes,
        "capture_by_po_class": capture,
        "best": best,
        "gtv_method": gtv,
        "mcnemar_best_vs_gtv_infield": mcnemar,
        "po_class_vs_mdacc": cross,
        "note": stats.small_sample_note(len(cases)),
    }


def markdown(summary: dict, failed: dict[str, str]) -> str:
    lines = [
        "# Relapse pattern against dose",
        "",
        f"{summary['n_components']} relapse component(s) (one PO each) in {summary['n_cases']} case(s). "
        "Proportions: count / n (percent, Wilson 95 % CI in percent).",
    ]
    for block in summary["classifications"].values():
        lines += [
            "",
            f"## {block['title']}",
            "",
            f"Rule: {block['rule']}.",
            "",
            "| Class | Components |",
            "|---|---|",
        ]
        lines += [f"| {label} | {format_proportion(p)} |" for label, p in block["counts"].items()]
    capture = summary["capture_by_po_class"]
    if capture:
        heads = list(dose_pattern.PO_CLASSES) + ["all"]
        lines += [
            "",
            "## POs captured per method, by PO-dose class",
            "",
            "A PO is captured when its voxel lies inside the method's mask (the PO capture of `compare`). "
            "The in-field column is the question a boost trial asks: would a boost inside this volume have "
            "covered the relapses that started in the high-dose region?",
            "",
            "| Method | " + " | ".join(heads) + " |",
            "|---|" + "---|" * len(heads),
        ]
        for name, per_class in capture.items():
            lines.append(f"| {name} | " + " | ".join(format_proportion(per_class[h]) for h in heads) + " |")
    test = summary["mcnemar_best_vs_gtv_infield"]
    if test is not None:
        p = "n/a (no in-field PO)" if test["p_value"] is None else f"{test['p_value']:.3g}"
        lines += [
            "",
            f"Exact McNemar, {test['a']} vs {test['b']} on the {test['n_po']} in-field PO(s): captured by "
            f"both {test['both']}, by {test['a']} only {test['only_a']}, by {test['b']} only "
            f"{test['only_b']}, by neither {test['neither']}; two-sided p = {p}.",
        ]
    elif capture:
        lines += [
            "",
            "McNemar best vs GTV: not computed (name the GTV method with --gtv, and a different --best).",
        ]
    lines += [
        "",
        "## PO-dose class against MD Anderson type",
        "",
        "| PO class | " + " | ".join(dose_pattern.MDACC_TYPES) + " |",
    ]
    lines.append("|---|" + "---|" * len(dose_pattern.MDACC_TYPES))
    for po, row in summary["po_class_vs_mdacc"].items():
        lines.append(f"| {po} | " + " | ".join(str(row[t]) for t in dose_pattern.MDACC_TYPES) + " |")
    lines += [
        "",
        NOT_COVERED_NOTE,
        summary["note"] + " POs of one patient are clustered; no test here accounts for it.",
    ]
    if failed:
        lines += [
            "",
            "Cases left out (error): " + "; ".join(f"{c}: {why}" for c, why in failed.items()) + ".",
        ]
    return "\n".join(lines) + "\n"


def plot(cases: list, axis: np.ndarray, path: Path) -> None:
    """Cumulative DVHs of the relapse components, and the PO dose against the signed distance to the GTV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnunet_recur.atomic_io import atomic_path

    colours = {
        "in-field": "tab:red",
        "elective": "tab:orange",
        "out-of-field": "tab:blue",
        dose_pattern.NOT_COVERED: "grey",
    }
    components = [c for case in cases for c in case.components]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in components:
        left.plot(axis, c.dvh, color=colours[c.row["po_class"]], alpha=0.6, lw=1)
    left.set(
        xlabel="dose (Gy)", ylabel="relapse volume (%)", title="Cumulative DVH of each relapse", ylim=(0, 102)
    )
    shown = [
        c for c in components if c.row["gtv_distance_mm"] is not None and not math.isnan(c.row["po_dose_gy"])
    ]
    for label, colour in colours.items():
        picked = [c for c in shown if c.row["po_class"] == label]
        if picked:
            right.scatter(
                [c.row["gtv_distance_mm"] for c in picked],
                [c.row["po_dose_gy"] for c in picked],
                color=colour,
                label=label,
                s=18,
            )
    if components:
        for level in sorted(
            {c.row["rx_high_gy"] for c in components} | {c.row["rx_low_gy"] for c in components}
        ):
            right.axhline(dose_pattern.ISODOSE_FRACTION * level, color="k", ls=":", lw=0.8)
    if not shown:
        right.text(
            0.5, 0.5, "no GTV mask (give --targets with <case>_gtv)", ha="center", transform=right.transAxes
        )
    else:
        right.legend(fontsize=8)
    right.set(
        xlabel="signed distance of the PO to the GTV surface (mm, < 0 inside)",
        ylabel="PO dose (Gy)",
        title="PO dose against distance from the GTV",
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_report(
    stage: Path, cases: list, method_names: list[str], best, gtv, failed, settings, extra
) -> dict:
    """dose_pattern.csv / .md / .json / .png into the staging folder; returns the summary."""
    rows = [c.row for case in cases for c in case.components]
    report.write_csv(
        stage / "dose_pattern.csv",
        [_with_methods(c, method_names) for case in cases for c in case.components],
        COLUMNS + [f"captured:{n}" for n in method_names],
    )
    summary = summarise(cases, method_names, best, gtv)
    write_text(stage / "dose_pattern.md", markdown(summary, failed))
    plot(cases, np.asarray(settings["dose_axis_gy"]), stage / "dose_pattern.png")
    payload = report._json_safe(
        {
            "settings": {k: v for k, v in settings.items() if k != "dose_axis_gy"},
            **summary,
            "failed": failed,
            **extra,
            "components": rows,
        }
    )  # noqa: SLF001
    write_json(stage / "dose_pattern.json", payload)
    return payload


def _with_methods(component, names: list[str]) -> dict:
    return {**component.row, **{f"captured:{n}": component.captured[n] for n in names}}


# ---------------------------------------------------------------------------------------------------
# `recur-eval compare --dose`: the in-field column of Table 1
# ---------------------------------------------------------------------------------------------------

INFIELD_COLUMNS = ["po_infield_captured", "po_infield_total"]
INFIELD_HEAD = "In-field POs captured"


def _label_grid(path: Path):
    """The grid of a label file from its header only (the label itself was scored by compare)."""
    import SimpleITK as sitk

    from nnunet_recur.evaluation.volumes import Grid

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Grid(
        size=tuple(int(s) for s in reader.GetSize()),
        spacing=tuple(float(s) for s in reader.GetSpacing()),
        origin=tuple(float(o) for o in reader.GetOrigin()),
        direction=tuple(float(d) for d in reader.GetDirection()),
    )


def infield_capture(results, labels: Path, doses: Path, rx_option: str | None) -> dict:
    """Per compare case result: which POs are in-field (PO-dose rule); per method, how many it captures;
    per case the PO-dose class of every PO (`po_classes`, which `recur-eval site-summary` shares).

    A case without a usable dose (file missing or refused, no prescription) is left out of the column
    and named in the note; its POs still count everywhere else in Table 1.
    """
    from nnunet_recur.evaluation.volumes import Volume, label_path

    if not Path(doses).is_dir():
        raise EvaluationError(f"{doses}: dose folder not found")
    rx = dose_pattern.parse_rx(rx_option)
    captured: dict[str, int] = {}
    totals: dict[str, int] = {}
    infield_total, left_out = 0, {}
    po_classes: dict[str, list[dict]] = {}  # per case, per PO: its PO-dose class (for site summaries)
    for result in results:
        try:
            grid = _label_grid(label_path(labels, result.case))
            dose = dose_pattern.read_dose(
                dose_pattern.dose_path(doses, result.case),
                Volume(np.empty(0), grid, label_path(labels, result.case)),
            )
            prescription = dose_pattern.read_prescription(dose_pattern.plan_path(doses, result.case), rx)
        except EvaluationError as exc:
            left_out[result.case] = str(exc).strip().splitlines()[0]
            continue
        classes = [
            dose_pattern.po_dose_class(
                dose_pattern.interpolate(dose.array, (p["index_z"], p["index_y"], p["index_x"])), prescription
            )
            for p in result.points
        ]
        po_classes[result.case] = [
            {"po": p["po"], "po_class": c} for p, c in zip(result.points, classes, strict=True)
        ]
        infield = [c == "in-field" for c in classes]
        infield_total += sum(infield)
        for method in result.methods:
            hits = sum(flag[0] and inside for flag, inside in zip(method.po_flags, infield, strict=True))
            captured[method.method] = captured.get(method.method, 0) + hits
            totals[method.method] = totals.get(method.method, 0) + sum(infield)
    return {
        "captured": captured,
        "totals": totals,
        "infield_total": infield_total,
        "left_out": left_out,
        "po_classes": po_classes,
    }


def add_infield_column(stage: Path, infield: dict) -> None:
    """Add the in-field column to the staged table1.csv, table1.md and summary.json of `compare`."""
    import json

    stage = Path(stage)

    def cells(method: str) -> tuple[int, int]:
        if method == "Ground truth":
            return infield["infield_total"], infield["infield_total"]
        return infield["captured"].get(method, 0), infield["totals"].get(method, 0)

    with open(stage / "table1.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0].keys()) if rows else []
    for row in rows:
        row["po_infield_captured"], row["po_infield_total"] = cells(row["method"])
    report.write_csv(stage / "table1.csv", rows, columns + INFIELD_COLUMNS)

    lines = (stage / "table1.md").read_text(encoding="utf-8").splitlines()
    out, in_table = [], True
    for i, line in enumerate(lines):
        if in_table and line.startswith("|"):
            if i == 0:
                line += f" {INFIELD_HEAD} |"
            elif i == 1:
                line += "---|"
            else:
                method = line.split("|")[1].strip()
                k, n = cells(method)
                line += f" {k} |" if method == "Ground truth" else f" {k} / {n} |"
        else:
            in_table = False
        out.append(line)
    note = (
        "In-field POs captured: POs whose dose is >= 95 % of the highest prescription (Due / Zukauskaite "
        "PO-dose rule; recur-eval dose-pattern gives the full pattern) that lie inside the method's mask."
    )
    if infield["left_out"]:
        note += (
            " Cases without a usable dose, left out of this column: "
            + "; ".join(f"{c}: {why}" for c, why in infield["left_out"].items())
            + "."
        )
    out += ["", note]
    write_text(stage / "table1.md", "\n".join(out) + "\n")

    summary_path = stage / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    for row in summary.get("table1", []):
        row["po_infield_captured"], row["po_infield_total"] = cells(row["method"])
    summary["dose"] = infield
    write_json(summary_path, summary)
