"""`recur-eval pool`: several sites' summaries -> one pooled Table 1, per-site rows, stratified tests.

The per-case numbers of every site are turned back into the records `compare` reports from, and the
same report functions (`report.table1_rows`, `report.comparison_stats`) compute the pooled Table 1 and
paired tests, so pooling the summaries equals `compare` on the union of the sites' cases wherever the
statistic is defined on the union (medians, IQR, PO counts, t, Wilcoxon, order-statistic and
Hodges-Lehmann CIs, Fisher, McNemar). The bootstrap CI resamples cases in list order under a fixed seed,
so it differs with the case order (site, then hash, instead of case id): same distribution, other draw.

Beside the naive pooled tests, which ignore that patients come from different centres, it reports tests
stratified by site: CMH for PO capture and a DerSimonian-Laird random-effects meta-analysis of the
paired Dice difference, with a forest plot. The dose classes the sites shared are pooled by
`pooling_dose` (in-field capture per method, CMH of in-field capture stratified by site).
"""

from __future__ import annotations

import math
from pathlib import Path

from nnunet_recur.evaluation import pooling_dose, report, stratified
from nnunet_recur.evaluation.comparison import CaseResult, Method, MethodCaseResult
from nnunet_recur.evaluation.volumes import EvaluationError

POOL_OWNED = (
    "table1.csv",
    "table1.md",
    "sites_table1.csv",
    "stats.json",
    "stratified.json",
    "forest.png",
    *pooling_dose.OWNED,
)
SITE_TABLE1_COLUMNS = ["site", *report.TABLE1_COLUMNS]


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def case_results(summary: dict) -> list[CaseResult]:
    """A site summary's cases as `compare`'s per-case records (case id = site:hash)."""
    results = []
    for case in summary["cases"]:
        name = f"{summary['site']}:{case['case']}"
        methods = [
            MethodCaseResult(
                method=s["method"],
                case=name,
                dice=_nan(s["dice"]),
                recall=_nan(s["recall"]),
                precision=_nan(s["precision"]),
                pred_cc=_nan(s["pred_cc"]),
                gt_cc=_nan(case["gt_cc"]),
                po_count=int(case["po_count"]),
                po_captured=int(s["po_captured"]),
                po_captured_published=int(s["po_captured_published"]),
                hd95_mm=_nan(s["hd95_mm"]),
                source="",
                po_flags=[
                    (bool(c), bool(p), None)
                    for c, p in zip(s["po_flags"], s["po_flags_published"], strict=True)
                ],
            )
            for s in case["scores"]
        ]
        missing = [m for m in summary["methods"] if m not in {s["method"] for s in case["scores"]}]
        results.append(
            CaseResult(
                case=name,
                gt_cc=_nan(case["gt_cc"]),
                points=[{} for _ in range(int(case["po_count"]))],
                methods=methods,
                missing=missing,
                curves={},
            )
        )
    return results


def check_compatible(summaries: list[tuple[Path, dict]]) -> tuple[list[str], str, str]:
    """Same methods (same order), same best method and quartile rule at every site; distinct site names."""
    first_path, first = summaries[0]
    seen: dict[str, Path] = {}
    for path, summary in summaries:
        if summary["site"] in seen:
            raise EvaluationError(
                f"{path}: site name {summary['site']!r} also used by {seen[summary['site']]}"
            )
        seen[summary["site"]] = path
        for key in ("methods", "best", "quartiles"):
            if summary[key] != first[key]:
                raise EvaluationError(
                    f"{path}: {key} {summary[key]!r} differs from {first_path}'s {first[key]!r}; "
                    "every site must run compare with the same methods"
                )
    return first["methods"], first["best"], first["quartiles"]


def _per_site_table(
    site: str, results: list[CaseResult], methods: list[Method], quartiles: str
) -> list[dict]:
    return [{"site": site, **row} for row in report.table1_rows(results, methods, quartiles)]


def stratified_tests(per_site: dict[str, list[CaseResult]], names: list[str], best: str) -> list[dict]:
    """best vs every other method: CMH on PO capture and a random-effects meta-analysis of the Dice gap."""
    out = []
    for other in [n for n in names if n != best]:
        tables, effects, left_out = [], [], []
        for site, results in per_site.items():
            scored = {(r.case, m.method): m for r in results for m in r.methods}
            common = [r.case for r in results if (r.case, best) in scored and (r.case, other) in scored]
            a = [scored[(c, best)] for c in common]
            b = [scored[(c, other)] for c in common]
            ca, ta = sum(x.po_captured for x in a), sum(x.po_count for x in a)
            cb, tb = sum(x.po_captured for x in b), sum(x.po_count for x in b)
            tables.append((ca, ta - ca, cb, tb - cb))
            effect = stratified.site_effect([x.dice - y.dice for x, y in zip(a, b, strict=True)])
            effect["site"] = site
            effects.append(effect)
            if effect["variance"] is None or effect["variance"] <= 0:
                left_out.append(site)
        usable = [e for e in effects if e["site"] not in left_out]
        meta = stratified.dersimonian_laird([e["effect"] for e in usable], [e["variance"] for e in usable])
        out.append(
            {
                "a": best,
                "b": other,
                "po_cmh": {
                    **stratified.cochran_mantel_haenszel(tables),
                    "tables": dict(zip(per_site, tables, strict=True)),
                },
                "dice_difference_meta": {
                    **meta,
                    "sites": effects,
                    "left_out": left_out,
                    "left_out_reason": "fewer than 2 paired cases or zero variance",
                },
            }
        )
    return out


def plot_forest(tests: list[dict], path: Path) -> Path:
    """One panel per comparison: per-site mean Dice difference with its 95 % CI, the pooled diamond."""
    from nnunet_recur.evaluation.figures import _pyplot, _save

    plt = _pyplot()
    panels = max(len(tests), 1)
    rows = max((len(t["dice_difference_meta"]["sites"]) for t in tests), default=1) + 1
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 0.45 * rows * panels + 1.2), squeeze=False)
    for ax, test in zip(axes[:, 0], tests, strict=False):
        meta = test["dice_difference_meta"]
        labels = []
        for i, site in enumerate(meta["sites"]):
            y = len(meta["sites"]) - i
            labels.append((y, f"{site['site']} (n={site['n']})"))
            if site["effect"] is None:
                continue
            ax.plot([site["effect"]], [y], "s", color="#1f77b4")
            if site["ci95"]:
                ax.plot(site["ci95"], [y, y], "-", color="#1f77b4")
        if meta["estimate"] is not None:
            low, high = meta["ci95"]
            ax.fill([low, meta["estimate"], high, meta["estimate"]], [0, 0.25, 0, -0.25], color="#d62728")
        labels.append((0, "pooled (random effects)"))
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_yticks([y for y, _ in labels], [text for _, text in labels])
        ax.set_xlabel(f"mean paired Dice difference, {test['a']} - {test['b']}")
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def pool(summaries: list[tuple[Path, dict]], stage: Path, seed: int = 0) -> dict:
    """Write the pooled report into `stage`; returns the stratified results (also in stratified.json)."""
    from nnunet_recur.evaluation.volumes import write_json, write_text

    names, best, quartiles = check_compatible(summaries)
    methods = [Method(name, Path(".")) for name in names]
    per_site = {summary["site"]: case_results(summary) for _, summary in summaries}
    union = [r for results in per_site.values() for r in results]
    table = report.table1_rows(union, methods, quartiles)
    report.write_csv(stage / "table1.csv", table, report.TABLE1_COLUMNS)
    statistics = report._json_safe(report.comparison_stats(union, methods, best, seed))
    write_json(stage / "stats.json", statistics)
    site_rows = [
        row
        for site, results in per_site.items()
        for row in _per_site_table(site, results, methods, quartiles)
    ]
    site_rows += [{"site": "pooled", **row} for row in table]
    report.write_csv(stage / "sites_table1.csv", site_rows, SITE_TABLE1_COLUMNS)
    tests = report._json_safe(stratified_tests(per_site, names, best))
    write_json(
        stage / "stratified.json", {"sites": list(per_site), "n_cases": len(union), "comparisons": tests}
    )
    markdown = report.table1_markdown(table, union, quartiles, statistics)
    markdown += "\n## Per site\n\n"
    markdown += "| Site | Method | n | Dice (Median, IQR) | Volume cc (Median, IQR) | PO captured |\n"
    markdown += "|---|---|---|---|---|---|\n"
    for row in site_rows:
        dice = (
            ""
            if row["dice_median"] is None
            else (
                f"{report.format_dice(row['dice_median'])} ({report.format_dice(row['dice_q1'])}, "
                f"{report.format_dice(row['dice_q3'])})"
            )
        )
        volume = (
            f"{report.format_cc(row['volume_cc_median'])} ({report.format_cc(row['volume_cc_q1'])}, "
            f"{report.format_cc(row['volume_cc_q3'])})"
        )
        markdown += (
            f"| {row['site']} | {row['method']} | {row['n_cases']} | {dice} | {volume} | "
            f"{row['po_captured']}/{row['po_total']} |\n"
        )
    markdown += "\n## Stratified by site\n\n"
    for test in tests:
        cmh, meta = test["po_cmh"], test["dice_difference_meta"]
        p_cmh = "n/a" if cmh["p_value"] is None else f"{cmh['p_value']:.3g}"
        if meta["estimate"] is None:
            meta_text = "n/a (no site with 2 or more paired cases and non-zero variance)"
        else:
            meta_text = (
                f"{meta['estimate']:.3f} (95 % CI {meta['ci95'][0]:.3f} to {meta['ci95'][1]:.3f}, "
                f"p = {meta['p_value']:.3g}, tau^2 = {meta['tau2']:.3g}, I^2 = {meta['i2_percent']:.0f} %)"
            )
        markdown += (
            f"- {test['a']} vs {test['b']}: PO capture CMH p = {p_cmh}; mean paired Dice difference, "
            f"random effects: {meta_text}.\n"
        )
    dose = pooling_dose.pool_dose([summary for _, summary in summaries], names, best)
    if dose is not None:
        pooling_dose.write(stage, dose)
        markdown += pooling_dose.markdown(dose)
    write_text(stage / "table1.md", markdown)
    if tests:
        plot_forest(tests, stage / "forest.png")
    return {"sites": list(per_site), "n_cases": len(union), "comparisons": tests, "dose": dose}
