"""What runs on the machine that executes a job (a local child process or a Slurm node).

A job is written by the driver as a small JSON spec (commands, extra environment, log and result paths);
:func:`run_spec` runs its commands one after another with their output appended to the job's log, and
writes the result file (exit code, node, times) under a temporary name then renames it. The result file is
the job's own word on how it ended: the driver trusts it over any scheduler state (with Slurm accounting
off, ``sacct`` and therefore submitit cannot tell how a job ended).

``python -m nnunet_recur.workflow.jobrun SPEC.json`` is how the local executor starts a job; the Slurm
executor submits :class:`JobRun` through submitit, whose ``checkpoint`` hook (called by submitit when Slurm
signals a time-out or pre-emption) stops nnU-Net and requeues the same job with ``--c``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic

RESUME_FLAG = "--c"


def read_spec(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, data: dict) -> None:
    """A job's spec/status file: indent 1, no final newline (the bytes it always had)."""
    write_json_atomic(Path(path), data, indent=1, allow_nan=True, final_newline=False)


def resolve_executable(name: str) -> str:
    """Prefer the tool installed beside the running Python (the project's venv), then PATH.

    `make demo` runs `.venv/bin/recur` without activating the venv, so `nnUNetv2_train` is not on PATH;
    running the printed short name from the same venv keeps the tutorial and the run identical.
    """
    if os.sep in name:
        return name
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return name


def with_resume(argv: list[str]) -> list[str]:
    """A training command continued from its latest checkpoint (nnU-Net's ``--c``)."""
    if argv and Path(argv[0]).name == "nnUNetv2_train" and RESUME_FLAG not in argv:
        # nnU-Net refuses --c together with -pretrained_weights; the checkpoint holds those weights
        out, skip = [], False
        for a in argv:
            if skip:
                skip = False
                continue
            if a == "-pretrained_weights":
                skip = True
                continue
            out.append(a)
        return [*out, RESUME_FLAG]
    return list(argv)


class _Running:
    """The child process of the command being run, so that a signal handler can stop it."""

    proc: subprocess.Popen | None = None


def run_spec(spec: dict, resume: bool = False) -> int:
    """Run the spec's commands in order; stop at the first non-zero exit. Returns the exit code."""
    log = Path(spec["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(spec.get("env", {}))
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    started = time.time()
    node = socket.gethostname()
    if spec.get("started"):
        write_json(Path(spec["started"]), {"node": node, "pid": os.getpid(), "started": started})
    rc = 0
    with log.open("a") as fh:
        fh.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.get('title', spec['name'])} on {node}\n")
        for argv in spec["commands"]:
            argv = with_resume(argv) if resume else argv
            fh.write(f"$ {shlex.join(argv)}\n")
            fh.flush()
            try:
                _Running.proc = subprocess.Popen(
                    [resolve_executable(argv[0]), *argv[1:]],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=spec.get("cwd") or None,
                )
            except FileNotFoundError:
                fh.write(f"command not found: {argv[0]}\n")
                rc = 127
                break
            try:
                rc = _Running.proc.wait()
            except KeyboardInterrupt:
                stop_child()
                fh.write("\ninterrupted (Ctrl-C)\n")
                rc = 130
            _Running.proc = None
            if rc != 0:
                break
    if spec.get("result"):
        write_json(Path(spec["result"]), {"rc": rc, "node": node, "started": started, "ended": time.time()})
    return rc


def stop_child(timeout: float = 15) -> None:
    """Stop the running command: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Called from signal handlers (submitit's time-out warning calls :meth:`JobRun.checkpoint`) while the main
    thread may be inside ``Popen.wait()``, which holds the Popen's wait lock: waiting through the Popen
    there deadlocks (the job then hangs until Slurm kills it), so the child is reaped with ``os.waitpid``.
    """
    proc = _Running.proc
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    deadline = time.monotonic() + timeout
    while not _reaped(proc, block=False):
        if time.monotonic() >= deadline:
            proc.kill()
            _reaped(proc, block=True)
            return
        time.sleep(0.1)


def _reaped(proc: subprocess.Popen, block: bool) -> bool:
    try:
        pid, status = os.waitpid(proc.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped already
        return True
    if pid == 0:
        return False
    proc.returncode = os.waitstatus_to_exitcode(status)
    return True


class JobRun:
    """The callable submitit runs on a Slurm node: one job spec; a non-zero exit raises (job FAILED).

    On a time-out or pre-emption submitit calls :meth:`checkpoint`: nnU-Net is stopped (it keeps
    ``checkpoint_latest.pth``) and the same Slurm job is requeued to continue with ``--c``.
    """

    def __init__(self, spec_path: str, resume: bool = False):
        self.spec_path = str(spec_path)
        self.resume = resume

    def __call__(self) -> int:
        spec = read_spec(Path(self.spec_path))
        rc = run_spec(spec, resume=self.resume)
        if rc != 0:
            raise RuntimeError(f"job {spec['name']} failed with exit status {rc}; log: {spec['log']}")
        return rc

    def checkpoint(self, *args, **kwargs):
        import submitit  # noqa: PLC0415 - only on a Slurm node

        stop_child()
        return submitit.helpers.DelayedSubmission(JobRun(self.spec_path, resume=True))


def _terminate(signum, frame):  # a local job stopped by `kill`: stop the command, record the end
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m nnunet_recur.workflow.jobrun SPEC.json [--resume]", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    return run_spec(read_spec(Path(args[0])), resume="--resume" in args[1:])


if __name__ == "__main__":
    sys.exit(main())
