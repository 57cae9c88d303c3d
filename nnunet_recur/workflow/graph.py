"""The job graph shared by `recur demo`, `recur cv` and `recur study`: jobs, their dependencies, readiness.

A :class:`Job` is one step a user could type by hand: a name, the exact commands (argv lists of the stock
``nnUNetv2_*``, ``recur`` and ``recur-eval`` tools), the files that prove it finished, and the jobs it must
wait for.  The graph knows nothing about *where* a job runs (that is an executor's business, see
:mod:`nnunet_recur.workflow.executors`) nor how a stage computes (that is the command's business).

``commands`` and ``outputs`` may be callables: they are evaluated when the job is submitted, after the jobs it
depends on finished, so a command can use a value an earlier job produced (the best SUVmax percentage, the
best seed).  ``retry_commands`` is what a resubmission runs after a failed or pre-empted attempt (training
adds nnU-Net's ``--c``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

Argv = list[str]
CommandSource = Sequence[Argv] | Callable[[], Sequence[Argv]]
PathSource = Sequence[Path] | Callable[[], Sequence[Path]]

# resource profiles an executor maps onto its own settings (GPUs, CPUs, memory, time limit)
TRAIN, PREDICT, CPU = "train", "predict", "cpu"
PREVIOUS = "<previous>"  # default dependency: the job listed just before (a plain pipeline)


@dataclass
class Job:
    """One resumable step of a study.

    ``after`` names the jobs that must finish first; the default is the job listed just before, so a plain
    list of jobs is a pipeline.  ``eager`` allows an executor that honours dependencies itself (Slurm
    ``afterok``) to queue the job before its dependencies finished: only for jobs whose commands do not
    read what the dependencies write.  ``action`` is an in-process step (reading a JSON file, linking
    predictions) and always runs in the driver after the commands; ``show`` prints a result for the user
    after success and also when the job is skipped.  ``progress_dir`` is a training's fold folder, read by
    `recur study status` (epochs done, best validation Dice).
    """

    name: str
    title: str
    commands: CommandSource = ()
    outputs: PathSource = ()
    env: Mapping[str, str] = field(default_factory=dict)
    action: Callable[[], None] | None = None
    show: Callable[[Console], None] | None = None
    outputs_prove_done: bool = False  # complete when the outputs exist, even without a journal entry
    after: Sequence[str] | None = (PREVIOUS,)
    resources: str = CPU
    eager: bool = False
    retry_commands: CommandSource | None = None
    progress_dir: Path | None = None

    def resolved_commands(self, retry: bool = False) -> list[Argv]:
        source = self.retry_commands if retry and self.retry_commands is not None else self.commands
        cmds = source() if callable(source) else source
        return [list(map(str, c)) for c in cmds]

    def resolved_outputs(self) -> list[Path]:
        outs = self.outputs() if callable(self.outputs) else self.outputs
        return [Path(p) for p in outs]

    def outputs_exist(self) -> bool:
        try:
            return all(p.exists() for p in self.resolved_outputs())
        except (OSError, ValueError, KeyError):  # a lazy output list that reads a file not written yet
            return False


class GraphError(ValueError):
    """The jobs do not form a valid graph (unknown dependency, duplicate name, cycle)."""


class JobGraph:
    """Jobs in their listed order (the order a one-at-a-time executor runs them), with dependencies."""

    def __init__(self, jobs: Iterable[Job]):
        self.jobs: list[Job] = list(jobs)
        self.by_name: dict[str, Job] = {}
        for job in self.jobs:
            if job.name in self.by_name:
                raise GraphError(f"two jobs are named {job.name!r}")
            self.by_name[job.name] = job
        self.deps: dict[str, tuple[str, ...]] = {}
        for i, job in enumerate(self.jobs):
            deps = []
            for dep in job.after or ():
                if dep == PREVIOUS:
                    if i > 0:
                        deps.append(self.jobs[i - 1].name)
                elif dep not in self.by_name:
                    raise GraphError(f"job {job.name!r} waits for an unknown job {dep!r}")
                else:
                    deps.append(dep)
            self.deps[job.name] = tuple(dict.fromkeys(deps))
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise GraphError("dependency cycle: " + " -> ".join((*path, name)))
            state[name] = 1
            for dep in self.deps[name]:
                visit(dep, (*path, name))
            state[name] = 2

        for job in self.jobs:
            visit(job.name, ())

    def index(self, name: str) -> int:
        return next(i for i, j in enumerate(self.jobs) if j.name == name)

    def dependents(self, name: str) -> list[str]:
        """Jobs that wait for `name`, directly or through others."""
        found: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for job in self.jobs:
                if current in self.deps[job.name] and job.name not in found:
                    found.append(job.name)
                    frontier.append(job.name)
        return found

    def ready(self, done: set[str], started: set[str]) -> list[Job]:
        """Jobs not yet started whose dependencies are all done, in listed order."""
        return [
            j
            for j in self.jobs
            if j.name not in done and j.name not in started and all(d in done for d in self.deps[j.name])
        ]


def quote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Shell-quoted command as a user would type it (extra environment variables as a prefix)."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(prefix + [shlex.join(argv)])
