"""`recur study` on a real one-node Slurm cluster (scripts/slurm-local.sh), against the local executor.

A reduced study (1 seed x 2 methods x 2 epochs, small synthetic cohort) runs once with the local executor and
once on Slurm. On Slurm the driver submits and exits (--no-wait); one AI random training is killed with
`scancel` as soon as it runs; the driver is run again, re-attaches to the running jobs, resubmits the killed
one with nnU-Net's `--c`, and the study completes with the same Table 1 as the local run (CPU training is
deterministic: the trainers seed from the fold number and nnUNet_n_proc_DA=0 keeps augmentation in-process).

Slurm is installed with apt when missing (root); a machine without apt fails this test, it never skips.
The cluster is stopped by the pids its daemons wrote.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from nnunet_recur.nnunet_names import ext_trainer_value
from nnunet_recur.workflow import demo as d
from nnunet_recur.workflow.driver import Driver
from nnunet_recur.workflow.executors.local import LocalExecutor
from nnunet_recur.workflow.graph import JobGraph

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
RECUR = str(Path(sys.executable).parent / "recur")
KILLED = "train_ai_random_seed0"  # runs at once beside the pre-training (2 CPUs)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.fail("Slurm is not installed and this machine has no apt-get to install it (slurm-wlm, munge)")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "RECUR_SLURM_DIR": str(folder), "RECUR_SLURM_PORT": str(17000 + os.getpid() % 2000)}
    proc = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, f"slurm-local.sh start failed:\n{proc.stdout}\n{proc.stderr}"
        conf = next(
            ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("export SLURM_CONF=")
        )
        yield conf
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def _clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(COLUMNS="200", **extra)  # rich tables and messages unwrapped
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The small synthetic cohort, converted and planned once (the demo's preparation jobs)."""
    base = tmp_path_factory.mktemp("study")
    cfg = d.DemoConfig(out=base / "prep", epochs=2, seeds=2, inhouse_cases=8, hecktor_cases=5)
    env = {"nnUNet_raw": str(base / "raw"), "nnUNet_preprocessed": str(base / "pre"),
           "nnUNet_results": str(base / "unused"), "nnUNet_extTrainer": ext_trainer_value({}),
           "nnUNet_def_n_proc": "1"}  # fmt: skip
    jobs = d.preparation_jobs(cfg, d.DemoPaths(cfg, env))
    console = Console(file=io.StringIO())
    Driver(JobGraph(jobs), cfg.out, LocalExecutor(), env=env, console=console, poll_seconds=0.2).run()
    return base


def _study_file(base: Path, name: str, executor: str) -> Path:
    text = f"""
[study]
folder = "{name}"
[datasets]
pretrain = 501
relapse = 502
[paths]
nnUNet_raw = "{base / "raw"}"
nnUNet_preprocessed = "{base / "pre"}"
nnUNet_results = "{base / name / "nnUNet_results"}"
[training]
methods = ["AI random", "AI finetune"]
seeds = 1
epochs = 2
device = "cpu"
[prediction]
disable_tta = true
[executor]
kind = "{executor}"
max_retries = 2
poll_seconds = 1
[executor.slurm]
cpus_per_task = 1
mem_gb = 3
timeout_min = 30
setup = ["export MPLBACKEND=Agg"]
"""
    path = base / f"{name}.toml"
    path.write_text(text)
    return path


def _run(args, env, timeout=2400) -> subprocess.CompletedProcess:
    return subprocess.run([RECUR, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _journal(folder: Path) -> dict:
    return json.loads((folder / "journal.json").read_text())


def test_reduced_study_on_slurm_survives_scancel_and_matches_the_local_executor(slurm, prepared):
    base = prepared
    timings = {}

    env = _clean_env(SLURM_CONF=slurm)
    toml = _study_file(base, "slurm", "slurm")
    start = time.monotonic()
    first = _run(["study", "run", str(toml), "--no-wait"], env, timeout=300)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
    assert "the driver exits now" in first.stdout
    journal = _journal(base / "slurm")
    assert journal["jobs"]["train_ai_finetune_seed0"]["attempts"][0]["depends_on"]  # afterok on pretrain
    victim = journal["jobs"][KILLED]["attempts"][0]["job_id"]

    # kill the training as soon as Slurm runs it (before nnU-Net wrote any checkpoint)
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", victim, "-o", "%T"], env=env, capture_output=True, text=True
        )
        if state.stdout.strip() == "RUNNING":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"job {victim} did not start within 1200 s")
    subprocess.run(["scancel", victim], env=env, check=True)

    status = _run(["study", "status", str(base / "slurm")], env, timeout=120)
    assert status.returncode == 0 and KILLED in status.stdout, status.stdout + status.stderr

    second = _run(["study", "run", str(toml)], env)
    timings["slurm"] = time.monotonic() - start
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    assert "Re-attaching" in second.stdout

    journal = _journal(base / "slurm")
    assert all(journal["jobs"][n]["state"] == "done" for n in journal["order"]), journal
    attempts = journal["jobs"][KILLED]["attempts"]
    assert attempts[0]["state"] in ("cancelled", "interrupted", "lost") and attempts[0]["job_id"] == victim
    assert attempts[-1]["state"] == "done" and attempts[-1]["commands"][-1].endswith("--c")
    assert all(a["executor"] == "slurm" for a in attempts)
    status = _run(["study", "status", str(base / "slurm")], env, timeout=120)
    assert status.returncode == 0
    for job in ("pretrain", KILLED, "compare"):
        assert job in status.stdout

    start = time.monotonic()
    local = _run(["study", "run", str(_study_file(base, "local", "local"))], _clean_env())
    timings["local"] = time.monotonic() - start
    assert local.returncode == 0, local.stdout[-5000:] + local.stderr[-3000:]
    assert (base / "slurm" / "report" / "table1.md").read_text() == (
        base / "local" / "report" / "table1.md"
    ).read_text()
    print(f"\nwall time: local executor {timings['local']:.0f} s, Slurm {timings['slurm']:.0f} s")
    (base / "timings.json").write_text(json.dumps(timings))


def test_slurm_states_come_from_squeue_and_result_files_without_sacct(slurm, tmp_path, monkeypatch):
    """Toy jobs on the real cluster: done, cancelled -> resubmitted with the retry command, afterok chain."""
    from nnunet_recur.workflow.executors.slurm import SlurmExecutor, SlurmResources
    from nnunet_recur.workflow.graph import Job
    from nnunet_recur.workflow.journal import Journal

    monkeypatch.setenv("SLURM_CONF", slurm)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    py = sys.executable
    jobs = [
        Job("a", "a", [[py, "-c", "import time; time.sleep(30)"]], outputs=[a], after=(),
            retry_commands=[[py, "-c", f"open({str(a)!r}, 'w').write('retried')"]]),
        Job("b", "b", [[py, "-c", f"open({str(b)!r}, 'w').write('after a')"]], outputs=[b], after=("a",),
            eager=True),
    ]  # fmt: skip
    executor = SlurmExecutor(tmp_path / "slurm", {"default": SlurmResources(cpus_per_task=1, mem_gb=0.5)})

    def driver():
        console = Console(file=io.StringIO(), width=200)
        return Driver(JobGraph(jobs), tmp_path / "study", executor, console=console, poll_seconds=0.5)

    driver().run(wait=False)
    journal = Journal.load(tmp_path / "study")
    job_a = journal.last_attempt("a")["job_id"]
    assert journal.last_attempt("b")["depends_on"] == [job_a]  # queued behind a with afterok
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if executor.poll([journal.last_attempt("a")])[job_a].state == "running":
            break
        time.sleep(0.5)
    subprocess.run(["scancel", job_a], check=True)
    driver().run()
    journal = Journal.load(tmp_path / "study")
    states_a = [x["state"] for x in journal.attempts("a")]
    assert states_a == ["cancelled", "done"] and journal.attempts("a")[1]["retry"]
    assert a.read_text() == "retried" and b.read_text() == "after a"
    # b's first attempt waited for the cancelled a: withdrawn, then submitted again
    assert [x["state"] for x in journal.attempts("b")][-1] == "done"


FAKE_TRAIN = """#!{python}
# a toy stand-in for nnUNetv2_train: records each run's arguments; outlives its time limit unless resumed
import sys, time
with open({markers!r}, "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
if "--c" not in sys.argv:
    time.sleep(600)
open({output!r}, "w").write("resumed")
"""


def test_a_slurm_time_limit_continues_the_training_with_resume(slurm, tmp_path, monkeypatch):
    """Two toy `nnUNetv2_train` jobs with a 1-minute time limit, on the real cluster.

    ``requeued`` has submitit's warning signal (USR2 before the limit): JobRun.checkpoint stops the command
    and submitit requeues the same Slurm job, which runs again with ``--c``. ``timed_out`` has the warning
    signal replaced by one Python ignores, so Slurm ends it at its time limit (TIMEOUT): the driver records
    the time-out and submits the job again with its retry command (``--c``, as for a real training).
    A job queued behind both (afterok) runs once both finished.
    """
    from nnunet_recur.workflow.executors.slurm import SlurmExecutor, SlurmResources
    from nnunet_recur.workflow.graph import Job
    from nnunet_recur.workflow.jobrun import with_resume
    from nnunet_recur.workflow.journal import Journal

    monkeypatch.setenv("SLURM_CONF", slurm)
    jobs, outputs = [], {}
    for name in ("requeued", "timed_out"):
        markers, outputs[name] = tmp_path / f"{name}.runs", tmp_path / f"{name}.out"
        tool = tmp_path / name / "nnUNetv2_train"  # with_resume (--c) recognises the tool by its name
        tool.parent.mkdir()
        tool.write_text(
            FAKE_TRAIN.format(python=sys.executable, markers=str(markers), output=str(outputs[name]))
        )
        tool.chmod(0o755)
        train = [str(tool), "999", "3d_fullres", "0", "-device", "cpu"]
        jobs.append(Job(name, name, [train], outputs=[outputs[name]], after=(), resources=name,
                        retry_commands=[with_resume(train)]))  # fmt: skip
    after = tmp_path / "after.txt"
    jobs.append(
        Job("after", "after", [[sys.executable, "-c", f"open({str(after)!r}, 'w').write('ok')"]],
            outputs=[after], after=("requeued", "timed_out"), eager=True)
    )  # fmt: skip
    profiles = {
        "requeued": SlurmResources(cpus_per_task=1, mem_gb=0.5, timeout_min=1),
        # SIGURG is ignored by default: no checkpoint, no requeue; Slurm kills the job at its limit
        "timed_out": SlurmResources(
            cpus_per_task=1, mem_gb=0.5, timeout_min=1, additional={"signal": "URG@1"}
        ),
        "default": SlurmResources(cpus_per_task=1, mem_gb=0.5),
    }
    executor = SlurmExecutor(tmp_path / "slurm", profiles)
    console = Console(file=io.StringIO(), width=200)
    start = time.monotonic()
    Driver(JobGraph(jobs), tmp_path / "study", executor, console=console, poll_seconds=0.5).run()
    seconds = time.monotonic() - start
    print(f"\ntime-limit test: {seconds:.0f} s")

    journal = Journal.load(tmp_path / "study")
    shown = console.file.getvalue()
    assert all(journal.state(j.name) == "done" for j in jobs), (journal.data, shown)
    assert after.read_text() == "ok"
    for name in ("requeued", "timed_out"):
        runs = (tmp_path / f"{name}.runs").read_text().splitlines()
        assert len(runs) == 2 and not runs[0].endswith("--c") and runs[1].endswith("--c"), (name, runs)
        assert outputs[name].read_text() == "resumed"

    # requeued: one Slurm job that ran twice (submitit requeued it after its time-out warning)
    (attempt,) = journal.attempts("requeued")
    job_id = attempt["job_id"]
    submitit_log = (tmp_path / "slurm" / job_id / f"{job_id}_0_log.err").read_text()
    assert "this job is timed-out" in submitit_log and "DUE TO JOB REQUEUE" in submitit_log
    assert attempt.get("requeues") == 1, attempt

    # timed_out: Slurm ended it at its limit; the driver recorded TIMEOUT and resubmitted the retry command
    # the job queued behind them was withdrawn (not counted as a failure) and submitted again
    assert journal.failed_attempts("after") == 0, journal.attempts("after")
    first, second = journal.attempts("timed_out")
    assert first["state"] == "timeout" and not first["retry"], first
    assert second["state"] == "done" and second["retry"] and second["commands"][-1].endswith("--c"), second
    assert second["job_id"] != first["job_id"]
    assert "timeout" in shown and "resubmitted" in shown, shown
