"""The study journal: every job's attempts in one JSON file inside the study folder.

Why a journal: the driver may exit (or be killed) at any moment while jobs keep running on a cluster. The
journal is what a rerun reads to skip finished jobs, re-attach to running ones and resubmit failed ones. It
is rewritten whole under a temporary name and renamed (never half-written), and a lock file keeps two
drivers from working on one study at the same time.

Layout: ``{"version": 1, "jobs": {name: {"state": ..., "attempts": [{...}, ...], ...}}}``; an attempt holds
the executor, job id, node, commands, submit/start/end times, its final state and exit code.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic

JOURNAL_FILE = "journal.json"
LOCK_FILE = ".journal.lock"

# job states
PENDING, QUEUED, RUNNING, DONE, FAILED = "pending", "queued", "running", "done", "failed"
# attempt end states that are not the command's fault: the job is resubmitted (with --c for a training)
CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, LOST, INTERRUPTED = (
    "cancelled",
    "timeout",
    "preempted",
    "node_fail",
    "lost",
    "interrupted",
)
INFRASTRUCTURE = {CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, LOST, INTERRUPTED}
ACTIVE = {QUEUED, RUNNING}


class JournalError(RuntimeError):
    """The journal cannot be read or is locked by another driver."""


class Journal:
    """In-memory view of ``journal.json``; :meth:`save` writes it atomically."""

    def __init__(self, folder: Path, data: dict | None = None):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_FILE
        self.data = data or {"version": 1, "jobs": {}}
        self._lock_fh = None

    @classmethod
    def load(cls, folder: Path) -> Journal:
        path = Path(folder) / JOURNAL_FILE
        if not path.is_file():
            return cls(folder)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(f"{path}: unreadable journal ({exc}); move it away to start over") from exc
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise JournalError(f"{path}: not a recur study journal (no 'jobs' table)")
        return cls(folder, data)

    # -- locking: one driver per study ------------------------------------------------------------
    def lock(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = (self.folder / LOCK_FILE).open("w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise JournalError(
                f"{self.folder}: another `recur` driver is working on this study (lock {LOCK_FILE}); "
                "wait for it or stop it first"
            ) from None
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # -- entries ------------------------------------------------------------------------------------
    def entry(self, name: str) -> dict:
        return self.data["jobs"].setdefault(name, {"state": PENDING, "attempts": []})

    def state(self, name: str) -> str:
        return self.data["jobs"].get(name, {}).get("state", PENDING)

    def attempts(self, name: str) -> list[dict]:
        return self.entry(name)["attempts"]

    def last_attempt(self, name: str) -> dict | None:
        attempts = self.data["jobs"].get(name, {}).get("attempts", [])
        return attempts[-1] if attempts else None

    def failed_attempts(self, name: str) -> int:
        """Failed attempts since the job last started afresh (:meth:`restart`)."""
        attempts = self.attempts(name)[self.entry(name).get("restarted_at", 0) :]
        return sum(1 for a in attempts if a.get("state") == FAILED or a.get("state") in INFRASTRUCTURE)

    def restart(self, name: str, note: str) -> None:
        """Run a finished job again from scratch: pending, and its earlier failures no longer count (so
        neither the retry limit nor a retry command such as nnU-Net's ``--c`` applies)."""
        entry = self.entry(name)
        entry.update(state=PENDING, note=note, restarted_at=len(entry["attempts"]))

    def set_state(self, name: str, state: str, **fields) -> None:
        entry = self.entry(name)
        entry["state"] = state
        entry.update(fields)

    def add_attempt(self, name: str, attempt: dict) -> None:
        attempt.setdefault("submitted", time.time())
        self.attempts(name).append(attempt)

    def save(self) -> None:
        # indent 1, insertion order, no final newline: the bytes the journal always had
        write_json_atomic(self.path, self.data, indent=1, allow_nan=True, final_newline=False)
