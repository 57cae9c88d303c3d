"""`recur study status`: one row per job from the journal, with live scheduler states and training progress.

Read-only: the driver owns the journal. Queued and running attempts are asked once of their executor
(squeue/scontrol for Slurm, the pid for a local job); a training's epochs and best validation Dice come from
its fold folder (nnU-Net's ``training_log_*.txt`` while it runs, ``recur_best.json`` when it ended).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_recur.workflow.journal import ACTIVE, DONE, Journal

_EPOCH_END = re.compile(r"Epoch time:")
_VAL_DICE = re.compile(r"val_dice \(mean over validation cases\)\s+([-+0-9.eE]+|nan)")


@dataclass
class JobRow:
    job: str
    state: str
    job_id: str
    node: str
    elapsed: float | None
    epochs: int | None
    best_dice: float | None
    attempts: int


def training_progress(fold_dir: Path) -> tuple[int | None, float | None]:
    """(epochs done, best validation Dice) of a training folder; None where nothing is known yet."""
    fold_dir = Path(fold_dir)
    best_file = fold_dir / "recur_best.json"
    logs = sorted(fold_dir.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    epochs = best = None
    if logs:
        text = logs[-1].read_text(errors="replace")
        epochs = len(_EPOCH_END.findall(text))
        values = [float(v) for v in _VAL_DICE.findall(text) if v != "nan"]
        best = max(values) if values else None
    try:
        data = json.loads(best_file.read_text())
        if epochs is None:
            epochs = int(data["epochs_trained"])
        if data.get("monitor") == "val_dice":
            best = float(data["best_metric"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return epochs, best


def _live(attempts_by_kind: dict[str, list[dict]], folder: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    if attempts_by_kind.get("slurm"):
        from nnunet_recur.workflow.executors.slurm import SlurmExecutor  # noqa: PLC0415

        out.update(SlurmExecutor(folder / "slurm", {}).poll(attempts_by_kind["slurm"]))
    if attempts_by_kind.get("local"):
        from nnunet_recur.workflow.executors.local import LocalExecutor  # noqa: PLC0415

        out.update(LocalExecutor().poll(attempts_by_kind["local"]))
    return out


def _job_start(attempt: dict) -> float | None:
    """When the job's commands started, from the file the job itself wrote (the driver may have been away)."""
    result = attempt.get("result", "")
    if not result.endswith(".result.json"):
        return None
    try:
        return float(
            json.loads(Path(result[: -len(".result.json")] + ".started.json").read_text())["started"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def study_rows(folder: Path) -> list[JobRow]:
    journal = Journal.load(folder)
    jobs = journal.data["jobs"]
    order = journal.data.get("order") or list(jobs)
    active: dict[str, list[dict]] = {}
    for name in order:
        attempt = journal.last_attempt(name)
        if journal.state(name) in ACTIVE and attempt:
            active.setdefault(attempt.get("executor", ""), []).append(attempt)
    live = _live(active, Path(folder))
    now = time.time()
    rows = []
    for name in order:
        entry = jobs.get(name, {})
        attempt = journal.last_attempt(name) or {}
        state = entry.get("state", "pending")
        status = live.get(attempt.get("job_id", "")) if state in ACTIVE else None
        node = attempt.get("node", "")
        if status is not None:
            state, node = status.state, status.node or node
        start = _job_start(attempt) or attempt.get("started") or attempt.get("submitted")
        end = attempt.get("ended") if state not in ACTIVE else None
        elapsed = ((end or now) - start) if start else None
        if state == DONE and entry.get("seconds") is not None:
            elapsed = float(entry["seconds"])
        epochs = best = None
        if entry.get("progress_dir"):
            epochs, best = training_progress(Path(entry["progress_dir"]))
        rows.append(
            JobRow(name, state, str(attempt.get("job_id", "")), node, elapsed, epochs, best,
                   len(entry.get("attempts", [])))
        )  # fmt: skip
    return rows
