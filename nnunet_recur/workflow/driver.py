"""The one driver behind `recur demo`, `recur cv` and `recur study run`: submit what is ready, follow it,
record everything in the journal, and resume from the journal on the next run.

A rerun is a resume: finished jobs (journal says done, their outputs exist and the commands they ran are
still today's) are skipped, jobs still
queued or running are re-attached (polled by job id), and jobs that failed or were cancelled, pre-empted,
timed out or lost are resubmitted - a training with nnU-Net's ``--c`` - as long as the job has failed no
more than ``max_retries`` times. A command that exits with an error stops the driver with the command and
its log (what the user must fix); an attempt that ended for reasons outside the command (cancelled,
time-out, pre-emption, node failure) is resubmitted at once. A finished job whose command is no longer
today's (another version of this tool, or other options that the folder did not refuse) runs again, and so
does every job after it: keeping its old outputs would mix two runs in one report.

Every command is printed before it is submitted, shell-quoted, so the output is a tutorial: the same
commands typed by hand give the same study.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from nnunet_recur.workflow.executors import Executor, Submission
from nnunet_recur.workflow.graph import Job, JobGraph, quote_command
from nnunet_recur.workflow.jobrun import with_resume, write_json
from nnunet_recur.workflow.journal import (
    ACTIVE,
    DONE,
    FAILED,
    INFRASTRUCTURE,
    PENDING,
    QUEUED,
    RUNNING,
    Journal,
)

LOG_DIR = "logs"
JOBS_DIR = "jobs"
TIMINGS_FILE = "timings.json"
WITHDRAWN = "withdrawn"  # queued behind a dependency that failed; cancelled by the driver, not a failure


class JobError(RuntimeError):
    """A job failed: carries what the user needs to reproduce it."""

    def __init__(self, job: str, command: str, log: Path, reason: str):
        self.job, self.command, self.log, self.reason = job, command, log, reason
        super().__init__(f"job {job!r} failed ({reason}): {command}\n  log: {log}")


@dataclass
class JobResult:
    name: str
    status: str  # "done" (ran now) or "skipped" (complete from an earlier run)
    seconds: float


class Driver:
    """Runs a :class:`JobGraph` under ``folder`` (journal, ``logs/``, ``jobs/``) on the given executors.

    ``executor_for`` maps a job to its executor (by resource profile: trainings on Slurm, small CPU steps in
    the driver's local executor, ...). ``max_retries=None`` retries without limit (the interactive demo).
    """

    def __init__(
        self,
        graph: JobGraph,
        folder: Path,
        executor: Executor,
        env: Mapping[str, str] | None = None,
        console: Console | None = None,
        max_retries: int | None = 2,
        poll_seconds: float = 0.2,
        executor_for: Callable[[Job], Executor] | None = None,
    ):
        self.graph = graph
        self.folder = Path(folder)
        self.log_dir = self.folder / LOG_DIR
        self.jobs_dir = self.folder / JOBS_DIR
        self.executor = executor
        self.executor_for = executor_for or (lambda job: executor)
        self.env = dict(env or {})
        self.console = console or Console(highlight=False)
        self.max_retries = max_retries
        self.poll_seconds = poll_seconds
        self.journal = Journal(self.folder)
        self.results: list[JobResult] = []

    # -- bookkeeping -------------------------------------------------------------------------------
    def log_path(self, job: Job) -> Path:
        return self.log_dir / f"{job.name}.log"

    def header(self, job: Job) -> str:
        return f"[{self.graph.index(job.name) + 1}/{len(self.graph.jobs)}] {job.title}"

    def _record_timing(self, result: JobResult) -> None:
        """OUT/logs/timings.json: seconds of the run that completed each job (a skip keeps them)."""
        self.results.append(result)
        path = self.log_dir / TIMINGS_FILE
        try:
            timings = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            timings = {}
        seconds = result.seconds
        if result.status == "skipped":
            seconds = timings.get(result.name, {}).get("seconds", 0.0)
        timings[result.name] = {"last_run": result.status, "seconds": round(seconds, 2)}
        write_json(path, timings)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, wait: bool = True) -> list[JobResult]:
        """Drive the graph; with ``wait=False`` return as soon as nothing more can be submitted now."""
        self.journal = Journal.load(self.folder)
        self.journal.lock()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run(wait)
        except KeyboardInterrupt:
            for ex in {id(self.executor_for(j)): self.executor_for(j) for j in self.graph.jobs}.values():
                ex.stop_all()
            self._poll(self._active())
            raise
        finally:
            self.journal.save()
            self.journal.unlock()

    def _active(self) -> dict[str, dict]:
        return {
            j.name: self.journal.last_attempt(j.name)
            for j in self.graph.jobs
            if self.journal.state(j.name) in ACTIVE and self.journal.last_attempt(j.name)
        }

    def _run(self, wait: bool) -> list[JobResult]:
        self.journal.data["order"] = [j.name for j in self.graph.jobs]
        for job in self.graph.jobs:
            entry = self.journal.entry(job.name)
            entry["title"] = job.title
            if job.progress_dir is not None:
                entry["progress_dir"] = str(Path(job.progress_dir).resolve())
        for name, reason in self._commands_changed().items():
            self.journal.restart(name, reason)
            self.console.print(
                Text(f"{self.header(self.graph.by_name[name])} - {reason}: runs again", style="yellow"),
                soft_wrap=True,
            )
        done: set[str] = set()
        for job in self.graph.jobs:
            state = self.journal.state(job.name)
            outputs = job.resolved_outputs() if not callable(job.outputs) else None
            if state == DONE and job.outputs_exist():
                done.add(job.name)
            elif job.outputs_prove_done and outputs and job.outputs_exist():
                done.add(job.name)
                self.journal.set_state(job.name, DONE, note="outputs found (done outside this study)")
            elif state == DONE:  # an output was deleted: run it again
                self.journal.set_state(job.name, PENDING)
        for job in self.graph.jobs:
            if job.name in done:
                self.console.print(
                    Text(f"{self.header(job)} - already done, skipped", style="dim"), soft_wrap=True
                )
                if job.show:
                    job.show(self.console)
                self._record_timing(JobResult(job.name, "skipped", 0.0))
        active = self._active()
        if active:
            self.console.print(f"Re-attaching to {len(active)} queued/running job(s): {', '.join(active)}")
        self.journal.save()

        while True:
            done |= self._poll(active)
            active = self._active()
            submitted = self._submit_ready(done, active)
            active = self._active()
            if len(done) == len(self.graph.jobs):
                return self.results
            if not active and not submitted:
                blocked = [j.name for j in self.graph.jobs if j.name not in done]
                raise JobError(
                    blocked[0], "(waiting)", self.log_dir, "nothing can run: " + ", ".join(blocked)
                )
            if not wait and not submitted:
                self.console.print(
                    f"{len(active)} job(s) queued or running; the driver exits now. "
                    "Run the same command again to follow them (or `recur study status`)."
                )
                return self.results
            self._wait(active)

    def _commands_changed(self) -> dict[str, str]:
        """Finished jobs whose recorded commands are not today's, then every finished job after them;
        name -> why it runs again. nnU-Net's resume flag is not a change (a training's command gains ``--c``
        once a checkpoint exists, and its retry command has it). A job whose command cannot be built now
        (a lazy command reading a missing file) keeps its state."""
        changed: dict[str, str] = {}
        for job in self.graph.jobs:
            if self.journal.state(job.name) != DONE:
                continue
            ran = next((a for a in reversed(self.journal.attempts(job.name)) if a.get("state") == DONE), None)
            if ran is None or "commands" not in ran:  # done outside the study: nothing to compare
                continue
            try:
                today = [
                    _without_resume([quote_command(argv, job.env) for argv in job.resolved_commands(retry)])
                    for retry in (False, True)
                ]
            except (OSError, ValueError, KeyError):
                continue
            if _without_resume(ran["commands"]) not in today:
                changed[job.name] = "its command changed since it ran"
        for name in list(changed):
            for after in self.graph.dependents(name):
                if after not in changed and self.journal.state(after) == DONE:
                    changed[after] = f"it runs after {name}, whose command changed"
        return changed

    def _wait(self, active: dict[str, dict]) -> None:
        """Sleep one poll interval, showing what runs (elapsed time and the last log line)."""
        if not active:
            return
        names = list(active)
        job = self.graph.by_name[names[0]]
        started = active[names[0]].get("submitted", time.time())
        elapsed = format_seconds(time.time() - started)
        if len(names) == 1:
            line = f"{self.header(job)}  {elapsed}  {_last_line(self.log_path(job))}"
        else:
            line = f"{len(names)} jobs queued/running: {', '.join(names)}"
        if self.console.is_terminal:
            with self.console.status(Text(line[:160])):
                time.sleep(self.poll_seconds)
        else:
            time.sleep(self.poll_seconds)

    # -- following submitted jobs ------------------------------------------------------------------
    def _poll(self, active: dict[str, dict]) -> set[str]:
        newly_done: set[str] = set()
        groups: dict[int, tuple[Executor, list[tuple[str, dict]]]] = {}
        for name, attempt in active.items():
            ex = self.executor_for(self.graph.by_name[name])
            groups.setdefault(id(ex), (ex, []))[1].append((name, attempt))
        for ex, items in groups.values():
            statuses = ex.poll([a for _, a in items])
            for name, attempt in items:
                status = statuses.get(attempt["job_id"])
                if status is None or attempt["state"] == WITHDRAWN:  # withdrawn earlier in this round
                    continue
                job = self.graph.by_name[name]
                attempt["node"] = status.node or attempt.get("node", "")
                if status.state in ACTIVE:
                    if status.state == RUNNING and attempt["state"] != RUNNING:
                        attempt["started"] = time.time()
                    if status.state == QUEUED and attempt["state"] == RUNNING:
                        self._requeued(job, attempt)
                    attempt["state"] = status.state
                    self.journal.set_state(name, status.state)
                    if status.reason == "DependencyNeverSatisfied":
                        self._withdraw(name, attempt)
                    continue
                attempt["state"], attempt["rc"] = status.state, status.rc
                attempt["ended"] = status.ended or time.time()  # the job's own end time if it wrote one
                if status.started:
                    attempt["started"] = status.started
                if status.state == DONE:
                    self._finish(job, attempt)
                    newly_done.add(name)
                elif status.state in INFRASTRUCTURE:
                    self.journal.set_state(name, PENDING)
                    self.console.print(
                        Text(
                            f"{self.header(job)} - attempt {len(self.journal.attempts(name))} ended: "
                            f"{status.state} {status.reason}".rstrip()
                            + "; it will be resubmitted (training continues with --c)",
                            style="yellow",
                        ),
                        soft_wrap=True,
                    )
                    self._withdraw_dependents(name)
                else:
                    self.journal.set_state(name, FAILED)
                    self.journal.save()
                    shown = attempt.get("commands", ["?"])[-1]
                    raise JobError(name, shown, self.log_path(job), f"exit status {status.rc}")
                self.journal.save()
        return newly_done

    def _requeued(self, job: Job, attempt: dict) -> None:
        """A running job went back to the queue: the scheduler requeued it (submitit does after a time-out
        warning or pre-emption, once JobRun.checkpoint stopped the command); it runs again with --c."""
        attempt["requeues"] = attempt.get("requeues", 0) + 1
        self.console.print(
            Text(
                f"{self.header(job)} - job {attempt['job_id']} requeued by the scheduler (time limit or "
                "pre-emption); it runs again, a training with --c",
                style="yellow",
            ),
            soft_wrap=True,
        )

    def _withdraw(self, name: str, attempt: dict) -> None:
        """Cancel a queued job whose dependency failed; it is submitted again once that one succeeds."""
        self.executor_for(self.graph.by_name[name]).cancel(attempt)
        attempt["state"] = WITHDRAWN
        self.journal.set_state(name, PENDING)

    def _withdraw_dependents(self, name: str) -> None:
        for dep in self.graph.dependents(name):
            attempt = self.journal.last_attempt(dep)
            if self.journal.state(dep) == QUEUED and attempt:
                self._withdraw(dep, attempt)

    def _finish(self, job: Job, attempt: dict) -> None:
        """A job's commands succeeded: run its in-driver step, check its outputs, mark it done."""
        log = self.log_path(job)
        if job.action is not None:
            try:
                job.action()
            except Exception as exc:  # an in-process step: keep its message, point at the log
                with log.open("a") as fh:
                    fh.write(f"\n{type(exc).__name__}: {exc}\n")
                self.journal.set_state(job.name, FAILED)
                attempt["state"] = FAILED
                raise JobError(job.name, f"(step) {job.title}", log, str(exc)) from exc
        missing = [str(p) for p in job.resolved_outputs() if not p.exists()]
        if missing:
            attempt["state"] = FAILED
            self.journal.set_state(job.name, FAILED)
            last = attempt.get("commands", [job.title])[-1] if attempt.get("commands") else job.title
            raise JobError(job.name, last, log, "finished but did not write " + ", ".join(missing[:3]))
        begin = attempt.get("started") or attempt.get("submitted", time.time())  # run time, not queue time
        seconds = max(0.0, attempt.get("ended", time.time()) - begin)
        self.journal.set_state(job.name, DONE, seconds=round(seconds, 2))
        if job.show:
            job.show(self.console)
        label = self.header(job) if len(self._active()) > 1 or attempt.get("executor") != "local" else ""
        prefix = f"{label} " if label else "    "
        self.console.print(Text(f"{prefix}done in {format_seconds(seconds)}", style="dim"), soft_wrap=True)
        self._record_timing(JobResult(job.name, "done", seconds))

    # -- submitting --------------------------------------------------------------------------------
    def _candidates(self, done: set[str], active: dict[str, dict]) -> list[tuple[Job, list[str]]]:
        """(job, scheduler ids it must wait for): ready jobs, plus eager jobs behind queued dependencies."""
        out = []
        for job in self.graph.jobs:
            if job.name in done or job.name in active:
                continue
            waiting = [d for d in self.graph.deps[job.name] if d not in done]
            if not waiting:
                out.append((job, []))
                continue
            ex = self.executor_for(job)
            if (
                job.eager
                and ex.honours_dependencies
                and all(d in active and self.executor_for(self.graph.by_name[d]) is ex for d in waiting)
            ):
                out.append((job, [active[d]["job_id"] for d in waiting]))
        return out

    def _submit_ready(self, done: set[str], active: dict[str, dict]) -> int:
        submitted = 0
        for job, depends_on in self._candidates(done, active):
            failures = self.journal.failed_attempts(job.name)
            if self.max_retries is not None and failures > self.max_retries:
                raise JobError(
                    job.name,
                    (self.journal.last_attempt(job.name) or {}).get("commands", ["?"])[-1],
                    self.log_path(job),
                    f"failed {failures} times (--max-retries {self.max_retries}); fix the cause and rerun "
                    "with a higher --max-retries",
                )
            ex = self.executor_for(job)
            if ex.free_slots() <= 0:
                continue
            retry = failures > 0
            try:
                commands = job.resolved_commands(retry=retry)
            except (OSError, ValueError, KeyError) as exc:
                raise JobError(
                    job.name, f"(building the command of) {job.title}", self.log_path(job), str(exc)
                ) from exc
            note = f" - attempt {len(self.journal.attempts(job.name)) + 1}, resubmitted" if retry else ""
            self.console.print(Text(self.header(job) + note, style="bold cyan"), soft_wrap=True)
            shown = [quote_command(argv, job.env) for argv in commands]
            for line in shown:
                self.console.print(Text("$ " + line, style="green"), soft_wrap=True)  # copy-pastable
            if not commands:  # an in-driver step only
                attempt = {"executor": "driver", "job_id": "-", "state": RUNNING, "commands": []}
                self.journal.add_attempt(job.name, attempt)
                attempt["ended"] = time.time()
                attempt["state"] = DONE
                self._finish(job, attempt)
                done.add(job.name)
                submitted += 1
                continue
            submission = self._write_spec(job, commands, shown, depends_on)
            try:
                attempt = ex.submit(submission)
            except RuntimeError as exc:
                raise JobError(job.name, shown[-1], self.log_path(job), str(exc)) from exc
            attempt.update(
                commands=shown,
                result=str(submission.result_path),
                log=str(submission.log_path),
                depends_on=depends_on,
                retry=retry,
            )
            if depends_on:
                self.console.print(Text(f"    queued after job(s) {', '.join(depends_on)}", style="dim"))
            elif ex.kind != "local":
                self.console.print(Text(f"    submitted as {ex.kind} job {attempt['job_id']}", style="dim"))
            self.journal.add_attempt(job.name, attempt)
            self.journal.set_state(job.name, attempt["state"])
            self.journal.save()
            active[job.name] = attempt
            submitted += 1
        return submitted

    def _write_spec(self, job: Job, commands: list[list[str]], shown: list[str], depends_on: list[str]):
        n = len(self.journal.attempts(job.name)) + 1
        folder = (self.jobs_dir / job.name).resolve()
        base = folder / f"attempt{n}"
        env = dict(self.env)
        env.update(job.env)
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in env.get("PATH", os.environ.get("PATH", "")).split(os.pathsep):
            env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.environ.get("PATH", ""))
        spec = {
            "name": job.name,
            "title": job.title,
            "commands": commands,
            "shown": shown,
            "env": env,
            "cwd": os.getcwd(),
            "log": str(self.log_path(job).resolve()),
            "result": str(base) + ".result.json",
            "started": str(base) + ".started.json",
        }
        spec_path = Path(str(base) + ".spec.json")
        write_json(spec_path, spec)
        Path(spec["result"]).unlink(missing_ok=True)
        return Submission(
            name=job.name,
            spec_path=spec_path,
            result_path=Path(spec["result"]),
            started_path=Path(spec["started"]),
            log_path=Path(spec["log"]),
            resources=job.resources,
            depends_on=depends_on,
        )


# ------------------------------------------------------------------------------------------------
# Small helpers shared with the CLI


def _without_resume(commands: list[str]) -> list[str]:
    """Shown commands with every nnU-Net training in its resumed form (jobrun.with_resume: ``--c``, no
    ``-pretrained_weights``), so that a training compares equal to its own continuation."""
    out = []
    for command in commands:
        tokens = shlex.split(command)
        train = next((i for i, t in enumerate(tokens) if Path(t).name == "nnUNetv2_train"), None)
        out.append(command if train is None else shlex.join(tokens[:train] + with_resume(tokens[train:])))
    return out


def _last_line(log: Path, max_bytes: int = 4096) -> str:
    """Last non-empty line of a log (for the live status line)."""
    try:
        with log.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def log_tail(log: Path, n: int = 15) -> str:
    """The last ``n`` lines of a log, for the failure message."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def format_seconds(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def report_failure(console: Console, err: JobError) -> None:
    """What a user needs after a failed job: the command to rerun by hand and where its log is."""
    console.print(Text(f"\nJob {err.job} failed ({err.reason}).", style="bold red"))
    console.print(Text("Command:  ", style="bold") + Text(err.command))
    console.print(Text("Log:      ", style="bold") + Text(str(err.log)))
    tail = log_tail(err.log) if err.log.is_file() else ""
    if tail:
        console.print(Text("Last lines of the log:", style="bold"))
        console.print(Text(tail, style="dim"))
    console.print("Fix the cause and run the same command again: finished jobs are skipped.")
