"""`recur-eval pool`, the dose part: the dose classes of the sites' POs pooled.

Each site summary may carry, per PO, its dose classes (`site_summary.DOSE_CLASSES`). Pooling them gives
what `recur-eval dose-pattern` reports on the union of the sites' cases, from the same rules and
functions (`dose_report.proportion` for the Wilson 95 % intervals, `stats.mcnemar_po`):

- per method and PO-dose class, the POs its mask captures (the in-field rate is the boost question),
  pooled and per site;
- the number of POs in each class, for the classifications every dose site carries;
- exact McNemar best method vs the GTV method on the pooled in-field POs (as dose-pattern pairs them);
- Cochran-Mantel-Haenszel of in-field capture, best method vs each other, one 2x2 table per site, so
  a site with more in-field POs does not pass for a better method.

Sites without dose classes, and a site's cases without a usable dose, are left out of these numbers
and named (sites) or counted (cases). POs are clustered by patient; no test here accounts for it.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_recur.evaluation import dose_pattern, dose_report, report, stats, stratified
from nnunet_recur.evaluation.site_summary import DOSE_CLASSES

OWNED = ("dose.json", "dose_capture.csv")
CAPTURE_COLUMNS = ["site", "method", "po_class", "captured", "n", "proportion", "ci95_low", "ci95_high"]
INFIELD = "in-field"


def components(summary: dict) -> list[tuple[dict[str, str], dict[str, bool]]]:
    """Every PO with dose classes: (its classes, per method that scored the case: captured)."""
    found = []
    for case in summary["cases"]:
        dose = case.get("dose")
        if dose is None:
            continue
        for i in range(int(case["po_count"])):
            classes = {key: values[i] for key, values in dose.items()}
            found.append((classes, {s["method"]: bool(s["po_flags"][i]) for s in case["scores"]}))
    return found


def capture_by_class(found: list, names: list[str]) -> dict[str, dict[str, dict]]:
    """Per method, per PO-dose class and over all POs: captured / n with the Wilson 95 % CI."""
    table = {}
    for name in names:
        per_class = {}
        for label in (*dose_pattern.PO_CLASSES, "all"):
            flags = [
                captured[name]
                for classes, captured in found
                if name in captured and (label == "all" or classes["po_class"] == label)
            ]
            per_class[label] = dose_report.proportion(sum(flags), len(flags))
        table[name] = per_class
    return table


def class_counts(found: list, keys: list[str]) -> dict[str, dict[str, dict]]:
    """Per classification, the POs in each class, as a proportion of all POs with dose classes."""
    total = len(found)
    return {
        key: {
            label: dose_report.proportion(sum(classes[key] == label for classes, _ in found), total)
            for label in DOSE_CLASSES[key]
        }
        for key in keys
    }


def infield_cmh(per_site: dict[str, list], names: list[str], best: str) -> list[dict]:
    """best vs every other method: CMH of in-field PO capture, one 2x2 table per site."""
    out = []
    for other in [n for n in names if n != best]:
        tables = {}
        for site, found in per_site.items():
            pairs = [
                (captured[best], captured[other])
                for classes, captured in found
                if classes["po_class"] == INFIELD and best in captured and other in captured
            ]
            ca, cb, n = sum(a for a, _ in pairs), sum(b for _, b in pairs), len(pairs)
            tables[site] = (ca, n - ca, cb, n - cb)
        out.append(
            {
                "a": best,
                "b": other,
                "on": "in-field POs (PO-dose class)",
                **stratified.cochran_mantel_haenszel(list(tables.values())),
                "tables": tables,
            }
        )
    return out


def pool_dose(summaries: list[dict], names: list[str], best: str) -> dict | None:
    """The pooled dose numbers (dose.json), or None when no site shared dose classes."""
    with_dose = [s for s in summaries if s.get("dose_classes")]
    if not with_dose:
        return None
    per_site = {s["site"]: components(s) for s in with_dose}
    union = [c for found in per_site.values() for c in found]
    keys = [k for k in with_dose[0]["dose_classes"] if all(k in s["dose_classes"] for s in with_dose)]
    gtv = dose_report.default_gtv_method(names)
    mcnemar = None
    if gtv is not None and gtv != best:
        infield = [
            captured
            for classes, captured in union
            if classes["po_class"] == INFIELD and best in captured and gtv in captured
        ]
        mcnemar = {
            "a": best,
            "b": gtv,
            "on": "in-field POs (PO-dose class)",
            **stats.mcnemar_po([c[best] for c in infield], [c[gtv] for c in infield]),
        }
    return {
        "sites_with_dose": list(per_site),
        "sites_without_dose": [s["site"] for s in summaries if not s.get("dose_classes")],
        "cases_without_dose": {s["site"]: sum(c.get("dose") is None for c in s["cases"]) for s in with_dose},
        "n_components": len(union),
        "classifications": class_counts(union, keys),
        "capture_by_po_class": capture_by_class(union, names),
        "sites": {site: capture_by_class(found, names) for site, found in per_site.items()},
        "gtv_method": gtv,
        "mcnemar_best_vs_gtv_infield": mcnemar,
        "infield_cmh": infield_cmh(per_site, names, best),
    }


def capture_rows(result: dict) -> list[dict]:
    """dose_capture.csv: a row per site (then 'pooled'), method and PO-dose class."""
    blocks = [*result["sites"].items(), ("pooled", result["capture_by_po_class"])]
    return [
        {
            "site": site,
            "method": method,
            "po_class": label,
            "captured": p["count"],
            "n": p["n"],
            "proportion": p["proportion"],
            "ci95_low": p["ci95_wilson"][0],
            "ci95_high": p["ci95_wilson"][1],
        }
        for site, table in blocks
        for method, per_class in table.items()
        for label, p in per_class.items()
    ]


def markdown(result: dict) -> str:
    """The dose section of the pooled table1.md: in-field capture per method, per site and pooled."""
    names = list(result["capture_by_po_class"])
    lines = [
        "",
        "## In-field POs captured (dose classes)",
        "",
        "POs whose dose is >= 95 % of the highest prescription (PO-dose rule of `recur-eval dose-pattern`) "
        "that lie inside the method's mask: count / n (percent, Wilson 95 % CI in percent). Sites: "
        + ", ".join(result["sites_with_dose"])
        + ".",
    ]
    if result["sites_without_dose"]:
        lines.append(
            "Sites without dose classes, not in this table: " + ", ".join(result["sites_without_dose"]) + "."
        )
    lines += ["", "| Site | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    blocks = [*result["sites"].items(), ("pooled", result["capture_by_po_class"])]
    for site, table in blocks:
        cells = [dose_report.format_proportion(table[name][INFIELD]) for name in names]
        lines.append(f"| {site} | " + " | ".join(cells) + " |")
    lines.append("")
    for test in result["infield_cmh"]:
        p = "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"
        lines.append(f"- {test['a']} vs {test['b']}, in-field capture stratified by site: CMH p = {p}.")
    test = result["mcnemar_best_vs_gtv_infield"]
    if test is not None:
        p = "n/a (no in-field PO)" if test["p_value"] is None else f"{test['p_value']:.3g}"
        lines.append(
            f"- {test['a']} vs {test['b']} on the {test['n_po']} pooled in-field PO(s), exact McNemar "
            f"(not stratified): p = {p}."
        )
    return "\n".join(lines) + "\n"


def write(stage: Path, result: dict) -> None:
    from nnunet_recur.evaluation.volumes import write_json

    report.write_csv(stage / "dose_capture.csv", capture_rows(result), CAPTURE_COLUMNS)
    write_json(stage / "dose.json", report._json_safe(result))  # noqa: SLF001 - compare's JSON cleaner
