"""The hostile-input corpus (tests/hostile_eval_corpus.py) through the real `recur-eval` executable.

Every damaged input exits non-zero with a one-line message and no traceback, refused runs leave no
report, and a run killed mid-report leaves neither a partial nor a mixed report: the earlier report
stays whole and `compare.status.json` says the last run did not complete.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_eval_corpus import build_clean, build_corpus

pytestmark = pytest.mark.slow

RECUR_EVAL = [sys.executable, "-m", "nnunet_recur.evaluation.cli"]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*RECUR_EVAL, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_every_damaged_input_exits_non_zero_without_traceback(tmp_path):
    scenarios = build_corpus(tmp_path / "corpus")
    assert len(scenarios) >= 15
    problems = []
    for s in scenarios:
        result = run(s.args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith(("error:", "failed:", "warning:"))]
        if result.returncode != s.exit_code:
            problems.append(
                f"{s.name}: exit {result.returncode}, expected {s.exit_code}: {result.stderr[-300:]}"
            )
        if "Traceback" in result.stderr or "Traceback" in result.stdout:
            problems.append(f"{s.name}: traceback")
        if not any(s.message in line for line in said):
            problems.append(f"{s.name}: no message containing {s.message!r}: {said}")
        out = Path(s.out)
        if s.exit_code == 2:
            errors = [line for line in lines if line.startswith("error:")]
            if len(errors) != 1:
                problems.append(f"{s.name}: {len(errors)} error lines")
            if s.report_file and (out / s.report_file).exists():
                problems.append(f"{s.name}: {s.report_file} written by a refused run")
            status = out / f"{s.args[0]}.status.json"
            if (
                s.args[0] in ("compare", "suvmax-sweep")
                and out.is_dir()
                and json.loads(status.read_text())["state"] != "failed"
            ):
                problems.append(f"{s.name}: status does not say failed")
        else:  # the batch went on and recorded the damaged case; no whole-FOV mask for it
            assert not (out / "RECUR_002.nii.gz").exists(), s.name
            record = out / ("best.json" if s.args[0] == "suvmax-sweep" else "suvmax_predict.json")
            recorded = json.loads(record.read_text())
            if "RECUR_002" not in recorded.get("excluded", recorded.get("failed", {})):
                problems.append(f"{s.name}: RECUR_002 not recorded as failed in {record.name}")
    assert not problems, "\n".join(problems)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".status.json")
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }  # fmt: skip


def _methods_in(out: Path) -> tuple[set[str], set[str]]:
    with open(out / "per_case.csv", newline="") as handle:
        per_case = {row["method"] for row in csv.DictReader(handle)}
    summary = {m["name"] for m in json.loads((out / "summary.json").read_text())["methods"]}
    return per_case, summary


def test_run_killed_mid_report_leaves_the_earlier_report_whole_and_says_so(tmp_path):
    clean = build_clean(tmp_path / "clean")
    out = tmp_path / "report"
    base = ["compare", "--gt", str(clean["labels"]), "--images", str(clean["images"]),
            "--masks", str(clean["masks"]), "--no-hd95", "--out", str(out)]  # fmt: skip
    first = run([*base, "--pred", f"AI={clean['ai']}", "--no-figures"])
    assert first.returncode == 0, first.stderr
    assert (out / "capture_curve.csv").is_file()
    before = _hashes(out)

    # a second run with two methods and figures, killed once its tables are staged (figures still to draw)
    process = subprocess.Popen(
        [*RECUR_EVAL, *base, "--pred", f"AI={clean['ai']}", "--pred", f"AI again={clean['ai']}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staged = out / f".compare.staging-{process.pid}" / "summary.json"
    deadline = time.monotonic() + 60
    while not staged.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed mid-report"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    assert _hashes(out) == before  # the earlier report, whole and unmixed
    per_case, summary = _methods_in(out)
    assert per_case == summary == {"AI"}
    status = json.loads((out / "compare.status.json").read_text())
    assert status["state"] == "running" and status["pid"] == process.pid  # the last run did not finish

    # the next run cleans the dead run's staging folder and the stale curve file of the earlier run
    rerun = run([*base, "--pred", f"AI={clean['ai']}", "--pred", f"AI again={clean['ai']}", "--no-curves"])
    assert rerun.returncode == 0, rerun.stderr
    assert not list(out.glob(".compare.staging-*"))
    assert not (out / "capture_curve.csv").exists()
    per_case, summary = _methods_in(out)
    assert per_case == summary == {"AI", "AI again"}
    assert json.loads((out / "compare.status.json").read_text())["state"] == "complete"
