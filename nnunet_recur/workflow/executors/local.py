"""Jobs as child processes of the driver: one after another, or one per GPU with ``--gpus 0,1``.

Each job runs ``python -m nnunet_recur.workflow.jobrun SPEC.json``; with GPUs listed, the job gets
``CUDA_VISIBLE_DEVICES`` set to the GPU of its slot, so nnU-Net's ``-device cuda`` uses that GPU only.
A rerun of the driver re-attaches to a job whose process is still alive (by pid, from the journal) and reads
how a finished one ended from its result file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from nnunet_recur.worker_pool import pid_alive
from nnunet_recur.workflow.executors import AttemptStatus, Submission, status_from_result
from nnunet_recur.workflow.jobrun import read_spec, write_json
from nnunet_recur.workflow.journal import LOST, RUNNING


def _alive(pid: int, spec_path: str = "") -> bool:
    """Is `pid` still the job runner of this spec (not ended, not a zombie, not a reused pid)?"""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split(")")[-1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return not spec_path or spec_path.encode() in fh.read()
    except OSError:
        return True


class LocalExecutor:
    kind = "local"
    honours_dependencies = False

    def __init__(self, gpus: Sequence[str] = ()):
        self.gpus = [str(g) for g in gpus]
        self.slots = max(1, len(self.gpus))
        self.children: dict[str, subprocess.Popen] = {}
        self.slot_of: dict[str, int] = {}

    def _busy_slots(self) -> set[int]:
        for pid, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[pid]
                self.slot_of.pop(pid, None)
        return set(self.slot_of.values())

    def free_slots(self) -> int:
        return self.slots - len(self._busy_slots())

    def submit(self, sub: Submission) -> dict:
        busy = self._busy_slots()
        slot = next(i for i in range(self.slots) if i not in busy)
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot]
            spec = read_spec(sub.spec_path)  # recorded in the log's command environment too
            spec.setdefault("env", {})["CUDA_VISIBLE_DEVICES"] = self.gpus[slot]
            write_json(sub.spec_path, spec)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nnunet_recur.workflow.jobrun", str(sub.spec_path)],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        job_id = str(proc.pid)
        self.children[job_id] = proc
        self.slot_of[job_id] = slot
        attempt = {"executor": self.kind, "job_id": job_id, "state": RUNNING, "spec": str(sub.spec_path)}
        if self.gpus:
            attempt["gpu"] = self.gpus[slot]
        return attempt

    def poll(self, attempts: list[dict]) -> dict[str, AttemptStatus]:
        out = {}
        for a in attempts:
            job_id = a["job_id"]
            proc = self.children.get(job_id)
            running = proc.poll() is None if proc is not None else _alive(int(job_id), a.get("spec", ""))
            if running:
                out[job_id] = AttemptStatus(RUNNING, node=os.uname().nodename)
                continue
            self._busy_slots()
            status = status_from_result(a["result"])
            out[job_id] = status or AttemptStatus(LOST, reason="the process ended without a result file")
        return out

    def cancel(self, attempt: dict) -> None:
        proc = self.children.get(attempt["job_id"])
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        """Ctrl-C in the driver: the children got SIGINT too; wait until they wrote their result."""
        for job_id in list(self.children):
            self.cancel({"job_id": job_id})
