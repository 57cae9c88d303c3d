"""The study file (TOML) of `recur study`: its sections and overrides, nnU-Net's folders, and the jobs it
builds (the format: the docstring of workflow/study.py and docs/cluster.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from nnunet_recur.device_choice import resolve_device
from nnunet_recur.nnunet_names import (
    DatasetNotFoundError,
    find_dataset_folder,
    job_environment,
)
from nnunet_recur.workflow.graph import Job
from nnunet_recur.workflow.study_jobs import (
    StudyLayout,
    StudyPlan,
    study_jobs,
)
from nnunet_recur.workflow.study_methods import (
    NNUNET_VARS,
    StudyError,
    pretrain_trainer_for,
    resolve_methods,
)

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"
    gpus: tuple[str, ...] = ()
    max_retries: int = 2
    slurm: Mapping[str, object] = field(default_factory=dict)  # defaults for every profile
    resources: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # train / predict / cpu
    cpu_jobs_in_driver: bool = False  # run selection, baselines and compare in the driver, not as jobs
    poll_seconds: float | None = None  # between two looks at the queue (default: local 0.2 s, Slurm 10 s)

    def poll_interval(self) -> float:
        if self.poll_seconds is not None:
            return float(self.poll_seconds)
        return 0.2 if self.kind == "local" else 10.0


@dataclass(frozen=True)
class StudyConfig:
    folder: Path
    relapse_id: int
    pretrain_id: int | None = None
    methods: tuple[str, ...] = ("AI random", "AI finetune")
    seeds: int = 5
    epochs: int = 0
    device: str = "cuda"
    save_probabilities: bool = True
    disable_tta: bool = False
    new_patient: Path | None = None  # [prediction] new_patient: a DICOM folder for `recur predict`
    suvmax_fold: int = 0
    paths: Mapping[str, str] = field(default_factory=dict)  # nnUNet_raw/preprocessed/results
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


def _section(data: dict, name: str, source: Path) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise StudyError(f"{source}: [{name}] must be a table")
    return value


def load_study(path: Path, overrides: Mapping[str, object] | None = None) -> StudyConfig:
    """Read a study TOML; ``overrides`` (from command-line flags) win over the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML ({exc})") from exc
    study = _section(data, "study", path)
    datasets = _section(data, "datasets", path)
    training = _section(data, "training", path)
    prediction = _section(data, "prediction", path)
    evaluation = _section(data, "evaluation", path)
    executor = _section(data, "executor", path)
    resources = _section(data, "resources", path)
    if "relapse" not in datasets:
        raise StudyError(f"{path}: [datasets] relapse (the relapse dataset id) is required")
    folder = Path(study.get("folder", path.with_suffix("").name))
    if not folder.is_absolute():
        folder = path.parent / folder
    gpus = executor.get("gpus", ())
    if isinstance(gpus, str):
        gpus = tuple(g.strip() for g in gpus.split(",") if g.strip())
    try:
        cfg = StudyConfig(
            folder=folder,
            relapse_id=int(datasets["relapse"]),
            pretrain_id=int(datasets["pretrain"]) if datasets.get("pretrain") is not None else None,
            methods=tuple(training.get("methods", ("AI random", "AI finetune"))),
            seeds=int(training.get("seeds", 5)),
            epochs=int(training.get("epochs", 0)),
            device=str(training.get("device", "cuda")),
            save_probabilities=bool(prediction.get("save_probabilities", True)),
            disable_tta=bool(prediction.get("disable_tta", False)),
            new_patient=_relative_to(path, prediction.get("new_patient")),
            suvmax_fold=int(evaluation.get("suvmax_fold", 0)),
            paths={k: str(v) for k, v in _section(data, "paths", path).items()},
            executor=ExecutorConfig(
                kind=str(executor.get("kind", "local")),
                gpus=tuple(str(g) for g in gpus),
                max_retries=int(executor.get("max_retries", 2)),
                slurm=dict(executor.get("slurm", {})),
                resources={k: dict(v) for k, v in resources.items()},
                cpu_jobs_in_driver=bool(executor.get("cpu_jobs_in_driver", False)),
                poll_seconds=float(executor["poll_seconds"]) if "poll_seconds" in executor else None,
            ),
        )
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{path}: {exc}") from exc
    return apply_overrides(cfg, overrides or {}, path)


def _relative_to(study_file: Path, value) -> Path | None:
    """A path from the study file, relative to the file's folder."""
    if value is None:
        return None
    p = Path(str(value))
    return p if p.is_absolute() else study_file.parent / p


def apply_overrides(cfg: StudyConfig, overrides: Mapping[str, object], source: Path) -> StudyConfig:
    study_keys = {f.name for f in fields(StudyConfig)}
    exec_keys = {f.name for f in fields(ExecutorConfig)}
    top = {k: v for k, v in overrides.items() if k in study_keys and v is not None}
    ex = {k: v for k, v in overrides.items() if k in exec_keys and v is not None}
    cfg = replace(cfg, **top)
    if ex:
        cfg = replace(cfg, executor=replace(cfg.executor, **ex))
    if cfg.executor.kind not in ("local", "slurm"):
        raise StudyError(f"{source}: [executor] kind must be 'local' or 'slurm', not {cfg.executor.kind!r}")
    if cfg.seeds < 1:
        raise StudyError(f"{source}: seeds must be at least 1")
    if cfg.device == "auto":  # what this machine's torch sees; jobs on Slurm nodes: cuda (device_choice.py)
        cfg = replace(cfg, device=resolve_device("auto", runs_here=cfg.executor.kind == "local"))
    if cfg.device not in ("cpu", "cuda", "mps"):
        raise StudyError(f"{source}: device must be auto, cpu, cuda or mps, not {cfg.device!r}")
    return cfg


def nnunet_paths(cfg: StudyConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """nnU-Net's three folders: the study file's [paths], else the exported variables."""
    env = {}
    for var in NNUNET_VARS:
        value = cfg.paths.get(var) or environ.get(var)
        if not value:
            raise StudyError(
                f"{var} is not set: export nnU-Net's folders or give them in [paths] of the study file"
            )
        env[var] = str(Path(value).resolve())
    return job_environment(env, environ)


def dataset_folder_name(raw: Path, dataset_id: int) -> str:
    """`DatasetXXX_Name` for an id, from the raw folder (without importing nnunetv2)."""
    try:
        return find_dataset_folder(raw, dataset_id).name
    except DatasetNotFoundError as exc:
        raise StudyError(f"nnUNet_raw: {exc}") from exc


def build_study(cfg: StudyConfig, env: Mapping[str, str], available: Iterable[str]) -> tuple[list[Job], str]:
    """(jobs, note) of a study file on datasets that are already converted and planned."""
    raw = Path(env["nnUNet_raw"])
    lay = StudyLayout(
        folder=cfg.folder,
        raw=raw,
        preprocessed=Path(env["nnUNet_preprocessed"]),
        results=Path(env["nnUNet_results"]),
        relapse_id=cfg.relapse_id,
        relapse_dataset=dataset_folder_name(raw, cfg.relapse_id),
        pretrain_id=cfg.pretrain_id,
        pretrain_dataset=dataset_folder_name(raw, cfg.pretrain_id) if cfg.pretrain_id is not None else None,
    )
    available = list(available)
    methods = resolve_methods(cfg.methods, cfg.epochs, available)
    pre_trainer, note = pretrain_trainer_for(cfg.epochs, available)
    # Keyword arguments alike in shape to other builders' (evaluation/compare_run.py): another class.
    plan = StudyPlan(
        methods=methods,
        pretrain_trainer=pre_trainer,
        seeds=cfg.seeds,
        device=cfg.device,
        save_probabilities=cfg.save_probabilities,
        disable_tta=cfg.disable_tta,
        suvmax_fold=cfg.suvmax_fold,
        new_patient=cfg.new_patient,
    )
    return study_jobs(lay, plan), note
