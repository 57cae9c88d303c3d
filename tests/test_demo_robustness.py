"""bench/demo_robustness.py judges issue 14's target from a demo's Table 1; check the judging itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("demo_robustness")


HEADER = "method,n_cases,dice_median,volume_cc_median,po_captured,po_total\n"


def _table(tmp_path: Path, ai: str, gtv: str = "GTV,8,0.30,30,6,9") -> Path:
    path = tmp_path / "table1.csv"
    path.write_text(HEADER + "Ground truth,8,,8,9,9\n" + ai + "\n" + "SUVmax 40%,8,0.2,10,5,9\n" + gtv + "\n")
    return path


@pytest.mark.parametrize(
    ("ai_row", "failed"),
    [
        ("AI random,8,0.26,20,6,9", None),  # Dice within 0.05, 0.67x the volume, same POs
        ("AI random,7,0.26,20,6,9", "test_patients>=8"),
        ("AI random,8,0.26,20,5,9", "POs>=GTV"),
        ("AI random,8,0.26,22,6,9", "volume<=0.7xGTV"),
        ("AI random,8,0.24,20,6,9", "dice>=GTV-0.05"),
    ],
)
def test_each_criterion_of_the_target(bench, tmp_path, ai_row, failed):
    verdict = bench.check_target(bench.read_table1(_table(tmp_path, ai_row)), finetune_epoch=3)
    assert verdict["met"] is (failed is None)
    assert [k for k, v in verdict["checks"].items() if not v] == ([failed] if failed else [])


def test_finetune_must_train_past_epoch_0(bench, tmp_path):
    fold = (
        tmp_path / "nnUNet_results" / "ai_finetune" / "nnUNetTrainerRecurFinetune_50epochs__P__C" / "fold_0"
    )
    fold.mkdir(parents=True)
    (fold / "recur_best.json").write_text(json.dumps({"best_epoch": 0}))
    epoch = bench.finetune_kept_epoch(tmp_path)
    table = bench.read_table1(_table(tmp_path, "AI random,8,0.26,20,6,9"))
    assert epoch == 0 and bench.check_target(table, epoch)["checks"]["finetune_past_epoch0"] is False


def test_a_run_without_the_default_cohort_is_not_called_robust(bench):
    """Regression: with --skip-default the report said "Default cohort: met" for a default it never ran."""
    robust, line = bench.overall_verdict({"seed_1": {"met": True}, "seed_2": {"met": True}})
    assert robust is False and "not run here" in line and "Default cohort: met" not in line
    robust, line = bench.overall_verdict(
        {"default": {"met": True}, "seed_1": {"met": True}, "seed_2": {"met": True}}
    )
    assert robust is True and "Default cohort: met" in line
    assert bench.overall_verdict({"default": {"met": False}, "seed_1": {"met": True}})[0] is False
