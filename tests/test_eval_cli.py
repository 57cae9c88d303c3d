"""`recur-eval` end to end on a tiny synthetic nnU-Net raw dataset (typer CliRunner, real NIfTI files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_eval_corpus import CASES, ORIGIN, SHAPE, SPACING, build_clean, write
from typer.testing import CliRunner

from nnunet_recur.evaluation import metrics
from nnunet_recur.evaluation.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Path]:
    return build_clean(tmp_path_factory.mktemp("eval_cli"))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("command", ["suvmax-sweep", "suvmax-predict", "gtv-predict", "compare"])
def test_every_command_help_shows_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "recur-eval " + command in result.output


def test_baselines_then_compare_end_to_end(dataset, tmp_path):
    raw = dataset["raw"]
    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps([{"train": ["RECUR_003"], "val": ["RECUR_001", "RECUR_002"]}] * 5))
    sweep_out = tmp_path / "sweep"
    result = runner.invoke(
        app,
        ["suvmax-sweep", "--dataset", str(raw), "--gt", str(raw / "labelsTs"),
         "--images", str(raw / "imagesTs"), "--masks", str(raw / "masksTs"),
         "--splits", str(splits), "--fold", "0", "--out", str(sweep_out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sweep = read_csv(sweep_out / "sweep.csv")
    assert list(sweep[0]) == ["percent", "mean_dice"] and len(sweep) == 100
    best = json.loads((sweep_out / "best.json").read_text())
    assert best["cases"] == ["RECUR_001", "RECUR_002"]
    assert best["mean_dice"] == max(float(r["mean_dice"]) for r in sweep)
    assert (sweep_out / "figure4.png").stat().st_size > 0

    suv_out, gtv_out = tmp_path / "suvmax", tmp_path / "gtv"
    leak = runner.invoke(app, ["suvmax-predict", "--best", str(sweep_out / "best.json"), "--dataset",
                               str(raw), "--out", str(suv_out)])  # fmt: skip
    assert leak.exit_code == 2 and "RECUR_001, RECUR_002" in leak.output  # swept cases are not predicted
    result = runner.invoke(app, ["suvmax-predict", "--best", str(sweep_out / "best.json"), "--dataset",
                                 str(raw), "--cases", "RECUR_003", "--out", str(suv_out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["suvmax-predict", "--percent", str(best["percent"]), "--dataset",
                                 str(raw), "--out", str(suv_out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in suv_out.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in CASES]
    rerun = runner.invoke(
        app, ["suvmax-predict", "--percent", "12", "--dataset", str(raw), "--out", str(suv_out)]
    )
    assert rerun.exit_code == 2 and "--overwrite" in rerun.output  # another percent into the same folder
    result = runner.invoke(app, ["gtv-predict", "--masks", str(raw / "masksTs"), "--out", str(gtv_out)])
    assert result.exit_code == 0, result.output
    written = sitk.ReadImage(str(gtv_out / "RECUR_002.nii.gz"))
    assert written.GetSpacing() == pytest.approx(SPACING) and written.GetOrigin() == pytest.approx(ORIGIN)

    out = tmp_path / "report"
    result = runner.invoke(
        app,
        ["compare", "--dataset", str(raw), "--pred", f"AI random={dataset['ai']}",
         "--pred", f"SUVmax={suv_out}", "--pred", f"GTV contour={gtv_out}",
         "--out", str(out), "--workers", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "per_case.csv")
    assert list(rows[0])[:9] == [
        "method", "case", "dice", "recall", "precision", "pred_cc", "gt_cc", "po_count", "po_captured",
    ]  # fmt: skip
    assert len(rows) == 9
    by_key = {(r["method"], r["case"]): r for r in rows}
    relapse = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / "RECUR_001.nii.gz")))
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "masksTs" / "RECUR_001_gtv.nii.gz")))
    gtv_row = by_key[("GTV contour", "RECUR_001")]
    assert float(gtv_row["dice"]) == pytest.approx(metrics.dice(gtv, relapse))
    voxel_cc = np.prod(SPACING) / 1000
    assert float(gtv_row["gt_cc"]) == pytest.approx(relapse.sum() * voxel_cc)
    assert float(gtv_row["pred_cc"]) == pytest.approx(gtv.sum() * voxel_cc)
    assert gtv_row["po_count"] == "2"
    assert gtv_row["po_captured"] == "1"  # the relapse beside the GTV, not the distant one
    assert float(gtv_row["hd95_mm"]) > 0

    table = (out / "table1.md").read_text()
    assert (
        "| Ground truth |" in table and "| AI random |" in table and "Dice coefficient (Median, IQR)" in table
    )
    table_rows = read_csv(out / "table1.csv")
    assert [r["method"] for r in table_rows] == ["Ground truth", "AI random", "SUVmax", "GTV contour"]
    assert table_rows[0]["po_total"] == "4"
    statistics = json.loads((out / "stats.json").read_text())
    assert statistics["best"] == "AI random" and len(statistics["comparisons"]) == 3
    assert "n = 3" in statistics["note"]
    pair = statistics["comparisons"][0]
    assert {"t_p_value", "wilcoxon_p_value", "median_difference_ci95"} <= set(pair["dice"])
    assert "p_value" in pair["po_fisher"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == list(CASES) and len(summary["points_of_origin"]) == 4
    curves = read_csv(out / "capture_curve.csv")
    assert {r["method"] for r in curves} == {"AI random", "SUVmax threshold (sweep)"}
    points = read_csv(out / "points_of_origin.csv")
    image = sitk.ReadImage(str(raw / "labelsTs" / "RECUR_001.nii.gz"))
    index = (int(points[0]["index_x"]), int(points[0]["index_y"]), int(points[0]["index_z"]))
    physical = image.TransformIndexToPhysicalPoint(index)
    assert [float(points[0][k]) for k in ("x_mm", "y_mm", "z_mm")] == pytest.approx(physical)
    assert (out / "capture_vs_volume.png").is_file()
    assert len(list((out / "figures").glob("RECUR_001_po*.png"))) == 2


def test_probability_threshold_is_applied_to_npz(dataset, tmp_path):
    raw = dataset["raw"]
    result = runner.invoke(
        app,
        ["compare", "--gt", str(raw / "labelsTs"), "--pred", f"AI={dataset['ai']}", "--threshold", "0.45",
         "--out", str(tmp_path), "--no-figures", "--no-hd95"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["case"]: r for r in read_csv(tmp_path / "per_case.csv")}
    assert all(r["source"].endswith(".npz") for r in rows.values())
    # probability 0.3 (case 1), 0.5 (case 2), 0.7 (case 3) at one voxel: only the last two pass 0.45
    voxel_cc = np.prod(SPACING) / 1000
    base = 5 * 5 * 5 - 1
    assert float(rows["RECUR_001"]["pred_cc"]) == pytest.approx(base * voxel_cc)
    assert float(rows["RECUR_002"]["pred_cc"]) == pytest.approx((base + 1) * voxel_cc)


def test_missing_case_is_an_error_or_a_footnote(dataset, tmp_path):
    raw = dataset["raw"]
    partial = tmp_path / "partial"
    partial.mkdir()
    for case in CASES[:2]:
        (partial / f"{case}.nii.gz").write_bytes((dataset["ai"] / f"{case}.nii.gz").read_bytes())
    args = ["compare", "--gt", str(raw / "labelsTs"), "--pred", f"AI={dataset['ai']}", "--pred",
            f"Partial={partial}", "--no-figures", "--no-hd95"]  # fmt: skip
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "RECUR_003" in result.output and "Partial" in result.output
    assert not (tmp_path / "a" / "per_case.csv").exists()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--allow-missing"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "b" / "table1.md").read_text()
    assert "Partial: RECUR_003" in table
    assert len(read_csv(tmp_path / "b" / "per_case.csv")) == 5


def test_geometry_mismatch_exits_non_zero_naming_both_files(dataset, tmp_path):
    raw = dataset["raw"]
    shifted = tmp_path / "shifted"
    for case in CASES:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["ai"] / f"{case}.nii.gz")))
        write(array, shifted / f"{case}.nii.gz", origin=(ORIGIN[0] + 1.2, ORIGIN[1], ORIGIN[2]))
    result = runner.invoke(
        app,
        [
            "compare",
            "--gt",
            str(raw / "labelsTs"),
            "--pred",
            f"Shifted={shifted}",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert str(raw / "labelsTs" / "RECUR_001.nii.gz") in result.output
    assert str(shifted / "RECUR_001.nii.gz") in result.output
    assert "origin" in result.output
    assert "Traceback" not in result.output


def test_failed_case_is_recorded_and_the_batch_goes_on(dataset, tmp_path):
    raw = dataset["raw"]
    masks = tmp_path / "masks"
    for path in (raw / "masksTs").iterdir():
        (masks / path.name).parent.mkdir(exist_ok=True)
        (masks / path.name).write_bytes(path.read_bytes())
    write(np.zeros(SHAPE, np.uint8), masks / "RECUR_002_gtv.nii.gz")  # SUVmax undefined
    common = ["--images", str(raw / "imagesTs"), "--masks", str(masks)]
    result = runner.invoke(
        app,
        ["suvmax-sweep", *common, "--gt", str(raw / "labelsTs"), "--all-cases", "--out", str(tmp_path / "s")],
    )
    assert result.exit_code == 1
    assert "RECUR_002" in result.output and "RECUR_002_gtv.nii.gz" in result.output
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["cases"] == ["RECUR_001", "RECUR_003"] and list(best["excluded"]) == ["RECUR_002"]
    assert len(read_csv(tmp_path / "s" / "sweep.csv")) == 100

    out = tmp_path / "p"
    result = runner.invoke(app, ["suvmax-predict", "--percent", "40", *common, "--out", str(out)])
    assert result.exit_code == 1
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["RECUR_001.nii.gz", "RECUR_003.nii.gz"]
    record = json.loads((out / "suvmax_predict.json").read_text())
    assert list(record["failed"]) == ["RECUR_002"]
    result = runner.invoke(app, ["gtv-predict", "--masks", str(masks), "--out", str(tmp_path / "g")])
    assert result.exit_code == 0
    rerun = runner.invoke(app, ["gtv-predict", "--masks", str(masks), "--out", str(tmp_path / "g")])
    assert rerun.exit_code == 0 and "0 written, 3 already there" in rerun.output
