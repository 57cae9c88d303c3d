"""Run per-patient jobs in worker processes that neither sink the batch when one dies nor outlive the run.

Shared by the converter (`recur convert`, one job per patient) and the prediction (`recur predict
--workers`, one job per patient folder); standard library only.

Why not a plain ProcessPoolExecutor: when one worker dies (the out-of-memory killer, kill -9) every
pending future fails with BrokenProcessPool, so one patient's death took the whole batch with it, and a
killed parent left its workers running for minutes. Here:

- each job writes a marker (its key, under the worker's pid) when it starts and removes it when it ends;
  when the executor breaks it sends SIGTERM to the surviving workers, whose handler removes their
  marker first, so the markers left are exactly the jobs whose worker died: those are reported with
  the `oom/killed` result and not retried (a job that exhausts memory would do it again), and the pool
  is rebuilt for every other unfinished job;
- each worker asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG, Linux) and, as
  a fallback elsewhere, checks at every job that its parent is still the one that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

PR_SET_PDEATHSIG = 1

_marker_dir: Path | None = None
_parent_pid: int | None = None


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux prctl); exit now if the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: `_check_parent` at every job is the fallback
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def pid_alive(pid: int) -> bool:
    """A process with this id exists (someone else's counts: signal 0 is refused, not failed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _marker() -> Path | None:
    return _marker_dir / str(os.getpid()) if _marker_dir is not None else None


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """Terminated by the executor (a sibling died): remove our marker, so we are not taken for the victim."""
    marker = _marker()
    if marker is not None:
        marker.unlink(missing_ok=True)
    os._exit(128 + signal.SIGTERM)


def init_worker(parent_pid: int, marker_dir: str, initializer: Callable | None = None) -> None:
    global _marker_dir, _parent_pid
    _marker_dir, _parent_pid = Path(marker_dir), parent_pid
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if initializer is not None:
        initializer()


def _check_parent() -> None:
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)


def _tracked(key: str, function: Callable, args: tuple):
    """Run one job with its marker in place."""
    _check_parent()
    marker = _marker()
    if marker is not None:
        marker.write_text(key)
    try:
        return function(*args)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def run_jobs(
    jobs: list[tuple[str, Callable, tuple]],
    workers: int,
    on_result: Callable[[str, dict], None],
    killed_result: Callable[[str], dict],
    failed_result: Callable[[str, BaseException], dict],
    *,
    initializer: Callable | None = None,
    advance: Callable[[], None] = lambda: None,
) -> list[str]:
    """Run `jobs` (key, function, args) on `workers` processes; call `on_result(key, result)` for each.

    A job whose worker died gets `killed_result(key)`; a job that raised in a way the function did not
    catch (a pickling error, say) gets `failed_result(key, exc)`. Returns the keys of the killed jobs.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pending = list(jobs)
    killed: list[str] = []
    rebuilds = 0
    with tempfile.TemporaryDirectory(prefix="recur_workers_") as marker_root:
        while pending:
            marker_dir = Path(marker_root) / f"round{rebuilds}"
            marker_dir.mkdir()
            done: set[str] = set()
            broken = False
            with ProcessPoolExecutor(
                max_workers=min(workers, len(pending)),
                mp_context=context,
                initializer=init_worker,
                initargs=(os.getpid(), str(marker_dir), initializer),
            ) as pool:
                futures = {pool.submit(_tracked, key, fn, args): key for key, fn, args in pending}
                for future in as_completed(futures):
                    key = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as exc:  # noqa: BLE001 - recorded for this job, the batch goes on
                        result = failed_result(key, exc)
                    done.add(key)
                    on_result(key, result)
                    advance()
            if not broken:
                break
            victims = {m.read_text() for m in marker_dir.iterdir() if m.read_text()} - done
            rebuilds += 1
            if not victims and rebuilds > len(jobs):  # nothing identifiable and no progress: give up
                victims = {key for key, _, _ in pending} - done
            for key in sorted(victims):
                killed.append(key)
                on_result(key, killed_result(key))
                advance()
            pending = [job for job in pending if job[0] not in done and job[0] not in victims]
    return killed
