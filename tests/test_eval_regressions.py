"""Regression tests of issue 12: inputs `recur-eval` must refuse, and reports that must not mislead.

Each test failed on the code before the fix (see the issue's numbered items in the test names).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_eval_corpus import CASES, SHAPE, build_clean, truncate, write
from typer.testing import CliRunner

from nnunet_recur.evaluation import baselines, figures, report, stats
from nnunet_recur.evaluation.cli import app
from nnunet_recur.evaluation.volumes import EvaluationError, read_volume, volume_from_array

REPO = Path(__file__).resolve().parents[1]

runner = CliRunner()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Path]:
    return build_clean(tmp_path_factory.mktemp("regressions"))


def compare(clean, out: Path, *extra: str, gt: Path | None = None, pred: str | None = None):
    args = ["compare", "--gt", str(gt or clean["labels"]), "--pred", pred or f"AI={clean['ai']}",
            "--no-figures", "--no-hd95", "--out", str(out), *extra]  # fmt: skip
    return runner.invoke(app, args)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# 1. truncated and non-finite files ----------------------------------------------------------------------


def test_1_truncated_reference_is_refused_not_scored_as_empty(clean, tmp_path):
    labels = shutil.copytree(clean["labels"], tmp_path / "labels")
    truncate(labels / "RECUR_001.nii.gz", 0.5)
    line = one_error_line(compare(clean, tmp_path / "out", gt=labels))
    assert "RECUR_001.nii.gz" in line and "truncated" in line
    assert not (tmp_path / "out" / "table1.md").exists()


def test_1_nan_in_a_float_mask_is_refused(clean, tmp_path):
    pred = shutil.copytree(clean["ai"], tmp_path / "pred")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "RECUR_002.nii.gz"))).astype(np.float32)
    mask[0, :3, :3] = np.nan  # ITK's reader turns these into 0 silently
    write(mask, pred / "RECUR_002.nii.gz")
    line = one_error_line(compare(clean, tmp_path / "out", pred=f"AI={pred}"))
    assert "RECUR_002.nii.gz" in line and "9 non-finite" in line


def test_1_nan_probabilities_are_refused(clean, tmp_path):
    pred = shutil.copytree(clean["ai"], tmp_path / "pred")
    probabilities = np.full((1, *SHAPE), np.nan, np.float32)
    np.savez_compressed(pred / "RECUR_003.npz", probabilities=probabilities)
    line = one_error_line(compare(clean, tmp_path / "out", "--threshold", "0.5", pred=f"AI={pred}"))
    assert "RECUR_003.npz" in line and "non-finite" in line


def test_1_reader_guard_refuses_truncated_zero_byte_and_inf(tmp_path):
    good = write(np.ones((6, 6, 6), np.float32), tmp_path / "good.nii.gz")
    assert read_volume(good).array.sum() == 216
    zero = tmp_path / "zero.nii.gz"
    zero.write_bytes(b"")
    with pytest.raises(EvaluationError, match="zero.nii.gz"):
        read_volume(zero)
    array = np.ones((6, 6, 6), np.float64)
    array[1, 2, 3] = np.inf
    with pytest.raises(EvaluationError, match="1 non-finite"):
        read_volume(write(array, tmp_path / "inf.nii.gz"))


# 2. SUVmax <= 0 or non-finite -------------------------------------------------------------------------


def test_2_suvmax_zero_is_a_case_error_not_a_whole_fov_mask():
    grid_volume = volume_from_array(np.zeros((4, 4, 4), np.float32), _grid())
    gtv = volume_from_array(np.ones((4, 4, 4), np.uint8), _grid())
    brain = volume_from_array(np.zeros((4, 4, 4), np.uint8), _grid())
    with pytest.raises(baselines.SuvmaxUndefinedError, match="SUVmax inside the GTV"):
        baselines.suvmax_prediction(grid_volume, gtv, brain, 38)
    pet = volume_from_array(np.full((4, 4, 4), 2.0, np.float32), _grid())
    with pytest.raises(EvaluationError, match="not in"):
        baselines.suvmax_prediction(pet, gtv, brain, 0)


def _grid():
    from nnunet_recur.evaluation.volumes import Grid

    return Grid(
        size=(4, 4, 4), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel())
    )


def test_2_percent_zero_is_refused(clean, tmp_path):
    result = runner.invoke(app, ["suvmax-predict", "--percent", "0", "--images", str(clean["images"]),
                                 "--masks", str(clean["masks"]), "--out", str(tmp_path / "s")])  # fmt: skip
    assert "percent 0" in one_error_line(result)
    assert not list((tmp_path / "s").glob("*.nii.gz")) if (tmp_path / "s").exists() else True


def test_2_compare_with_a_zero_suvmax_case_scores_it_and_leaves_it_off_the_curve(clean, tmp_path):
    images = shutil.copytree(clean["images"], tmp_path / "images")
    pet = sitk.GetArrayFromImage(sitk.ReadImage(str(images / "RECUR_002_0001.nii.gz")))
    write(np.zeros_like(pet), images / "RECUR_002_0001.nii.gz")
    out = tmp_path / "out"
    result = compare(clean, out, "--images", str(images), "--masks", str(clean["masks"]))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert any("RECUR_002" in w and "SUVmax" in w for w in summary["warnings"])
    assert summary["capture_curves"]["SUVmax threshold (sweep)"]["n_cases"] == 2


# 3. sweep leakage ---------------------------------------------------------------------------------------


def test_3_sweep_needs_an_explicit_case_choice_and_labels_figure4_with_it(clean, tmp_path):
    common = ["suvmax-sweep", "--images", str(clean["images"]), "--masks", str(clean["masks"]),
              "--gt", str(clean["labels"])]  # fmt: skip
    assert "--all-cases" in one_error_line(runner.invoke(app, [*common, "--out", str(tmp_path / "a")]))
    result = runner.invoke(app, [*common, "--cases", "RECUR_001,RECUR_002", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    best = json.loads((tmp_path / "b" / "best.json").read_text())
    assert best["case_set"] == "cases given by --cases" and best["cases"] == ["RECUR_001", "RECUR_002"]
    result = runner.invoke(app, [*common, "--all-cases", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "training and validation" in json.loads((tmp_path / "c" / "best.json").read_text())["case_set"]
    # --best refuses to predict the cases the percent was chosen on
    result = runner.invoke(app, ["suvmax-predict", "--best", str(tmp_path / "b" / "best.json"),
                                 "--images", str(clean["images"]), "--masks", str(clean["masks"]),
                                 "--out", str(tmp_path / "p")])  # fmt: skip
    assert "RECUR_001, RECUR_002" in one_error_line(result)


# 4. outputs that can mislead ----------------------------------------------------------------------------


def test_4_rerun_removes_stale_files_of_the_earlier_report(clean, tmp_path):
    out = tmp_path / "out"
    common = ("--images", str(clean["images"]), "--masks", str(clean["masks"]))
    assert compare(clean, out, *common).exit_code == 0
    assert (out / "capture_curve.csv").is_file()
    (out / "cases_note.txt").write_text("not owned by compare")
    assert compare(clean, out, *common, "--no-curves", "--cases", "RECUR_001").exit_code == 0
    assert not (out / "capture_curve.csv").exists()  # stale: from the earlier run
    assert (out / "cases_note.txt").read_text() == "not owned by compare"  # never touched
    assert json.loads((out / "compare.status.json").read_text())["state"] == "complete"


def test_4_probability_map_saved_as_nifti_is_refused_or_thresholded(clean, tmp_path):
    pred = tmp_path / "pred"
    for case in CASES:
        with np.load(clean["ai"] / f"{case}.npz") as data:
            write(data["probabilities"][0], pred / f"{case}.nii.gz")
    assert "probability map" in one_error_line(compare(clean, tmp_path / "a", pred=f"AI={pred}"))
    result = compare(clean, tmp_path / "b", "--threshold", "0.6", pred=f"AI={pred}")
    assert result.exit_code == 0, result.output
    with_nifti = read_csv(tmp_path / "b" / "per_case.csv")
    result = compare(clean, tmp_path / "c", "--threshold", "0.6", pred=f"AI={clean['ai']}")  # npz route
    assert [r["dice"] for r in read_csv(tmp_path / "c" / "per_case.csv")] == [r["dice"] for r in with_nifti]


def test_4_threshold_for_a_mask_folder_is_reported_not_silently_ignored(clean, tmp_path):
    masks_only = tmp_path / "masks_only"
    masks_only.mkdir()
    for case in CASES:
        shutil.copy(clean["ai"] / f"{case}.nii.gz", masks_only)
    result = compare(clean, tmp_path / "out", "--threshold", "0.7", pred=f"AI={masks_only}")
    assert result.exit_code == 0, result.output
    assert "--threshold 0.7 not applied" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("not applied" in w for w in summary["warnings"])


def test_4_table1_star_marks_missing_cases_not_a_different_po_total():
    rows = [
        {"method": "Ground truth", "n_cases": 3, "dice_median": None, "dice_q1": None, "dice_q3": None,
         "volume_cc_median": 1.0, "volume_cc_q1": 1.0, "volume_cc_q3": 1.0, "po_captured": 4, "po_total": 4},
        # misses one case that had no PO: PO total equal, case count not -> must be starred
        {"method": "Partial", "n_cases": 2, "dice_median": 0.5, "dice_q1": 0.4, "dice_q3": 0.6,
         "volume_cc_median": 1.0, "volume_cc_q1": 1.0, "volume_cc_q3": 1.0, "po_captured": 3, "po_total": 4},
        {"method": "Full", "n_cases": 3, "dice_median": 0.5, "dice_q1": 0.4, "dice_q3": 0.6,
         "volume_cc_median": 1.0, "volume_cc_q1": 1.0, "volume_cc_q3": 1.0, "po_captured": 3, "po_total": 4},
    ]  # fmt: skip
    for row in rows:
        row["po_captured_published"] = row["po_captured"]
    table = report.table1_markdown(rows, [])
    assert "| Partial | 0.50 (0.40, 0.60) | 1 (1, 1) | 3 * |" in table
    assert "| Full | 0.50 (0.40, 0.60) | 1 (1, 1) | 3 |" in table


def test_4_overlay_orientation_comes_from_the_direction_with_patient_letters():
    axial = figures.slice_orientation(np.eye(3).ravel())
    assert axial == {"plane": "axial", "left": "R", "right": "L", "top": "A", "bottom": "P"}
    # array z runs anterior-posterior: the slices are coronal, their rows run inferior-superior
    coronal = figures.slice_orientation(np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float).ravel())
    assert coronal["plane"] == "coronal" and coronal["top"] == "I" and coronal["bottom"] == "S"
    tilted = np.array([[1, 0, 0], [0, math.cos(0.3), -math.sin(0.3)], [0, math.sin(0.3), math.cos(0.3)]])
    assert figures.slice_orientation(tilted.ravel())["plane"] == "axial (oblique)"


# 5. case ids ---------------------------------------------------------------------------------------------


def test_5_case_insensitive_duplicate_ids_are_refused(clean, tmp_path):
    labels = shutil.copytree(clean["labels"], tmp_path / "labels")
    shutil.copy(labels / "RECUR_001.nii.gz", labels / "recur_001.nii.gz")
    assert "RECUR_001 / recur_001" in one_error_line(compare(clean, tmp_path / "out", gt=labels))


def test_5_predictions_without_a_reference_are_listed(clean, tmp_path):
    pred = shutil.copytree(clean["ai"], tmp_path / "pred")
    shutil.copy(pred / "RECUR_001.nii.gz", pred / "RECUR_999.nii.gz")
    result = compare(clean, tmp_path / "out", pred=f"AI={pred}")
    assert result.exit_code == 0, result.output
    assert "RECUR_999" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["unmatched_predictions"] == {"AI": ["RECUR_999"]}


# 6. failed run says so where the report lives -------------------------------------------------------------


def test_6_failed_rerun_leaves_the_earlier_report_flagged(clean, tmp_path):
    out = tmp_path / "out"
    assert compare(clean, out).exit_code == 0
    table = (out / "table1.md").read_text()
    empty = tmp_path / "empty_pred"
    empty.mkdir()
    (empty / "OTHER.nii.gz").write_bytes((clean["ai"] / "RECUR_001.nii.gz").read_bytes())
    result = compare(clean, out, pred=f"AI={empty}")
    assert result.exit_code == 2
    assert (out / "table1.md").read_text() == table  # untouched ...
    status = json.loads((out / "compare.status.json").read_text())
    assert status["state"] == "failed" and "missing from method" in status["error"]  # ... but flagged
    assert not list(out.glob(".compare.staging-*"))


# 7. tracebacks for expected errors --------------------------------------------------------------------------


def test_7_corrupt_npz_is_one_error_line(clean, tmp_path):
    pred = shutil.copytree(clean["ai"], tmp_path / "pred")
    (pred / "RECUR_001.npz").write_bytes(b"PK\x03\x04 not really a zip")
    line = one_error_line(compare(clean, tmp_path / "out", "--threshold", "0.5", pred=f"AI={pred}"))
    assert "RECUR_001.npz" in line


@pytest.mark.parametrize("text", ['{"mean_dice": 0.4}', '{"percent": ', '{"percent": "38"}', "[]"])
def test_7_broken_best_json_is_one_error_line(clean, tmp_path, text):
    best = tmp_path / "best.json"
    best.write_text(text)
    result = runner.invoke(app, ["suvmax-predict", "--best", str(best), "--images", str(clean["images"]),
                                 "--masks", str(clean["masks"]), "--out", str(tmp_path / "s")])  # fmt: skip
    assert str(best) in one_error_line(result)
    assert not (tmp_path / "s" / "suvmax_predict.json").exists()


# 8.-10. statistics --------------------------------------------------------------------------------------


def test_8_mcnemar_exact_on_paired_pos_beside_fisher(clean, tmp_path):
    result = stats.mcnemar_po([1, 1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0, 1])
    assert (result["only_a"], result["only_b"], result["both"], result["neither"]) == (5, 0, 1, 1)
    assert result["p_value"] == pytest.approx(2 / 2**5)  # 0.0625, exact binomial, two-sided
    from scipy.stats import binomtest

    assert result["p_value"] == pytest.approx(binomtest(0, 5, 0.5).pvalue)
    assert stats.mcnemar_po([1, 0], [1, 0])["p_value"] == 1.0
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", "--gt", str(clean["labels"]), "--pred", f"AI={clean['ai']}",
                                 "--pred", f"GTV={clean['ai']}", "--no-figures", "--no-hd95",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    pair = json.loads((out / "stats.json").read_text())["comparisons"][0]
    assert {"po_fisher", "po_mcnemar"} <= set(pair) and pair["po_mcnemar"]["p_value"] == 1.0


def test_9_distribution_free_ci_of_the_median_difference():
    # n = 7, all differences positive but one: the bootstrap CI excludes 0, the exact intervals do not
    d = np.array([0.31, 0.12, -0.05, 0.22, 0.27, 0.18, 0.41])
    order = stats.order_statistic_median_ci(d)
    assert order["ci"] == [-0.05, 0.41] and order["k"] == 1
    assert order["coverage"] == pytest.approx(1 - 2 / 128)
    hl = stats.hodges_lehmann(d)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(7) for j in range(i, 7))
    assert hl["estimate"] == pytest.approx(np.median(walsh))
    assert hl["ci"] == pytest.approx([walsh[2], walsh[-3]]) and hl["coverage"] == pytest.approx(1 - 6 / 128)
    low, _ = stats.bootstrap_median_difference_ci(d)
    assert low > 0 and order["ci"][0] < 0  # the anti-conservative bootstrap vs the exact interval
    assert stats.order_statistic_median_ci(d[:5])["ci"] == [None, None]  # n = 5: no 95 % interval exists
    result = stats.paired_comparison(d, np.zeros(7))
    assert result["median_difference_ci95_order_statistics"] == [-0.05, 0.41]
    assert result["hodges_lehmann_ci95"] == pytest.approx(hl["ci"])


def test_10_quartile_definition_is_an_option_recorded_in_summary(clean, tmp_path):
    values = [0.0, 0.0, 0.17, 0.5, 0.6, 0.7, 0.8]
    assert report.median_iqr(values, "linear")[1] == pytest.approx(0.085)
    assert report.median_iqr(values, "weibull")[1] == pytest.approx(0.0)
    out = tmp_path / "out"
    assert compare(clean, out, "--quartiles", "weibull").exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["quartiles"] == "weibull" and summary["quartiles"]["method"] == "weibull"
    assert "'weibull' method" in (out / "table1.md").read_text()
    assert "--quartiles" in one_error_line(compare(clean, tmp_path / "bad", "--quartiles", "R7"))


# 11. PO distances ----------------------------------------------------------------------------------------


def test_11_po_capture_reports_the_distance_to_the_prediction(clean, tmp_path):
    out = tmp_path / "out"
    assert compare(clean, out).exit_code == 0
    rows = read_csv(out / "po_capture.csv")
    assert rows and any(row["captured"] == "0" for row in rows)  # a missed PO, whose distance is > 0
    for row in rows:
        assert (float(row["distance_mm"]) == 0.0) == (row["captured"] == "1")
        assert float(row["distance_mm"]) >= 0.0


# 12. provenance ------------------------------------------------------------------------------------------


def test_12_summary_records_version_commit_command_line_and_input_hashes(clean, tmp_path):
    out = tmp_path / "out"
    assert compare(clean, out).exit_code == 0
    provenance = json.loads((out / "summary.json").read_text())["provenance"]
    import nnunet_recur

    assert provenance["version"] == nnunet_recur.__version__
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit the code runs from (+dirty when modified)
        assert provenance["git_commit"].removesuffix("+dirty") == head.stdout.strip()
    else:  # an unpacked sdist: nothing to record
        assert provenance["git_commit"] is None
    assert isinstance(provenance["command_line"], list) and provenance["command_line"]
    label = str(clean["labels"] / "RECUR_001.nii.gz")
    assert provenance["input_sha256"][label] == hashlib.sha256(Path(label).read_bytes()).hexdigest()
    assert str(clean["ai"] / "RECUR_003.nii.gz") in provenance["input_sha256"]


def test_1_guarded_float_reader_gives_itks_array_and_grid(tmp_path):
    # floats are decompressed by the guard itself (one pass, NaN checked on the way): same as ITK's
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(size=(7, 9, 11)).astype(np.float64))
    image.SetDirection((0, 1, 0, 0, 0, 1, 1, 0, 0))
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((4.0, 5.0, 6.0))
    for name in ("rotated.nii.gz", "rotated.nii"):
        sitk.WriteImage(image, str(tmp_path / name))
        volume = read_volume(tmp_path / name)
        reference = sitk.ReadImage(str(tmp_path / name))
        assert np.array_equal(volume.array, sitk.GetArrayFromImage(reference))
        assert volume.array.dtype == np.float64 and volume.array.flags.writeable
        assert volume.grid.direction == pytest.approx(reference.GetDirection())
        assert volume.grid.origin == pytest.approx(reference.GetOrigin())
