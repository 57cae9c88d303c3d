"""Storage and process faults around `recur convert inhouse` (issue 13): a full disk (a small tmpfs in a
private mount namespace; skipped with the reason when mounting is not permitted), one worker killed as the
OOM killer would, the main process killed (its workers must die with it, and the rerun must be
byte-identical to an uninterrupted run), and two concurrent runs into one dataset."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus as hc  # noqa: E402

pytestmark = pytest.mark.slow
RECUR = str(Path(sys.executable).parent / "recur")


def cohort(root: Path, n: int = 4, big: bool = False) -> Path:
    src = root / "src"
    for i in range(n):
        hc.nifti_patient(src / f"P{i}", 50 + i)
    if big:  # slow enough to be caught while it runs
        hc.nifti_patient(src / "P_big", 60, shape=(120, 192))
    return src


def command(src: Path, root: Path, tag: str, *extra: str) -> list[str]:
    return [
        RECUR, "convert", "inhouse", str(src), "--dataset-id", "32", "--crop", "none",
        "--raw-dir", str(root / f"raw_{tag}"), "--report-dir", str(root / f"rep_{tag}"), *extra,
    ]  # fmt: skip


def environment(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_preprocessed"}
    env["TMPDIR"] = str(root / "tmp")  # where the worker markers live
    (root / "tmp").mkdir(exist_ok=True)
    return env


def digests(raw: Path) -> dict[str, str]:
    return {
        str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(raw.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def wait_for_marker(root: Path, key: str | None, process: subprocess.Popen, timeout=120.0):
    """(pid, key) of the first worker found running `key` (any key when None)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        for marker in (root / "tmp").glob("recur_workers_*/round*/*"):
            try:
                running = marker.read_text()
            except OSError:
                continue
            if running and (key is None or running == key):
                return int(marker.name), running
        time.sleep(0.005)
    raise AssertionError(f"no worker ran {key}: {process.poll()}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_disk_full_fails_the_case_loudly_and_the_rerun_repairs_it(tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("disk-full test skipped: no `unshare` to mount a private tmpfs")
    src = cohort(tmp_path, n=5)
    prefix = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-rm"]
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path)]
    probe = subprocess.run(prefix + mount, text=True, capture_output=True)
    if probe.returncode != 0:
        reason = f"disk-full test skipped: mounting a tmpfs is not permitted here ({probe.stderr.strip()})"
        print(reason)
        pytest.skip(reason)
    script = Path(__file__).parent / "fault_disk_full.py"
    done = subprocess.run(
        prefix + [sys.executable, str(script), str(src), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    first, second, report_full = seen["first"], seen["second"], seen["report_full"]
    for run in (first, second, report_full):
        assert "Traceback" not in run["stdout"] + run["stderr"], run["stderr"]
    assert first["rc"] == 1 and "error [write_failed]" in first["stderr"], first
    assert first["damaged"] == [] and first["leftovers"] == []
    assert second["rc"] == 0 and second["damaged"] == [] and second["n_images"] == 5, second
    assert "5 of 5 patients converted" in second["stdout"]
    assert report_full["rc"] == 2
    errors = [line for line in report_full["stderr"].splitlines() if line.strip()]
    assert len(errors) == 1 and "No space left on device" in errors[0], report_full["stderr"]
    assert all(".tmp" not in name for name in report_full["left_in_report_dir"])


def test_one_killed_worker_costs_only_its_patient_and_the_exit_is_nonzero(tmp_path):
    src = cohort(tmp_path, n=4, big=True)
    process = subprocess.Popen(
        command(src, tmp_path, "kill", "--workers", "2"),
        env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid, _ = wait_for_marker(tmp_path, "P_big", process)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stdout + stderr, stderr
    assert process.returncode == 1, stdout + stderr
    assert "error [oom/killed]: P_big" in stderr
    with open(tmp_path / "rep_kill" / "cases.csv") as fh:
        rows = {r["patient"]: (r["status"], r["cause"]) for r in csv.DictReader(fh)}
    assert rows == {
        **{f"P{i}": ("converted", "") for i in range(4)},
        "P_big": ("excluded", "oom/killed"),
    }


def test_workers_die_with_the_main_process_and_the_rerun_is_byte_identical(tmp_path):
    src = cohort(tmp_path, n=4, big=True)
    env = environment(tmp_path)
    reference = subprocess.run(
        command(src, tmp_path, "ref"), env=env, capture_output=True, text=True, timeout=300
    )
    assert reference.returncode == 0, reference.stderr
    process = subprocess.Popen(
        command(src, tmp_path, "int", "--workers", "2"), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_marker(tmp_path, "P_big", process)
    workers = [int(m.name) for m in (tmp_path / "tmp").glob("recur_workers_*/round*/*")]
    assert workers
    process.kill()  # kill -9 of the main process
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "workers outlived their parent"
    rerun = subprocess.run(
        command(src, tmp_path, "int", "--workers", "2"), env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert digests(tmp_path / "raw_int") == digests(tmp_path / "raw_ref")


def test_two_concurrent_runs_one_refuses_clearly(tmp_path):
    src = cohort(tmp_path, n=4, big=True)
    env = environment(tmp_path)
    first = subprocess.Popen(
        command(src, tmp_path, "same", "--seed", "1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / "raw_same" / ".Dataset032.lock"
    deadline = time.time() + 60
    held = False
    while time.time() < deadline and not held and first.poll() is None:
        if lock.exists():
            with open(lock) as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fh, fcntl.LOCK_UN)
                except BlockingIOError:
                    held = True
        time.sleep(0.01)
    assert held, "the first run never took the lock"
    second = subprocess.run(
        command(src, tmp_path, "same", "--seed", "2"), env=env, capture_output=True, text=True, timeout=300
    )
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.returncode == 2 and "is being written by recur convert (pid" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    dataset = tmp_path / "raw_same" / "Dataset032_RecurOPSCC"
    train = {p.name for p in (dataset / "imagesTr").iterdir()}
    test = {p.name for p in (dataset / "imagesTs").iterdir()} if (dataset / "imagesTs").is_dir() else set()
    assert train and not train & test
