"""Executors from the study file's [executor] section: local (one job per GPU) or Slurm, one per resource
profile, and which of them runs each job."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from nnunet_recur.workflow.graph import CPU, PREDICT, TRAIN
from nnunet_recur.workflow.study_file import (
    ExecutorConfig,
)
from nnunet_recur.workflow.study_methods import (
    StudyError,
)


def slurm_profiles(ex: ExecutorConfig):
    """{train, predict, cpu, default}: [executor.slurm] defaults with [resources.<stage>] on top."""
    from nnunet_recur.workflow.executors.slurm import SlurmResources  # noqa: PLC0415

    known = {f.name for f in fields(SlurmResources)}
    profiles = {}
    for name in ("default", TRAIN, PREDICT, CPU):
        merged = {**ex.slurm, **(ex.resources.get(name, {}) if name != "default" else {})}
        merged = {("additional" if k == "sbatch" else k): v for k, v in merged.items()}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise StudyError(
                f"unknown Slurm setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if isinstance(merged.get("setup"), str):
            merged["setup"] = [merged["setup"]]
        profiles[name] = SlurmResources(**merged)
    return profiles


def make_executors(ex: ExecutorConfig, folder: Path):
    """(executor, executor_for): where each job runs, by its resource profile."""
    from nnunet_recur.workflow.executors.local import LocalExecutor  # noqa: PLC0415

    if ex.kind == "local":
        local = LocalExecutor(ex.gpus)
        return local, lambda job: local
    from nnunet_recur.workflow.executors.slurm import SlurmExecutor  # noqa: PLC0415

    slurm = SlurmExecutor(Path(folder).resolve() / "slurm", slurm_profiles(ex))
    if not ex.cpu_jobs_in_driver:
        return slurm, lambda job: slurm
    driver_side = LocalExecutor()
    return slurm, lambda job: driver_side if job.resources == CPU else slurm
