"""Jobs as Slurm jobs, submitted through submitit; states from squeue/scontrol plus the job's result file.

Each job is one ``sbatch`` job (built by submitit: resources, setup lines, extra ``#SBATCH`` parameters)
that runs :class:`nnunet_recur.workflow.jobrun.JobRun`, which runs the job's public commands (the stock
``nnUNetv2_train`` for a training) with the ``nnUNet_*`` variables exported. A job that may wait for others
is queued with ``--dependency=afterok:<ids>``, so Slurm honours the order even after the driver exited.

Why not submitit's own job state: it asks ``sacct``, which fails on clusters without accounting
(``AccountingStorageType=accounting_storage/none``), and then reports UNKNOWN. Here the state comes from
``squeue`` (which lists finished jobs for ``MinJobAge`` seconds), then ``scontrol show job``, and finally
from the result file every job writes when it ends; a job none of them knows is "lost" and resubmitted.
"""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_recur.workflow.executors import AttemptStatus, Submission, status_from_result
from nnunet_recur.workflow.journal import (
    CANCELLED,
    DONE,
    FAILED,
    LOST,
    NODE_FAIL,
    PREEMPTED,
    QUEUED,
    RUNNING,
    TIMEOUT,
)

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_ENDED = {
    "CANCELLED": CANCELLED,
    "TIMEOUT": TIMEOUT,
    "PREEMPTED": PREEMPTED,
    "NODE_FAIL": NODE_FAIL,
    "BOOT_FAIL": NODE_FAIL,
    "FAILED": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "DEADLINE": TIMEOUT,
    "COMPLETED": DONE,
}


class SlurmError(RuntimeError):
    """sbatch/squeue could not be run or refused a job."""


@dataclass
class SlurmResources:
    """One resource profile (train, predict, cpu): what a user would write in #SBATCH lines."""

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    account: str | None = None
    qos: str | None = None
    setup: list[str] = field(default_factory=list)  # module loads, venv activation
    additional: dict[str, str] = field(default_factory=dict)  # extra #SBATCH parameters

    def submitit_parameters(self) -> dict:
        # submitit's warning signal (USR2, default 90 s before the limit) must come after the job started:
        # a warning due at once kills a job (requeued ones too) before submitit installed its handler
        warning_s = max(10, min(90, int(self.timeout_min) * 60 // 4))
        params: dict = {"time": int(self.timeout_min), "signal_delay_s": warning_s}
        for key in ("partition", "cpus_per_task", "account", "qos"):
            value = getattr(self, key)
            if value not in (None, ""):
                params[key] = value
        if self.gpus_per_node:
            params["gpus_per_node"] = int(self.gpus_per_node)
        if self.mem_gb:
            params["mem"] = f"{int(round(float(self.mem_gb) * 1024))}MB"
        if self.setup:
            params["setup"] = list(self.setup)
        if self.additional:
            params["additional_parameters"] = dict(self.additional)
        return params


class SlurmExecutor:
    kind = "slurm"
    honours_dependencies = True

    def __init__(self, folder: Path, profiles: Mapping[str, SlurmResources], python: str | None = None):
        self.folder = Path(folder)
        self.profiles = dict(profiles)
        self.python = python or sys.executable

    def free_slots(self) -> int:
        return 1_000_000  # the scheduler queues; the driver submits whatever is ready

    def submit(self, sub: Submission) -> dict:
        import submitit  # noqa: PLC0415 - only the Slurm executor needs it

        from nnunet_recur.workflow.jobrun import JobRun  # noqa: PLC0415

        profile = self.profiles.get(sub.resources) or self.profiles.get("default") or SlurmResources()
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", python=self.python, max_num_timeout=3)
        params = profile.submitit_parameters()
        params["job_name"] = f"recur-{sub.name}"
        if sub.depends_on:
            params["dependency"] = "afterok:" + ":".join(sub.depends_on)
        executor.update_parameters(**params)
        try:
            job = executor.submit(JobRun(str(sub.spec_path)))
        except (subprocess.CalledProcessError, OSError, FileNotFoundError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            raise SlurmError(f"sbatch refused job {sub.name}: {exc} {detail}".strip()) from exc
        return {"executor": self.kind, "job_id": str(job.job_id), "state": QUEUED}

    # -- states ---------------------------------------------------------------------------------------
    def _squeue(self) -> dict[str, tuple[str, str, str, str]]:
        """{job id: (STATE, nodes, elapsed, reason)} of this user's jobs, finished ones included."""
        proc = subprocess.run(
            ["squeue", "-h", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%N|%M|%r"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SlurmError(f"squeue failed: {proc.stderr.strip() or proc.returncode}")
        rows = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 5:
                rows[parts[0]] = (parts[1], parts[2], parts[3], parts[4])
        return rows

    @staticmethod
    def _scontrol(job_id: str) -> tuple[str, str, str] | None:
        proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        fields = dict(kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv)
        state = fields.get("JobState", "")
        return (state, fields.get("NodeList", ""), fields.get("Reason", "")) if state else None

    def poll(self, attempts: list[dict]) -> dict[str, AttemptStatus]:
        try:
            queue = self._squeue()
        except (SlurmError, FileNotFoundError):
            queue = None  # controller unreachable: keep the journal's states, try again later
        out: dict[str, AttemptStatus] = {}
        for a in attempts:
            job_id = a["job_id"]
            if queue is None:
                continue
            row = queue.get(job_id)
            if row is None:
                found = self._scontrol(job_id)
                row = (found[0], found[1], "", found[2]) if found else None
            result = status_from_result(Path(a["result"])) if a.get("result") else None
            if row is None:  # forgotten by the controller: the job's own result file decides
                out[job_id] = result or AttemptStatus(LOST, reason="unknown to squeue and scontrol")
                continue
            state, node, elapsed, reason = row
            state = state.split()[0].rstrip("+")
            node = "" if node in ("(null)", "None assigned") else node
            if state in _QUEUED:
                out[job_id] = AttemptStatus(QUEUED, node=node, reason=reason)
            elif state in _RUNNING:
                # a job that wrote success is done; any other end waits for Slurm's final state, which
                # tells a time-out (the command was killed: rc -15) from a failure
                if state == "COMPLETING" and result is not None and result.state == DONE:
                    out[job_id] = result
                else:
                    out[job_id] = AttemptStatus(RUNNING, node=node)
            else:
                mapped = _ENDED.get(state, FAILED)
                if mapped in (DONE, FAILED) and result is not None:
                    result.node = result.node or node
                    out[job_id] = result
                elif mapped == DONE:
                    out[job_id] = AttemptStatus(LOST, node=node, reason="COMPLETED without a result file")
                else:
                    out[job_id] = AttemptStatus(mapped, node=node, reason=state)
            out[job_id].reason = out[job_id].reason or reason
        return out

    def cancel(self, attempt: dict) -> None:
        subprocess.run(["scancel", attempt["job_id"]], capture_output=True)

    def stop_all(self) -> None:
        """Ctrl-C in the driver leaves Slurm jobs running: a rerun re-attaches to them."""
