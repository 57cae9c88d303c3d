"""Resumable pipelines built from public command lines.

A :class:`Stage` is one step a user could type by hand: a name, the exact commands (argv lists of the
stock ``nnUNetv2_*``, ``recur`` and ``recur-eval`` tools), the files that prove it finished, and a log
file.  :class:`StageRunner` prints each command (shell-quoted, so it can be pasted into a terminal),
runs it as a subprocess with its output in ``OUT/logs/<stage>.log`` and writes a done-marker only after
the commands succeeded *and* the expected files exist.  A rerun therefore skips finished stages, and
an interrupted or failed stage simply runs again.  A failure stops the pipeline with the command that
failed and the path of its log.

Why subprocesses and not in-process calls: the demo must be a faithful tutorial, so what it runs is
exactly what it prints; nnU-Net also starts worker processes and holds global state that is safer in
a fresh process per step.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

Argv = list[str]
CommandSource = Sequence[Argv] | Callable[[], Sequence[Argv]]
PathSource = Sequence[Path] | Callable[[], Sequence[Path]]

MARKER_DIR = ".stages"
LOG_DIR = "logs"
TIMINGS_FILE = "timings.json"


@dataclass
class Stage:
    """One resumable step of a pipeline.

    ``commands`` and ``outputs`` may be callables: they are evaluated when the stage runs, after the
    earlier stages finished, so a command can use a value an earlier stage produced (the best SUVmax
    percentage, the best seed) and training can add ``--c`` when a checkpoint is already there.
    ``action`` is an in-process step (reading a JSON file, picking a seed) that runs after the
    commands; ``show`` prints a result for the user after success and also when the stage is skipped.
    """

    name: str
    title: str
    commands: CommandSource = ()
    outputs: PathSource = ()
    env: Mapping[str, str] = field(default_factory=dict)
    action: Callable[[], None] | None = None
    show: Callable[[Console], None] | None = None
    outputs_prove_done: bool = (
        False  # complete when the outputs exist, even without a marker (work done by hand)
    )

    def resolved_commands(self) -> list[Argv]:
        cmds = self.commands() if callable(self.commands) else self.commands
        return [list(map(str, c)) for c in cmds]

    def resolved_outputs(self) -> list[Path]:
        outs = self.outputs() if callable(self.outputs) else self.outputs
        return [Path(p) for p in outs]


class StageError(RuntimeError):
    """A stage failed: carries what the user needs to reproduce it."""

    def __init__(self, stage: str, command: str, log: Path, reason: str):
        self.stage, self.command, self.log, self.reason = stage, command, log, reason
        super().__init__(f"stage {stage!r} failed ({reason}): {command}\n  log: {log}")


@dataclass
class StageResult:
    name: str
    status: str  # "done" (ran now) or "skipped" (complete from an earlier run)
    seconds: float


def quote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Shell-quoted command as a user would type it (extra environment variables as a prefix)."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(prefix + [shlex.join(argv)])


def _resolve_executable(name: str) -> str:
    """Prefer the tool installed beside the running Python (the project's venv), then PATH.

    `make demo` runs `.venv/bin/recur` without activating the venv, so `nnUNetv2_train` is not on
    PATH; running the printed short name from the same venv keeps the tutorial and the run identical.
    """
    if os.sep in name:
        return name
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return name


class StageRunner:
    """Runs stages in order under ``out_dir``; logs in ``out_dir/logs``, markers in ``out_dir/.stages``."""

    def __init__(
        self,
        out_dir: Path,
        env: Mapping[str, str] | None = None,
        console: Console | None = None,
        poll_seconds: float = 0.2,
    ):
        self.out_dir = Path(out_dir)
        self.log_dir = self.out_dir / LOG_DIR
        self.marker_dir = self.out_dir / MARKER_DIR
        base = dict(os.environ)
        base.update(env or {})
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in base.get("PATH", "").split(os.pathsep):
            base["PATH"] = bin_dir + os.pathsep + base.get("PATH", "")
        self.env = base
        self.console = console or Console(highlight=False)
        self.poll_seconds = poll_seconds

    # -- completion bookkeeping -------------------------------------------------------------------
    def marker(self, stage: Stage) -> Path:
        return self.marker_dir / f"{stage.name}.done"

    def log_path(self, stage: Stage) -> Path:
        return self.log_dir / f"{stage.name}.log"

    def is_complete(self, stage: Stage) -> bool:
        outputs = stage.resolved_outputs()
        if stage.outputs_prove_done and outputs and all(p.exists() for p in outputs):
            return True
        if not self.marker(stage).is_file():
            return False
        return all(p.exists() for p in outputs)

    def _write_marker(self, stage: Stage, commands: list[Argv], seconds: float) -> None:
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        payload = {"stage": stage.name, "commands": [shlex.join(c) for c in commands], "seconds": seconds}
        tmp = self.marker(stage).with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, self.marker(stage))

    def _record_timing(self, result: StageResult) -> None:
        """OUT/logs/timings.json: seconds of the run that completed each stage (a skip keeps them)."""
        path = self.log_dir / TIMINGS_FILE
        timings = json.loads(path.read_text()) if path.is_file() else {}
        seconds = result.seconds
        if result.status == "skipped":
            seconds = timings.get(result.name, {}).get("seconds", 0.0)
        timings[result.name] = {"last_run": result.status, "seconds": round(seconds, 2)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(timings, indent=1))
        os.replace(tmp, path)

    # -- running ----------------------------------------------------------------------------------
    def run(self, stages: Sequence[Stage]) -> list[StageResult]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for i, stage in enumerate(stages, 1):
            header = f"[{i}/{len(stages)}] {stage.title}"
            if self.is_complete(stage):
                self.console.print(Text(f"{header} - already done, skipped", style="dim"), soft_wrap=True)
                if stage.show:
                    stage.show(self.console)
                result = StageResult(stage.name, "skipped", 0.0)
            else:
                self.console.print(Text(header, style="bold cyan"), soft_wrap=True)
                result = self.run_stage(stage, header)
            results.append(result)
            self._record_timing(result)
        return results

    def run_stage(self, stage: Stage, header: str = "") -> StageResult:
        start = time.monotonic()
        self.marker(stage).unlink(missing_ok=True)
        log = self.log_path(stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:  # earlier (failed, interrupted) attempts stay above
            fh.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} {stage.title}\n")
        commands = stage.resolved_commands()
        env = dict(self.env)
        env.update(stage.env)
        for argv in commands:
            shown = quote_command(argv, stage.env)
            self.console.print(Text("$ " + shown, style="green"), soft_wrap=True)  # copy-pastable
            rc = self._run_command(argv, env, log, shown, header or stage.title)
            if rc != 0:
                raise StageError(stage.name, shown, log, f"exit status {rc}")
        if stage.action is not None:
            try:
                stage.action()
            except Exception as exc:  # an in-process step: keep its message, point at the log
                with log.open("a") as fh:
                    fh.write(f"\n{type(exc).__name__}: {exc}\n")
                raise StageError(stage.name, f"(step) {stage.title}", log, str(exc)) from exc
        missing = [str(p) for p in stage.resolved_outputs() if not p.exists()]
        if missing:
            last = quote_command(commands[-1], stage.env) if commands else stage.title
            raise StageError(stage.name, last, log, "finished but did not write " + ", ".join(missing[:3]))
        seconds = time.monotonic() - start
        self._write_marker(stage, commands, seconds)
        if stage.show:
            stage.show(self.console)
        self.console.print(Text(f"    done in {_format_seconds(seconds)}", style="dim"))
        return StageResult(stage.name, "done", seconds)

    def _run_command(self, argv: Argv, env: Mapping[str, str], log: Path, shown: str, header: str) -> int:
        with log.open("a") as fh:
            fh.write(f"$ {shown}\n")
            fh.flush()
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    [_resolve_executable(argv[0]), *argv[1:]],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=dict(env),
                    cwd=os.getcwd(),
                )
            except FileNotFoundError:
                fh.write(f"command not found: {argv[0]}\n")
                return 127
            try:
                with self.console.status(header) as status:
                    while proc.poll() is None:
                        elapsed = _format_seconds(time.monotonic() - start)
                        status.update(Text(f"{header}  {elapsed}  {_last_line(log)}"[:160]))
                        time.sleep(self.poll_seconds)
            except KeyboardInterrupt:
                _stop(proc)
                fh.write("\ninterrupted (Ctrl-C)\n")
                raise
            return proc.returncode


def _stop(proc: subprocess.Popen) -> None:
    """End a child that the user interrupted; the stage stays incomplete and reruns next time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def _format_seconds(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def report_failure(console: Console, err: StageError) -> None:
    """What a user needs after a failed stage: the command to rerun by hand and where its log is."""
    console.print(Text(f"\nStage {err.stage} failed ({err.reason}).", style="bold red"))
    console.print(Text("Command:  ", style="bold") + Text(err.command))
    console.print(Text("Log:      ", style="bold") + Text(str(err.log)))
    tail = log_tail(err.log)
    if tail:
        console.print(Text("Last lines of the log:", style="bold"))
        console.print(Text(tail, style="dim"))
    console.print("Fix the cause and run the same command again: finished stages are skipped.")
