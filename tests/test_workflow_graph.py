"""The job graph, the driver's resume rules on the local executor, the study file and the status table."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from nnunet_recur.workflow import study as st
from nnunet_recur.workflow.driver import Driver, JobError
from nnunet_recur.workflow.executors.local import LocalExecutor
from nnunet_recur.workflow.graph import GraphError, Job, JobGraph
from nnunet_recur.workflow.journal import Journal, JournalError
from nnunet_recur.workflow.status import study_rows, training_progress

PY = sys.executable


def _driver(out: Path, jobs, gpus=(), max_retries=2) -> Driver:
    console = Console(file=io.StringIO(), width=200)
    return Driver(JobGraph(jobs), out, LocalExecutor(gpus), console=console, max_retries=max_retries,
                  poll_seconds=0.02)  # fmt: skip


def _py(code: str) -> list[str]:
    return [PY, "-c", code]


def test_graph_rejects_unknown_dependencies_duplicates_and_cycles():
    with pytest.raises(GraphError, match="unknown job 'nope'"):
        JobGraph([Job("a", "a", after=("nope",))])
    with pytest.raises(GraphError, match="two jobs"):
        JobGraph([Job("a", "a"), Job("a", "a")])
    with pytest.raises(GraphError, match="cycle"):
        JobGraph([Job("a", "a", after=("b",)), Job("b", "b", after=("a",))])
    g = JobGraph([Job("a", "a"), Job("b", "b"), Job("c", "c", after=("a",))])
    assert g.deps == {"a": (), "b": ("a",), "c": ("a",)}  # default: the job listed before
    assert g.dependents("a") == ["b", "c"]
    assert [j.name for j in g.ready(done={"a"}, started=set())] == ["b", "c"]


def test_gpus_run_one_job_per_gpu_at_once(tmp_path):
    jobs = []
    for i in range(2):
        code = (f"import os, time, json; s = time.time(); time.sleep(1.0); "
                f"open({str(tmp_path / f'{i}.json')!r}, 'w').write(json.dumps("
                f"[os.environ['CUDA_VISIBLE_DEVICES'], s, time.time()]))")  # fmt: skip
        jobs.append(Job(f"j{i}", f"job {i}", [_py(code)], outputs=[tmp_path / f"{i}.json"], after=()))
    _driver(tmp_path / "out", jobs, gpus=("3", "5")).run()
    (g0, s0, e0), (g1, s1, e1) = (json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2))
    assert {g0, g1} == {"3", "5"}
    assert s1 < e0 and s0 < e1  # they overlapped in time


def test_an_interrupted_attempt_is_resubmitted_with_the_retry_command(tmp_path):
    target = tmp_path / "trained.txt"
    kill_self = _py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    job = Job("train", "train", [kill_self], retry_commands=[[*_py(f"open({str(target)!r}, 'w').write('x')"),
                                                             "--c"]], outputs=[target])  # fmt: skip
    _driver(tmp_path / "out", [job]).run()
    attempts = Journal.load(tmp_path / "out").attempts("train")
    assert [a["state"] for a in attempts] == ["interrupted", "done"]
    assert attempts[1]["retry"] and attempts[1]["commands"][0].endswith("--c")


def test_failing_job_stops_after_max_retries(tmp_path):
    job = Job("bad", "bad", [_py("import sys; sys.exit(4)")])
    for _ in range(2):  # the first run and one rerun may try
        with pytest.raises(JobError, match="exit status 4"):
            _driver(tmp_path / "out", [job], max_retries=1).run()
    with pytest.raises(JobError, match="failed 2 times"):
        _driver(tmp_path / "out", [job], max_retries=1).run()


def test_rerun_reattaches_to_a_running_local_job(tmp_path):
    target = tmp_path / "slow.txt"
    job = Job("slow", "slow", [_py(f"import time; time.sleep(1.5); open({str(target)!r}, 'w').write('ok')")],
              outputs=[target])  # fmt: skip
    first = _driver(tmp_path / "out", [job])
    first.run(wait=False)
    assert Journal.load(tmp_path / "out").state("slow") == "running" and not target.exists()
    second = _driver(tmp_path / "out", [job])
    second.executor.children.clear()
    second.run()
    journal = Journal.load(tmp_path / "out")
    assert journal.state("slow") == "done" and len(journal.attempts("slow")) == 1


def test_one_driver_per_study(tmp_path):
    journal = Journal(tmp_path)
    journal.lock()
    try:
        with pytest.raises(JournalError, match="another `recur` driver"):
            _driver(tmp_path, [Job("a", "a")]).run()
    finally:
        journal.unlock()


def test_dependent_job_waits_and_skips_when_done(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    jobs = [
        Job("b", "b", [_py(f"import pathlib; assert pathlib.Path({str(a)!r}).exists();"
                           f" open({str(b)!r}, 'w')")],
            outputs=[b], after=("a",)),
        Job("a", "a", [_py(f"import time; time.sleep(0.3); open({str(a)!r}, 'w')")], outputs=[a], after=()),
    ]  # fmt: skip
    _driver(tmp_path / "out", jobs, gpus=("0", "1")).run()
    assert b.exists()
    start = time.monotonic()
    results = _driver(tmp_path / "out", jobs).run()
    assert [r.status for r in results] == ["skipped", "skipped"] and time.monotonic() - start < 5


STUDY = """
[study]
folder = "out"
[datasets]
pretrain = 501
relapse = 502
[training]
seeds = 3
epochs = 2
device = "cpu"
[executor]
kind = "slurm"
[executor.slurm]
partition = "gpu"
setup = ["module load cuda", "source /opt/venv/bin/activate"]
sbatch = { constraint = "a100" }
[resources.train]
gpus_per_node = 1
mem_gb = 32
timeout_min = 1440
"""


def test_study_file_flags_override_and_slurm_profiles_merge(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(STUDY)
    cfg = st.load_study(f, {"seeds": 2, "kind": None})
    assert cfg.seeds == 2 and cfg.epochs == 2 and cfg.folder == tmp_path / "out"
    profiles = st.slurm_profiles(cfg.executor)
    train = profiles["train"].submitit_parameters()
    assert train["partition"] == "gpu" and train["gpus_per_node"] == 1 and train["mem"] == "32768MB"
    assert train["time"] == 1440 and train["setup"][1].startswith("source")
    assert train["additional_parameters"] == {"constraint": "a100"}
    assert "gpus_per_node" not in profiles["cpu"].submitit_parameters()
    assert st.load_study(f, {"kind": "local", "gpus": ("0", "1")}).executor.gpus == ("0", "1")


def test_study_file_errors_name_the_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[datasets]\npretrain = 501\n")
    with pytest.raises(st.StudyError, match=r"bad.toml: \[datasets\] relapse"):
        st.load_study(f)
    f.write_text("[datasets\n")
    with pytest.raises(st.StudyError, match="bad.toml: not valid TOML"):
        st.load_study(f)
    f.write_text(STUDY.replace('kind = "slurm"', 'kind = "pbs"'))
    with pytest.raises(st.StudyError, match="'local' or 'slurm'"):
        st.load_study(f)
    f.write_text(STUDY.replace("mem_gb = 32", "memory = 32"))
    with pytest.raises(st.StudyError, match="unknown Slurm setting"):
        st.slurm_profiles(st.load_study(f).executor)


def test_build_study_from_converted_datasets(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(STUDY)
    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res")}  # fmt: skip
    (tmp_path / "raw" / "Dataset502_Relapse").mkdir(parents=True)
    with pytest.raises(st.StudyError, match="no Dataset501_"):
        st.build_study(st.load_study(f), env, st.available_trainers())
    (tmp_path / "raw" / "Dataset501_HECKTOR").mkdir()
    jobs, _ = st.build_study(st.load_study(f), env, st.available_trainers())
    graph = JobGraph(jobs)
    assert [j.name for j in jobs if j.name.startswith("train_ai_finetune")] == [
        f"train_ai_finetune_seed{k}" for k in range(3)
    ]
    assert graph.deps["pretrain"] == () and graph.deps["train_ai_random_seed2"] == ()
    assert all(j.eager for j in jobs if j.name.startswith(("pretrain", "train_")))
    argv = graph.by_name["pretrain"].resolved_commands()[0]
    assert argv[:2] == ["nnUNetv2_train", "501"] and "nnUNetTrainerRecurPretrain_2epochs" in argv


def test_status_rows_show_training_progress(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (fold / "training_log_2026_1_1.txt").write_text(
        "Epoch 0\nval_dice (mean over validation cases) 0.12\nEpoch time: 3 s\n"
        "Epoch 1\nval_dice (mean over validation cases) 0.31\nEpoch time: 3 s\nEpoch 2\n"
    )
    assert training_progress(fold) == (2, pytest.approx(0.31))
    journal = Journal(tmp_path / "study")
    journal.data["order"] = ["train"]
    journal.set_state("train", "done", seconds=12.5, progress_dir=str(fold))
    journal.add_attempt("train", {"executor": "slurm", "job_id": "42", "node": "gpu07", "state": "done"})
    journal.save()
    (row,) = study_rows(tmp_path / "study")
    assert (row.job, row.state, row.job_id, row.node, row.elapsed, row.epochs) == (
        "train", "done", "42", "gpu07", 12.5, 2
    )  # fmt: skip


def test_cpu_jobs_can_run_in_the_driver_while_trainings_go_to_slurm(tmp_path):
    from nnunet_recur.workflow.executors.slurm import SlurmExecutor

    ex = st.ExecutorConfig(kind="slurm", cpu_jobs_in_driver=True, slurm={"partition": "gpu"})
    default, executor_for = st.make_executors(ex, tmp_path)
    train = Job("t", "t", resources="train")
    cpu = Job("c", "c", resources="cpu")
    assert isinstance(default, SlurmExecutor) and executor_for(train) is default
    assert isinstance(executor_for(cpu), LocalExecutor)
    _, all_slurm = st.make_executors(st.ExecutorConfig(kind="slurm"), tmp_path)
    assert isinstance(all_slurm(cpu), SlurmExecutor)
    assert st.ExecutorConfig(kind="slurm").poll_interval() > st.ExecutorConfig().poll_interval()


def test_a_finished_job_whose_command_changed_runs_again_with_the_jobs_after_it(tmp_path):
    """Regression: a rerun skipped every finished job, even one whose command had changed (a newer version
    of the tool adds an option), so the folder kept its old output beside the new ones of later jobs."""
    a, b, c = (tmp_path / n for n in ("a.txt", "b.txt", "c.txt"))

    def jobs(a_text: str):
        return [
            Job("a", "a", [_py(f"open({str(a)!r}, 'w').write({a_text!r})")], outputs=[a], after=()),
            Job("b", "b", [_py(f"open({str(b)!r}, 'w').write(open({str(a)!r}).read() + '+b')")],
                outputs=[b], after=("a",)),
            Job("c", "c", [_py(f"open({str(c)!r}, 'w').write('c')")], outputs=[c], after=()),
        ]  # fmt: skip

    _driver(tmp_path / "out", jobs("old")).run()
    assert b.read_text() == "old+b"
    stamp = c.stat().st_mtime_ns
    assert [r.status for r in _driver(tmp_path / "out", jobs("old")).run()] == ["skipped"] * 3  # unchanged
    driver = _driver(tmp_path / "out", jobs("new"))
    results = {r.name: r.status for r in driver.run()}
    assert results == {"a": "done", "b": "done", "c": "skipped"}, results
    assert a.read_text() == "new" and b.read_text() == "new+b" and c.stat().st_mtime_ns == stamp
    shown = driver.console.file.getvalue()
    assert "its command changed since it ran: runs again" in shown and "runs after a" in shown
    journal = Journal.load(tmp_path / "out")
    assert journal.entry("a")["restarted_at"] == 1 and journal.failed_attempts("a") == 0
