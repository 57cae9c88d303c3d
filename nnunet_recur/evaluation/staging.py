"""Reports that are complete or absent, never partial, stale or mixed.

A command writes its whole report into a hidden staging folder inside OUT, and only when everything
is written swaps it in: the files the command owns are removed from OUT (those of any earlier run,
also ones this run does not produce, e.g. a `capture_curve.csv` that a rerun without curves would
otherwise leave behind), then the staged files are moved in with `os.replace`. Files the command does
not own (another command's report, a `cases.txt` beside it) are never touched, so two commands can
share a folder.

`OUT/<command>.status.json` says what happened where the report lives:

- `running`: written before any work. A run killed at any point leaves it (with its pid), so an
  earlier report still in OUT is visibly not the result of the last run;
- `failed`: the run stopped on an error (the message is recorded); the earlier report, if any, is
  untouched but flagged by this status;
- `complete`: the staged report was swapped in; lists its files.

Staging folders of dead runs are removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nnunet_recur.evaluation.volumes import EvaluationError, write_json
from nnunet_recur.worker_pool import pid_alive

STAGING_PREFIX = ".staging-"


def status_path(out: Path, command: str) -> Path:
    return Path(out) / f"{command}.status.json"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _clean_dead_staging(out: Path, command: str) -> None:
    for folder in out.glob(f".{command}{STAGING_PREFIX}*"):
        try:
            pid = int(folder.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextmanager
def staged_report(out: Path, command: str, owned: tuple[str, ...]) -> Iterator[Path]:
    """Yield a fresh staging folder; on success swap it into `out`, on error record the failure.

    `owned`: every file or folder name the command may write into OUT.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"{out}: cannot create the report folder ({exc.strerror or exc})") from exc
    _clean_dead_staging(out, command)
    status = status_path(out, command)
    started = _now()
    base = {"command": command, "pid": os.getpid(), "started": started, "argv": list(sys.argv)}
    write_json(status, {**base, "state": "running"})
    stage = out / f".{command}{STAGING_PREFIX}{os.getpid()}"
    _remove(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        write_json(
            status,
            {
                **base,
                "state": "failed",
                "finished": _now(),
                "error": message,
                "note": "this run failed: any report files in this folder come from an earlier run",
            },
        )
        raise
    written = sorted(p.name for p in stage.iterdir())
    unexpected = [name for name in written if name not in owned]
    if unexpected:  # a programming error: the swap would not clean these on the next run
        raise RuntimeError(f"{command}: staged files not declared as owned: {', '.join(unexpected)}")
    for name in owned:  # old report first, so an interruption leaves a partial new one, never a mix
        _remove(out / name)
    for name in written:
        os.replace(stage / name, out / name)
    stage.rmdir()
    write_json(status, {**base, "state": "complete", "finished": _now(), "files": written})


def read_status(out: Path, command: str) -> dict | None:
    path = status_path(out, command)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
