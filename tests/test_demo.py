"""`recur demo` end to end, reduced (few patients, 1 seed, 2 epochs, the default `demo` size), through the
real CLI and the real nnU-Net commands; then a rerun that must skip every finished stage."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECUR = str(Path(sys.executable).parent / "recur")
REDUCED = [
    "--epochs",
    "2",
    "--pretrain-epochs",
    "2",
    "--seeds",
    "1",
    "--inhouse-cases",
    "12",
    "--hecktor-cases",
    "5",
    "--device",
    "cpu",
]
METHODS = ("AI random", "AI finetune", "GTV")


def _clean_env() -> dict[str, str]:
    """The demo must need nothing exported: drop any nnU-Net variables of the developer's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}


def _reduced_demo(out: Path, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    """`recur demo --out OUT` with the reduced settings; (the finished process, its wall seconds)."""
    start = time.monotonic()
    proc = subprocess.run(
        [RECUR, "demo", "--out", str(out), *REDUCED],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    proc, seconds = _reduced_demo(out, 900)
    assert proc.returncode == 0, (
        f"demo failed after {seconds:.0f} s:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    return out, proc.stdout, seconds


@pytest.mark.slow
def test_reduced_demo_writes_the_report(demo_run):
    out, stdout, _ = demo_run
    report = out / "report"
    # every stage printed the public command it ran
    for tool in ("$ recur synth", "$ recur convert inhouse", "$ recur plan", "nnUNetv2_train 501 3d_recur 0",
                 "nnUNetv2_train 502 3d_recur 0", "-pretrained_weights", " nnUNetv2_predict -i",
                 "$ recur-eval suvmax-sweep", "$ recur-eval compare"):  # fmt: skip
        assert tool in stdout, tool
    table = (report / "table1.md").read_text()
    for row in ("Ground truth", *METHODS, "SUVmax"):
        assert row in table, row
    assert "Table 1" in stdout

    stats = json.loads((report / "stats.json").read_text())
    assert isinstance(stats, dict) and stats

    with (report / "per_case.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:9] == ["method", "case", "dice", "recall", "precision", "pred_cc", "gt_cc",
                                 "po_count", "po_captured"]  # fmt: skip
    methods = {r["method"] for r in rows}
    assert {"AI random", "AI finetune", "GTV"} <= methods and any(m.startswith("SUVmax") for m in methods)
    test_cases = sorted(p.name for p in (out / "nnUNet_raw").glob("Dataset502_*/labelsTs/*.nii.gz"))
    assert len(test_cases) >= 1
    assert len(rows) == len(methods) * len(test_cases)
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0
        assert float(r["gt_cc"]) > 0  # every test patient has a relapse
    gtv_rows = [r for r in rows if r["method"] == "GTV"]
    assert all(float(r["pred_cc"]) > 0 for r in gtv_rows)

    png = (report / "figure4.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    sweep = json.loads((report / "best.json").read_text())
    assert 1 <= sweep["percent"] <= 100
    # Table 1's best CNN: chosen on validation Dice (issue 18 1.2), recorded and handed to compare
    best_cnn = json.loads((report / "best_cnn.json").read_text())
    scores = {m["label"]: m["val_dice"] for m in best_cnn["methods"]}
    assert set(scores) == {"AI random", "AI finetune"} and best_cnn["best"] in scores
    assert scores[best_cnn["best"]] == max(scores.values())
    assert "--best " + shlex.quote(best_cnn["best"]) in stdout
    overlays = sorted((report / "figures").glob("*_po*.png"))
    assert len(overlays) >= len(test_cases), "expected at least one PO overlay per test patient"

    # seed selection by the one rule (`recur best-seed`), recorded in the model folder and used
    assert "$ recur best-seed 502 -tr nnUNetTrainerRecurFinetune_2epochs" in stdout
    model = (
        out
        / "nnUNet_results"
        / "Dataset502_SynthRecur"
        / "nnUNetTrainerRecur_2epochs__nnUNetRecurPlans__3d_recur"
    )
    choice = json.loads((model / "seed_selection.json").read_text())
    assert choice["best_fold"] == 0 and "-f 0" in stdout
    journal = json.loads((out / "journal.json").read_text())
    assert all(journal["jobs"][n]["state"] == "done" for n in journal["order"])

    # issue 20: the converter wrote every test patient's dose; Table 1 has the in-field column and the
    # relapse pattern against the planned dose covers every method of Table 1
    doses = sorted(p.name for p in (out / "nnUNet_raw").glob("Dataset502_*/doseTs/*.nii.gz"))
    assert doses == test_cases
    assert "In-field POs captured" in table
    compare_line = next(ln for ln in stdout.splitlines() if "$ recur-eval compare" in ln)
    assert "--dose " in compare_line and "doseTs" in compare_line
    assert "$ recur-eval dose-pattern" in stdout
    pattern_md = (report / "dose_pattern" / "dose_pattern.md").read_text()
    assert pattern_md.startswith("# Relapse pattern against dose")
    pattern = json.loads((report / "dose_pattern" / "dose_pattern.json").read_text())
    assert set(pattern["capture_by_po_class"]) == methods and pattern["n_cases"] == len(test_cases)
    assert "in-field PO(s) captured" in stdout

    # the converter's exclusions were shown to the user
    assert "excluded by the quality checks" in stdout

    # Table 1 comes with what it means (and does not), and the research-tool note
    assert "no evidence about real relapses" in stdout and "not a medical device" in stdout


@pytest.mark.slow
def test_reduced_demo_adds_curves_new_patient_and_cpu_env(demo_run):
    out, stdout, _ = demo_run
    report = out / "report"
    # training curves of every run, the kept epoch marked (recur-eval training-curves)
    assert "$ recur-eval training-curves" in stdout
    png = (report / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((report / "training_curves.json").read_text())
    labels = json.dumps(curves)
    assert "AI random seed 0" in labels and "AI finetune seed 0" in labels
    assert (report / "training_curves.csv").is_file()

    # the last job: `recur predict` on the first test patient's DICOM folder, best seed of AI random
    journal = json.loads((out / "journal.json").read_text())
    assert journal["order"][-1] == "predict_new_patient"
    with (out / "recur_reports" / "Dataset502_SynthRecur" / "cases.csv").open(newline="") as fh:
        first_test = next(r["patient"] for r in csv.DictReader(fh) if r["role"] == "test")
    model = "nnUNetTrainerRecur_2epochs__nnUNetRecurPlans__3d_recur"
    line = next(ln for ln in stdout.splitlines() if "$ " in ln and "recur predict" in ln)
    assert f"patients/{first_test} " in line and model in line and "--folds best" in line
    assert "--device cpu" in line
    new = out / "predict_new_patient"
    assert list(new.rglob("RS_*.dcm")) and list(new.rglob("SEG_*.dcm")) and list(new.rglob("report.html"))
    # issue 21: and the dose-painting prescription with its RT Dose (`--dose-map`, the defaults)
    assert "--dose-map" in line and (new / "RD_recur_prescription.dcm").is_file()
    assert json.loads((new / "dose_map.json").read_text())

    # issue 21: temperature of the best seed fitted on its validation patients (a 2-epoch model may have no
    # signal, then none is written), the test patients scored before and after, the new patient uses it
    fitted = (out / "nnUNet_results" / "Dataset502_SynthRecur" / model / "calibration.json").is_file()
    scored = json.loads((report / "calibration" / "calibration.json").read_text())["methods"]
    assert set(scored) == ({"AI random", "AI random, calibrated"} if fitted else {"AI random"})
    assert json.loads(next(new.rglob("summary.json")).read_text())["calibration"]["applied"] is fitted

    # the CPU environment reached every nnU-Net job (printed as the prefix of its command) and the header
    for tool in ("nnUNetv2_train", "nnUNetv2_predict", "recur predict"):
        lines = [ln for ln in stdout.splitlines() if "$ " in ln and f" {tool} " in ln]
        assert lines, tool
        assert all("OMP_WAIT_POLICY=PASSIVE" in ln and "MALLOC_MMAP_THRESHOLD_=" in ln for ln in lines), tool
    assert "export OMP_WAIT_POLICY=PASSIVE" in stdout
    assert "--disable_tta" not in stdout  # the paper's trainers do no TTA


@pytest.mark.slow
def test_rerun_skips_finished_stages_quickly(demo_run):
    out, first_stdout, first_seconds = demo_run
    proc, seconds = _reduced_demo(out, 300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "nnUNetv2_train" not in proc.stdout
    n_stages = first_stdout.count("] ")
    assert proc.stdout.count("already done, skipped") >= 15
    assert seconds < 30 and seconds < first_seconds / 4, (seconds, n_stages)


@pytest.mark.slow
def test_demo_refuses_other_settings_in_the_same_folder(demo_run):
    out, _, _ = demo_run
    args = [a if a != "2" else "5" for a in REDUCED]  # --epochs 5
    proc = subprocess.run(
        [RECUR, "demo", "--out", str(out), *args], env=_clean_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "other settings" in proc.stdout
