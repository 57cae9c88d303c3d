"""Executors decide *where* a job's commands run; the graph and the journal decide *what* and *when*.

Every executor takes a job spec (see :mod:`nnunet_recur.workflow.jobrun`) and reports attempt states in the
journal's words (queued, running, done, failed, cancelled, timeout, ...). ``local`` runs jobs as child
processes of the driver (one at a time, or one per listed GPU); ``slurm`` submits them through submitit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class AttemptStatus:
    """What an executor knows about one attempt right now."""

    state: str  # a journal state: queued, running, done, failed, or an INFRASTRUCTURE end state
    node: str = ""
    rc: int | None = None
    reason: str = ""  # the scheduler's reason for a queued job (e.g. Dependency, DependencyNeverSatisfied)
    started: float | None = None  # when the commands started and ended, by the job's own clock (result file)
    ended: float | None = None


@dataclass
class Submission:
    """A job ready to run: its spec file (commands, env, log, result), resource profile, dependencies."""

    name: str
    spec_path: Path
    result_path: Path
    started_path: Path
    log_path: Path
    resources: str
    depends_on: list[str]  # executor job ids that must end successfully first (Slurm afterok)


class Executor(Protocol):
    kind: str
    honours_dependencies: bool  # True: the scheduler itself holds a job until its dependencies succeed

    def free_slots(self) -> int: ...

    def submit(self, sub: Submission) -> dict: ...

    def poll(self, attempts: list[dict]) -> dict[str, AttemptStatus]: ...

    def cancel(self, attempt: dict) -> None: ...


def status_from_result(result_path: Path) -> AttemptStatus | None:
    """The job's own word (jobrun's result file), if it wrote one."""
    from nnunet_recur.workflow.jobrun import read_spec  # noqa: PLC0415
    from nnunet_recur.workflow.journal import DONE, FAILED, INTERRUPTED  # noqa: PLC0415

    try:
        result = read_spec(result_path)
    except (OSError, ValueError):
        return None
    rc = int(result.get("rc", 1))
    state = DONE if rc == 0 else INTERRUPTED if rc in (130, 143, -15, -2) else FAILED
    return AttemptStatus(
        state,
        node=str(result.get("node", "")),
        rc=rc,
        started=result.get("started"),
        ended=result.get("ended"),
    )
