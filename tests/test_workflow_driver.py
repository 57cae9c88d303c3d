"""The driver on the local executor: order, resume after failure, journal only on success, failure report."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from nnunet_recur.workflow.driver import Driver
from nnunet_recur.workflow.driver import JobError as StageError
from nnunet_recur.workflow.executors.local import LocalExecutor
from nnunet_recur.workflow.graph import Job as Stage
from nnunet_recur.workflow.graph import JobGraph, quote_command
from nnunet_recur.workflow.journal import Journal

PY = sys.executable


class _Runner:
    """The driver with the local executor, run like the old stage runner (list in, results out)."""

    def __init__(self, out: Path, buf: io.StringIO):
        self.out, self.buf = out, buf

    def driver(self, stages) -> Driver:
        console = Console(file=self.buf, width=200)
        return Driver(JobGraph(stages), self.out, LocalExecutor(), console=console, poll_seconds=0.01)

    def run(self, stages):
        return self.driver(stages).run()

    def is_complete(self, stage) -> bool:
        return Journal.load(self.out).state(stage.name) == "done" and stage.outputs_exist()


def _runner(out: Path) -> tuple[_Runner, io.StringIO]:
    buf = io.StringIO()
    return _Runner(out, buf), buf


def _done(out: Path, name: str) -> bool:
    return Journal.load(out).state(name) == "done"


def _write(path: Path, text: str) -> list[str]:
    return [PY, "-c", f"import pathlib; pathlib.Path({str(path)!r}).write_text({text!r})"]


def test_stages_run_in_order_print_commands_and_skip_on_rerun(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    stages = [
        Stage("01_a", "write a", [_write(a, "A")], outputs=[a]),
        Stage("02_b", "write b", [_write(b, "B"), [PY, "-c", "print('hello from b')"]], outputs=[b]),
    ]
    runner, buf = _runner(tmp_path / "out")
    results = runner.run(stages)
    assert [r.status for r in results] == ["done", "done"]
    assert a.read_text() == "A" and b.read_text() == "B"
    printed = buf.getvalue()
    assert "$ " + quote_command(_write(a, "A")) in printed
    log = (tmp_path / "out" / "logs" / "02_b.log").read_text()
    assert "hello from b" in log and log.startswith("===== ") and "\n$ " in log
    journal = json.loads((tmp_path / "out" / "journal.json").read_text())
    assert journal["jobs"]["02_b"]["state"] == "done"
    assert len(journal["jobs"]["02_b"]["attempts"][-1]["commands"]) == 2

    a.write_text("changed")  # a skipped stage must not run again
    runner2, buf2 = _runner(tmp_path / "out")
    results2 = runner2.run(stages)
    assert [r.status for r in results2] == ["skipped", "skipped"]
    assert a.read_text() == "changed"
    assert "already done" in buf2.getvalue()
    timings = json.loads((tmp_path / "out" / "logs" / "timings.json").read_text())
    assert set(timings) == {"01_a", "02_b"}
    assert (
        timings["02_b"]["last_run"] == "skipped" and timings["02_b"]["seconds"] > 0
    )  # first run's time kept


def test_failing_stage_reports_command_and_log_and_writes_no_marker(tmp_path):
    flag = tmp_path / "ok.flag"
    out_file = tmp_path / "result.txt"
    # fails until the flag file exists: simulates a stage fixed between two runs
    script = (
        "import pathlib, sys\n"
        f"if not pathlib.Path({str(flag)!r}).exists():\n"
        "    print('boom: input broken'); sys.exit(3)\n"
        f"pathlib.Path({str(out_file)!r}).write_text('ok')\n"
    )
    first = tmp_path / "first.txt"
    stages = [
        Stage("01_first", "first", [_write(first, "1")], outputs=[first]),
        Stage("02_flaky", "flaky", [[PY, "-c", script]], outputs=[out_file]),
        Stage("03_after", "after", [[PY, "-c", "pass"]]),
    ]
    runner, _ = _runner(tmp_path / "out")
    with pytest.raises(StageError) as err:
        runner.run(stages)
    e = err.value
    assert e.job == "02_flaky"
    assert e.command.startswith(quote_command([PY, "-c", script])[:20])
    assert e.log == tmp_path / "out" / "logs" / "02_flaky.log"
    assert "boom: input broken" in e.log.read_text()
    assert "exit status 3" in str(e)
    assert not _done(tmp_path / "out", "02_flaky")
    assert not _done(tmp_path / "out", "03_after")

    flag.write_text("")
    runner2, _ = _runner(tmp_path / "out")
    results = runner2.run(stages)
    assert [r.status for r in results] == ["skipped", "done", "done"]
    assert out_file.read_text() == "ok"
    log = e.log.read_text()  # the failed attempt's output is kept above the successful one
    assert log.count("===== ") == 2 and log.index("boom") < log.rindex("===== ")


def test_success_without_expected_output_is_a_failure(tmp_path):
    missing = tmp_path / "never.txt"
    runner, _ = _runner(tmp_path / "out")
    with pytest.raises(StageError, match="did not write"):
        runner.run([Stage("01_quiet", "quiet", [[PY, "-c", "pass"]], outputs=[missing])])
    assert not _done(tmp_path / "out", "01_quiet")


def test_deleted_output_makes_a_done_stage_run_again(tmp_path):
    a = tmp_path / "a.txt"
    stages = [Stage("01_a", "write a", [_write(a, "A")], outputs=[a])]
    runner, _ = _runner(tmp_path / "out")
    runner.run(stages)
    a.unlink()
    assert [r.status for r in runner.run(stages)] == ["done"]
    assert a.exists()


def test_lazy_commands_action_and_stage_env(tmp_path):
    value = tmp_path / "value.txt"
    value.write_text("7")
    seen = []
    target = tmp_path / "target.txt"
    stages = [
        Stage(
            "01_lazy",
            "lazy",
            lambda: [[PY, "-c", f"import os; open({str(target)!r}, 'w').write(os.environ['RECUR_X'])"]],
            outputs=lambda: [target],
            env={"RECUR_X": "from-env"},
            action=lambda: seen.append(value.read_text()),
        )
    ]
    runner, buf = _runner(tmp_path / "out")
    runner.run(stages)
    assert target.read_text() == "from-env"
    assert seen == ["7"]
    assert "RECUR_X=from-env " in buf.getvalue()


def test_failing_action_is_reported(tmp_path):
    def broken():
        raise ValueError("no validation summary for seed 0")

    runner, _ = _runner(tmp_path / "out")
    with pytest.raises(StageError, match="no validation summary"):
        runner.run([Stage("01_pick", "pick seed", action=broken)])
    assert not _done(tmp_path / "out", "01_pick")
    assert "no validation summary" in (tmp_path / "out" / "logs" / "01_pick.log").read_text()


def test_missing_executable_fails_cleanly(tmp_path):
    runner, _ = _runner(tmp_path / "out")
    with pytest.raises(StageError, match="exit status 127"):
        runner.run([Stage("01_x", "x", [["definitely-not-a-command-recur"]])])


def test_outputs_prove_done_skips_work_done_by_hand(tmp_path):
    done_by_hand = tmp_path / "checkpoint_final.pth"
    done_by_hand.write_text("trained on the cluster")
    stage = Stage("01_train", "train", [_write(done_by_hand, "retrained")], outputs=[done_by_hand])
    runner, _ = _runner(tmp_path / "out")
    assert not runner.is_complete(stage)  # a plain job needs its journal entry
    stage.outputs_prove_done = True
    assert [r.status for r in runner.run([stage])] == ["skipped"]
    assert done_by_hand.read_text() == "trained on the cluster"
