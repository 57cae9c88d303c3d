"""Federated evaluation: site summaries (what leaves a site) and pooling them (recur-eval site-summary/pool).

Real NIfTI files and the real `compare` and `dose-pattern`; the key check: pooling two sites' summaries
gives the same Table 1, paired tests and dose-class capture as `compare` / `dose-pattern` on the union
of their cases. Site A shares the PO-dose class of compare's --dose column, site B the three classes of
a dose-pattern folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from nnunet_recur.evaluation import dose_pattern, dose_report, site_summary, stratified
from nnunet_recur.evaluation.cli import app

runner = CliRunner()
SHAPE = (10, 16, 16)
SITES = {"A": ["ALPHA_001", "ALPHA_002", "ALPHA_003", "ALPHA_004"], "B": ["BETA_001", "BETA_002", "BETA_003"]}
DOSE_BASE_GY = [40.0, 45.0, 50.0, 20.0, 40.0, 45.0, 50.0]  # per case: elective, in-field, out-of-field POs
RX = "68,60,50"


def _dose(n: int) -> np.ndarray:
    """A dose rising 3 Gy per voxel along x; case 5's second PO lies outside the dose grid (NaN)."""
    dose = np.broadcast_to(DOSE_BASE_GY[n] + 3.0 * np.arange(SHAPE[2]), SHAPE).astype(np.float32)
    if n == 5:
        dose = dose.copy()
        dose[:, :, 11:] = np.nan
    return dose


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _case(root: Path, folders: list[Path], case: str, n: int) -> None:
    relapse = np.zeros(SHAPE, np.uint8)
    relapse[2:7, 4:10, 4 : 9 + n % 3] = 1
    if n % 2:
        relapse[7:9, 12:15, 12:15] = 1  # a second PO
    ai = np.zeros(SHAPE, np.uint8)
    ai[2 : 6 + n % 3, 5:11, 4:10] = 1
    other = np.zeros(SHAPE, np.uint8)
    other[3:5, 4 : 6 + n % 4, 4:8] = 1
    for folder in folders:
        _write(relapse, folder / "labels" / f"{case}.nii.gz")
        _write(ai, folder / "ai" / f"{case}.nii.gz")
        _write(other, folder / "other" / f"{case}.nii.gz")
        _write(_dose(n), folder / "dose" / f"{case}.nii.gz")


def _compare(folder: Path, out: Path, dose: bool = False) -> None:
    args = ["compare", "--gt", str(folder / "labels"), "--pred", f"AI={folder / 'ai'}"]
    args += ["--dose", str(folder / "dose"), "--rx", RX] if dose else []
    args += [
        "--pred",
        f"GTV={folder / 'other'}",
        "--no-hd95",
        "--no-curves",
        "--no-figures",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def _dose_pattern(folder: Path, out: Path) -> None:
    args = ["dose-pattern", "--gt", str(folder / "labels"), "--dose", str(folder / "dose"), "--rx", RX]
    args += ["--pred", f"AI={folder / 'ai'}", "--pred", f"GTV={folder / 'other'}", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def _site_summary(compare_out: Path, site: str, out: Path, *extra: str) -> Path:
    args = ["site-summary", str(compare_out), "--site", site, "--salt", "s3cret", "--out", str(out)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("federated_eval")
    n = 0
    for site, cases in SITES.items():
        for case in cases:
            _case(root, [root / site, root / "union"], case, n)
            n += 1
    _compare(root / "A", root / "compare_A", dose=True)  # site A: compare's in-field column
    _compare(root / "B", root / "compare_B")  # site B: a dose-pattern folder beside compare
    _dose_pattern(root / "B", root / "dose_B")
    summaries = [
        _site_summary(root / "compare_A", "A", root / "share_A"),
        _site_summary(root / "compare_B", "B", root / "share_B", "--dose-pattern", str(root / "dose_B")),
    ]
    _compare(root / "union", root / "compare_union", dose=True)
    _dose_pattern(root / "union", root / "dose_union")
    result = runner.invoke(app, ["pool", *map(str, summaries), "--out", str(root / "pooled")])
    assert result.exit_code == 0, result.output
    return {"root": root, "summaries": summaries}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _close(a, b) -> bool:
    if a in ("", None) or b in ("", None):
        return a in ("", None) and b in ("", None)
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)


def test_pooled_table1_equals_compare_on_the_union(pooled):
    root = pooled["root"]
    union, pool = _rows(root / "compare_union" / "table1.csv"), _rows(root / "pooled" / "table1.csv")
    assert [r["method"] for r in pool] == ["Ground truth", "AI", "GTV"]
    assert len(union) == len(pool)
    for u, p in zip(union, pool, strict=True):
        for column in [c for c in u if c not in dose_report.INFIELD_COLUMNS]:  # dose: tested below
            assert column == "method" and u[column] == p[column] or _close(u[column], p[column]), (
                column,
                u,
                p,
            )
    assert int(pool[0]["n_cases"]) == 7


def test_pooled_paired_tests_equal_compare_on_the_union(pooled):
    root = pooled["root"]
    union = json.loads((root / "compare_union" / "stats.json").read_text())
    pool = json.loads((root / "pooled" / "stats.json").read_text())
    (u,), (p,) = union["comparisons"], pool["comparisons"]
    assert (u["a"], u["b"]) == (p["a"], p["b"]) == ("AI", "GTV")
    order_free = [
        "n",
        "mean_a",
        "mean_b",
        "median_difference",
        "t_statistic",
        "t_p_value",
        "wilcoxon_p_value",
        "median_difference_ci95_order_statistics",
        "hodges_lehmann",
        "hodges_lehmann_ci95",
    ]
    for metric in ("dice", "pred_cc"):
        for key in order_free:
            assert np.allclose(np.asarray(u[metric][key], float), np.asarray(p[metric][key], float)), (
                metric,
                key,
            )
    assert u["po_fisher"] == p["po_fisher"]
    assert u["po_mcnemar"] == p["po_mcnemar"]


def test_per_site_rows_and_stratified_tests(pooled):
    root = pooled["root"]
    rows = _rows(root / "pooled" / "sites_table1.csv")
    assert [(r["site"], r["method"], r["n_cases"]) for r in rows if r["method"] == "AI"] == [
        ("A", "AI", "4"),
        ("B", "AI", "3"),
        ("pooled", "AI", "7"),
    ]
    strat = json.loads((root / "pooled" / "stratified.json").read_text())
    (test,) = strat["comparisons"]
    assert set(test["po_cmh"]["tables"]) == {"A", "B"}
    meta = test["dice_difference_meta"]
    assert meta["k"] == 2 and meta["ci95"][0] <= meta["estimate"] <= meta["ci95"][1]
    assert (root / "pooled" / "forest.png").stat().st_size > 1000


def test_pooled_dose_classes_equal_dose_pattern_and_compare_on_the_union(pooled):
    root = pooled["root"]
    union = json.loads((root / "dose_union" / "dose_pattern.json").read_text())
    dose = json.loads((root / "pooled" / "dose.json").read_text())
    assert dose["sites_with_dose"] == ["A", "B"] and dose["sites_without_dose"] == []
    assert dose["n_components"] == union["n_components"] == 10
    assert dose["capture_by_po_class"] == union["capture_by_po_class"]  # counts, n, Wilson CIs
    assert dose["classifications"] == {"po_class": union["classifications"]["po_class"]["counts"]}
    counts = {k: v["count"] for k, v in dose["classifications"]["po_class"].items()}
    assert all(counts[label] > 0 for label in dose_pattern.PO_CLASSES), counts  # every class occurs
    assert dose["mcnemar_best_vs_gtv_infield"] == union["mcnemar_best_vs_gtv_infield"]
    assert dose["mcnemar_best_vs_gtv_infield"]["n_po"] > 0
    with open(root / "compare_union" / "table1.csv", newline="") as handle:
        table = {r["method"]: r for r in csv.DictReader(handle)}
    for method in ("AI", "GTV"):  # compare --dose's in-field column on the union
        infield = dose["capture_by_po_class"][method]["in-field"]
        assert (infield["count"], infield["n"]) == (
            int(table[method]["po_infield_captured"]),
            int(table[method]["po_infield_total"]),
        )
    per_site = {site: dose["sites"][site]["AI"]["in-field"]["n"] for site in ("A", "B")}
    assert sum(per_site.values()) == dose["capture_by_po_class"]["AI"]["in-field"]["n"]
    (cmh,) = dose["infield_cmh"]
    assert (cmh["a"], cmh["b"]) == ("AI", "GTV") and set(cmh["tables"]) == {"A", "B"}
    assert cmh["tables"]["A"][0] + cmh["tables"]["A"][1] == per_site["A"]
    rows = _rows(root / "pooled" / "dose_capture.csv")
    assert {(r["site"], r["method"], r["po_class"]) for r in rows} >= {("pooled", "AI", "in-field")}
    assert "## In-field POs captured" in (root / "pooled" / "table1.md").read_text()


def test_sites_carry_the_dose_classes_they_have(pooled):
    a = json.loads((pooled["summaries"][0] / "site_summary.json").read_text())
    b = json.loads((pooled["summaries"][1] / "site_summary.json").read_text())
    assert a["dose_classes"] == ["po_class"]  # compare --dose
    assert b["dose_classes"] == ["po_class", "dawson_class", "mdacc_type"]  # dose-pattern folder
    for case in a["cases"] + b["cases"]:
        assert all(len(values) == case["po_count"] for values in case["dose"].values())
    text = json.dumps(b)
    assert "_gy" not in text and "rx" not in text  # classes leave the site, doses in Gy do not


def test_pool_says_which_sites_have_no_dose(pooled, tmp_path):
    root = pooled["root"]
    no_dose = _site_summary(root / "compare_B", "B", tmp_path / "share_B")
    assert json.loads((no_dose / "site_summary.json").read_text())["dose_classes"] == []
    result = runner.invoke(
        app, ["pool", str(pooled["summaries"][0]), str(no_dose), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    dose = json.loads((tmp_path / "p" / "dose.json").read_text())
    assert dose["sites_with_dose"] == ["A"] and dose["sites_without_dose"] == ["B"]
    compare_a = json.loads((root / "compare_A" / "summary.json").read_text())["dose"]
    infield = dose["capture_by_po_class"]["AI"]["in-field"]
    assert (infield["count"], infield["n"]) == (compare_a["captured"]["AI"], compare_a["totals"]["AI"])
    assert "Sites without dose classes, not in this table: B." in (tmp_path / "p" / "table1.md").read_text()


def test_a_dose_pattern_folder_of_other_cases_is_one_error_line(pooled, tmp_path):
    root = pooled["root"]
    args = ["site-summary", str(root / "compare_A"), "--site", "A", "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--dose-pattern", str(tmp_path)])
    assert result.exit_code == 2 and "no dose_pattern.json" in result.output
    report = json.loads((root / "dose_union" / "dose_pattern.json").read_text())
    report["components"] = [
        dict(c, case="ALPHA_001") if c["case"] == "ALPHA_002" else c for c in report["components"]
    ]
    (tmp_path / "dp").mkdir()
    (tmp_path / "dp" / "dose_pattern.json").write_text(json.dumps(report))
    result = runner.invoke(app, [*args, "--dose-pattern", str(tmp_path / "dp")])
    assert result.exit_code == 2 and "ALPHA_001" in result.output and "Traceback" not in result.output


def test_site_summary_writes_nothing_outside_the_manifest(pooled):
    out = pooled["summaries"][0]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "site_summary.json"]
    summary = json.loads((out / "site_summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    fields = site_summary.field_paths(summary)
    assert fields <= set(manifest["files"]["site_summary.json"])
    assert "cases[].scores[].dice" in fields and "cases[].dose.po_class" in fields
    fields_b = site_summary.field_paths(
        json.loads((pooled["summaries"][1] / "site_summary.json").read_text())
    )
    assert {"cases[].dose.dawson_class", "cases[].dose.mdacc_type"} <= fields_b
    assert fields_b <= set(manifest["files"]["site_summary.json"])
    text = (out / "site_summary.json").read_text()
    for case in SITES["A"]:  # no case id, no folder, no file name leaves the site
        assert case not in text
    assert str(pooled["root"]) not in text and ".nii" not in text and "s3cret" not in text
    assert [c["case"] for c in summary["cases"]] == sorted(c["case"] for c in summary["cases"])
    assert summary["cases"][0]["case"] in {site_summary.case_hash(c, "s3cret") for c in SITES["A"]}


def test_a_field_outside_the_manifest_is_refused(pooled, tmp_path):
    summary = json.loads((pooled["summaries"][0] / "site_summary.json").read_text())
    summary["cases"][0]["patient_name"] = "DOE^JANE"
    with pytest.raises(RuntimeError, match="cases\\[\\].patient_name"):
        site_summary.write_site_summary(tmp_path / "x", summary)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "site_summary.json").write_text(json.dumps(summary))
    result = runner.invoke(app, ["pool", str(tmp_path / "y"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "outside the manifest" in result.output and "Traceback" not in result.output


def test_pool_refuses_an_unknown_dose_class(pooled, tmp_path):
    summary = json.loads((pooled["summaries"][0] / "site_summary.json").read_text())
    summary["cases"][0]["dose"]["po_class"][0] = "boost"
    (tmp_path / "site_summary.json").write_text(json.dumps(summary))
    result = runner.invoke(app, ["pool", str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "unknown po_class ['boost']" in result.output


def test_pool_refuses_sites_with_different_methods(pooled, tmp_path):
    summary = json.loads((pooled["summaries"][1] / "site_summary.json").read_text())
    summary["methods"] = ["AI"]
    (tmp_path / "site_summary.json").write_text(json.dumps(summary))
    result = runner.invoke(
        app, ["pool", str(pooled["summaries"][0]), str(tmp_path), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2 and "methods" in result.output


def test_site_summary_of_a_missing_report_is_one_error_line(tmp_path):
    result = runner.invoke(app, ["site-summary", str(tmp_path), "--site", "A", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no summary.json" in result.output


def test_cmh_matches_a_hand_computed_example():
    # two strata; hand computation: sum a = 9, E = 5 + 2.5 = 7.5 ... (formula of the module docstring)
    tables = [(6, 4, 4, 6), (3, 2, 2, 3)]
    result = stratified.cochran_mantel_haenszel(tables)
    expected_a = 10 * 10 / 20 + 5 * 5 / 10
    variance = 10 * 10 * 10 * 10 / (20 * 20 * 19) + 5 * 5 * 5 * 5 / (10 * 10 * 9)
    statistic = (abs(9 - expected_a) - 0.5) ** 2 / variance
    assert math.isclose(result["statistic"], statistic)
    assert math.isclose(result["common_odds_ratio"], (6 * 6 / 20 + 3 * 3 / 10) / (4 * 4 / 20 + 2 * 2 / 10))
    assert stratified.cochran_mantel_haenszel([(1, 0, 0, 0)])["p_value"] is None


def test_dersimonian_laird_matches_a_worked_example():
    # equal variances, heterogeneous effects: tau^2 = (Q - (k - 1)) / (sum w - sum w^2 / sum w)
    effects, variances = [0.1, 0.3, 0.5], [0.01, 0.01, 0.01]
    result = stratified.dersimonian_laird(effects, variances)
    q = sum((e - 0.3) ** 2 / 0.01 for e in effects)
    tau2 = (q - 2) / (300 - 30000 / 300)
    assert math.isclose(result["q"], q) and math.isclose(result["tau2"], tau2)
    assert math.isclose(result["estimate"], 0.3)
    assert math.isclose(result["se"], math.sqrt((0.01 + tau2) / 3))
    homogeneous = stratified.dersimonian_laird([0.2, 0.2], [0.01, 0.04])
    assert homogeneous["tau2"] == 0.0 and math.isclose(homogeneous["estimate"], 0.2)
    with pytest.raises(ValueError):
        stratified.dersimonian_laird([0.1], [0.0])
