"""`recur study`: the paper's study as a job graph, described once in a small TOML file.

    pretrain (HECKTOR) ──> AI finetune seed 0..K-1 ──> best seed ──> predict test ─┐
    AI random seed 0..K-1 ─────────────────────────> best seed ──> predict test ─┤
    SUVmax sweep (validation) -> SUVmax baseline, GTV baseline ───────────────────┴─> compare (Table 1)

Seeds: nnU-Net has no seed flag. The converter's ``--split paper`` writes five *identical* folds, and the
trainers seed themselves from the fold number, so fold k is "seed k". The best seed is chosen by the one rule
of the project, :func:`nnunet_recur.trainers.seeds.select_best_seed`, run as the public command
``recur best-seed ID -tr TRAINER`` (it writes ``seed_selection.json`` in the model folder); its fold is
then given to ``nnUNetv2_predict -f``.

A study file (every key optional except the datasets; see docs/cluster.md)::

    [study]
    folder = "study_paper"        # journal, logs, predictions, report
    [datasets]
    pretrain = 501                # HECKTOR (GTVp); leave out to train AI random only
    relapse = 502                 # the in-house relapse dataset (recur convert inhouse --split paper)
    [training]
    methods = ["AI random", "AI finetune"]   # + "PublishedCode random", "PublishedCode finetune"
    seeds = 5
    epochs = 0                    # 0 = the paper's recipe; N picks nnUNetTrainerRecur_<N>epochs
    device = "cuda"
    [prediction]
    save_probabilities = true
    disable_tta = false
    new_patient = "dicom/patient_017"  # optional: also run `recur predict` on one DICOM patient folder
    [evaluation]
    suvmax_fold = 0               # validation fold of the SUVmax-threshold sweep
    [executor]
    kind = "slurm"                # or "local" (with gpus = "0,1" for one job per GPU)
    max_retries = 2
    [executor.slurm]              # defaults for every job (resources.* override per stage)
    partition = "gpu"
    setup = ["module load cuda/12.1", "source ~/venvs/recur/bin/activate"]
    [resources.train]
    gpus_per_node = 1
    cpus_per_task = 8
    mem_gb = 32
    timeout_min = 1440
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from nnunet_recur.nnunet_names import (
    CONFIGURATION,
    FOLDER_VARIABLES,
    DatasetNotFoundError,
    ext_trainer_value,
    find_dataset_folder,
    job_environment,
    model_folder,
)
from nnunet_recur.nnunet_names import PLANS_NAME as PLANS
from nnunet_recur.workflow.cpu_env import cpu_training_env
from nnunet_recur.workflow.graph import CPU, PREDICT, TRAIN, Job

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRETRAIN_TRAINER = "nnUNetTrainerRecurPretrain"
PRETRAIN_FOLD = 0
PAPER_MAX_EPOCHS = 1000
NNUNET_VARS = FOLDER_VARIABLES


class StudyError(ValueError):
    """The study file or the datasets do not allow the study; the message names the file and the problem."""


@dataclass(frozen=True)
class MethodSpec:
    """A CNN method of Table 1: a trainer family, with or without the HECKTOR pre-trained weights."""

    key: str  # folder-safe name
    label: str  # the paper's name, used in Table 1
    base_trainer: str
    pretrained: bool


METHODS = {
    "AI random": MethodSpec("ai_random", "AI random", "nnUNetTrainerRecur", False),
    "AI finetune": MethodSpec("ai_finetune", "AI finetune", "nnUNetTrainerRecurFinetune", True),
    "PublishedCode random": MethodSpec(
        "published_random", "PublishedCode random", "nnUNetTrainerRecurPublishedCode", False
    ),
    "PublishedCode finetune": MethodSpec(
        "published_finetune", "PublishedCode finetune", "nnUNetTrainerRecurPublishedCodeFinetune", True
    ),
}


@dataclass(frozen=True)
class Method:
    """A method with its resolved trainer class name."""

    key: str
    label: str
    trainer: str
    pretrained: bool


# ------------------------------------------------------------------------------------------------
# Trainer names: nnU-Net has no epoch flag, so N epochs means the variant `<trainer>_<N>epochs`


def epoch_variants(base: str, available: Iterable[str]) -> dict[int, str]:
    """{N: name} for every `<base>_<N>epochs` class in `available`."""
    pattern = re.compile(re.escape(base) + r"_(\d+)epochs")
    return {int(m.group(1)): n for n in available if (m := pattern.fullmatch(n))}


def full_recipe(epochs: int) -> bool:
    return epochs <= 0 or epochs == PAPER_MAX_EPOCHS


def trainer_for(base: str, epochs: int, available: Iterable[str]) -> str:
    """The trainer class running `epochs` epochs of `base` (0 or 1000 = the recipe itself)."""
    if full_recipe(epochs):
        return base
    variants = epoch_variants(base, available)
    if epochs not in variants:
        options = ", ".join(str(n) for n in sorted(variants)) or "none"
        raise StudyError(
            f"epochs = {epochs}: nnunet_recur.trainers has no {base}_{epochs}epochs; "
            f"available: {options} (or 0 for the paper's full recipe)"
        )
    return variants[epochs]


def pretrain_trainer_for(epochs: int, available: Iterable[str]) -> tuple[str, str]:
    """(trainer, note): pre-training (only a warm start) uses `_<N>epochs` when it exists, else the longest
    variant shorter than N, else the shortest one."""
    if full_recipe(epochs):
        return PRETRAIN_TRAINER, ""
    pre = epoch_variants(PRETRAIN_TRAINER, available)
    if epochs in pre:
        return pre[epochs], ""
    if not pre:
        raise StudyError(f"nnunet_recur.trainers has no {PRETRAIN_TRAINER}_<N>epochs variant")
    shorter = [n for n in pre if n <= epochs]
    m = max(shorter) if shorter else min(pre)
    return pre[m], f"pre-training runs {m} epochs ({pre[m]})"


def available_trainers() -> list[str]:
    """Trainer class names that nnunet_recur.trainers exports to nnUNet_extTrainer.

    Read from the literal ``__all__`` of ``trainers/variants.py`` without importing it: the import pulls in
    torch and nnunetv2 (~1 GB resident) into a process that only launches subprocesses.
    """
    import ast  # noqa: PLC0415

    import nnunet_recur  # noqa: PLC0415

    source = Path(nnunet_recur.__file__).parent / "trainers" / "variants.py"
    try:
        tree = ast.parse(source.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "__all__" for t in node.targets
            ):
                return [str(n) for n in ast.literal_eval(node.value)]
    except (OSError, SyntaxError, ValueError):
        pass
    from nnunet_recur.trainers import variants  # noqa: PLC0415 - fallback: the real module

    return list(variants.__all__)


def resolve_methods(labels: Iterable[str], epochs: int, available: Iterable[str]) -> list[Method]:
    available = list(available)
    out = []
    for label in labels:
        spec = METHODS.get(label)
        if spec is None:
            raise StudyError(f"unknown method {label!r}; choose from {', '.join(METHODS)}")
        out.append(
            Method(spec.key, spec.label, trainer_for(spec.base_trainer, epochs, available), spec.pretrained)
        )
    return out


def ext_trainer_path() -> str:
    """What `recur env` exports as nnUNet_extTrainer (ours first, keeping the user's folders)."""
    return ext_trainer_value(os.environ)


# ------------------------------------------------------------------------------------------------
# The layout of one study: where nnU-Net's folders and the study's own outputs are


@dataclass(frozen=True)
class StudyLayout:
    """Every folder the study reads or writes (paths as they are printed in the commands)."""

    folder: Path
    raw: Path
    preprocessed: Path
    results: Path
    relapse_id: int
    relapse_dataset: str  # DatasetXXX_Name
    pretrain_id: int | None = None
    pretrain_dataset: str | None = None

    @property
    def relapse_raw(self) -> Path:
        return self.raw / self.relapse_dataset

    @property
    def splits(self) -> Path:
        return self.preprocessed / self.relapse_dataset / "splits_final.json"

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions"

    @property
    def report(self) -> Path:
        return self.folder / "report"

    def model_dir(self, dataset: str, trainer: str) -> Path:
        return model_folder(self.results, dataset, trainer)

    def fold_dir(self, dataset: str, trainer: str, fold: int) -> Path:
        return self.model_dir(dataset, trainer) / f"fold_{fold}"


@dataclass(frozen=True)
class StudyPlan:
    """What the study runs (resolved trainer names) and how."""

    methods: list[Method]
    pretrain_trainer: str
    seeds: int
    device: str
    save_probabilities: bool = True
    disable_tta: bool = False
    suvmax_fold: int = 0
    train_env: Mapping[str, str] = field(default_factory=dict)  # extra variables for nnUNetv2_train
    # `recur predict` on one new patient (a DICOM folder, or a callable giving it once the data exist)
    new_patient: Path | Callable[[], Path] | None = None
    new_patient_method: str = "ai_random"  # the key of the method whose model predicts it


def nnunet_job_env(device: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every ``nnUNetv2_train`` / ``nnUNetv2_predict`` job (and ``recur predict``).

    On a CPU: :func:`nnunet_recur.workflow.cpu_env.cpu_training_env` (passive OpenMP waiting, glibc keeping
    its buffers, no augmentation workers; values the user exported win); ``extra`` on top.
    """
    return {**(cpu_training_env() if device == "cpu" else {}), **(extra or {})}


def _has_checkpoint(fold_dir: Path) -> bool:
    return any((fold_dir / f).is_file() for f in ("checkpoint_latest.pth", "checkpoint_final.pth"))


def train_job(
    name: str,
    title: str,
    dataset_id: int,
    fold: int,
    trainer: str,
    fold_dir: Path,
    device: str,
    env: Mapping[str, str],
    pretrained: Path | None = None,
    extra: Iterable[str] = (),
    after=None,
) -> Job:
    """One stock ``nnUNetv2_train`` as a job. A rerun after an interruption continues with ``--c``.

    nnU-Net refuses ``--c`` together with ``-pretrained_weights``: a fine-tuning that stopped before its first
    checkpoint starts again from the pre-trained weights; any other training resumes with ``--c`` (nnU-Net
    starts afresh when no checkpoint exists yet).
    """
    base = ["nnUNetv2_train", str(dataset_id), CONFIGURATION, str(fold), "-p", PLANS, "-tr", trainer, *extra]

    def build(retry: bool = False):
        resume = _has_checkpoint(fold_dir) or (retry and pretrained is None)
        weights = ["-pretrained_weights", str(pretrained)] if pretrained is not None and not resume else []
        return [[*base, *weights, "-device", device, *(["--c"] if resume else [])]]

    return Job(
        name,
        title,
        commands=lambda: build(False),
        retry_commands=lambda: build(True),
        outputs=[fold_dir / "checkpoint_final.pth", fold_dir / "validation" / "summary.json"],
        env=nnunet_job_env(device, env),
        after=after,
        resources=TRAIN,
        eager=True,  # its command reads nothing its dependencies write: Slurm may queue it behind them
        progress_dir=fold_dir,
        outputs_prove_done=True,  # a fold trained by hand (or by an earlier study) is not trained again
    )


def selected_fold(model_dir: Path) -> int:
    """The fold `recur best-seed` chose (seed_selection.json in the model folder)."""
    path = model_dir / "seed_selection.json"
    try:
        return int(json.loads(path.read_text())["best_fold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: no best_fold ({exc}); run `recur best-seed` first") from exc


def best_percent(best_json: Path) -> str:
    """The SUVmax percentage chosen on validation, formatted as the command line takes it."""
    value = float(json.loads(Path(best_json).read_text())["percent"])
    return str(int(value)) if value.is_integer() else f"{value:g}"


def test_cases(raw: Path) -> list[str]:
    """Case ids of the held-out test patients (labelsTs)."""
    return sorted(f.name[: -len(".nii.gz")] for f in (raw / "labelsTs").glob("*.nii.gz"))


def _expected_predictions(raw: Path, pred_dir: Path) -> list[Path]:
    cases = test_cases(raw)
    return [pred_dir / f"{c}.nii.gz" for c in cases] or [pred_dir / "<no test cases in labelsTs>"]


def study_jobs(lay: StudyLayout, plan: StudyPlan, after: Iterable[str] = ()) -> list[Job]:
    """The study's jobs, in the order a one-at-a-time executor runs them (the paper's order).

    ``after``: jobs the first ones wait for (the demo's data preparation).
    """
    first = tuple(after)
    device = ["-device", plan.device]
    jobs: list[Job] = []
    pre_fold = None
    if any(m.pretrained for m in plan.methods):
        if lay.pretrain_id is None or lay.pretrain_dataset is None:
            raise StudyError("AI finetune needs [datasets] pretrain (the HECKTOR dataset id)")
        pre_fold = lay.fold_dir(lay.pretrain_dataset, plan.pretrain_trainer, PRETRAIN_FOLD)
        jobs.append(
            train_job(
                "pretrain",
                f"Pre-train on HECKTOR GTVp ({plan.pretrain_trainer})",
                lay.pretrain_id,
                PRETRAIN_FOLD,
                plan.pretrain_trainer,
                pre_fold,
                plan.device,
                plan.train_env,
                after=first,
            )
        )
    selections: dict[str, str] = {}
    for method in plan.methods:
        seed_jobs = []
        for seed in range(plan.seeds):
            fold_dir = lay.fold_dir(lay.relapse_dataset, method.trainer, seed)
            name = f"train_{method.key}_seed{seed}"
            seed_jobs.append(name)
            jobs.append(
                train_job(
                    name,
                    f"Train {method.label}, seed {seed} (fold {seed} of the paper split)",
                    lay.relapse_id,
                    seed,
                    method.trainer,
                    fold_dir,
                    plan.device,
                    plan.train_env,
                    pretrained=pre_fold / "checkpoint_final.pth" if method.pretrained else None,
                    after=("pretrain",) if method.pretrained else first,
                )
            )
        model_dir = lay.model_dir(lay.relapse_dataset, method.trainer)
        selections[method.key] = f"select_{method.key}"
        jobs.append(
            Job(
                f"select_{method.key}",
                f"Keep the best {method.label} seed on validation (recur best-seed)",
                [["recur", "best-seed", str(lay.relapse_id), "-tr", method.trainer]],
                outputs=[model_dir / "seed_selection.json"],
                after=tuple(seed_jobs),
                show=_show_selection(method, model_dir),
            )
        )

    # prediction of the test patients ------------------------------------------------------------
    predict_extra = ["--save_probabilities"] if plan.save_probabilities else []
    if plan.disable_tta:
        predict_extra.append("--disable_tta")
    if plan.device == "cpu":
        predict_extra += ["-npp", "1", "-nps", "1"]
    for method in plan.methods:
        pred_dir = lay.predictions / method.key
        model_dir = lay.model_dir(lay.relapse_dataset, method.trainer)

        def predict(method=method, pred_dir=pred_dir, model_dir=model_dir):
            return [
                ["nnUNetv2_predict", "-i", str(lay.relapse_raw / "imagesTs"), "-o", str(pred_dir),
                 "-d", str(lay.relapse_id), "-c", CONFIGURATION, "-p", PLANS, "-tr", method.trainer,
                 "-f", str(selected_fold(model_dir)), *predict_extra, *device],
            ]  # fmt: skip

        jobs.append(
            Job(
                f"predict_{method.key}",
                f"Predict the test patients with {method.label}",
                predict,
                outputs=lambda d=pred_dir: _expected_predictions(lay.relapse_raw, d),
                env=nnunet_job_env(plan.device),
                after=(selections[method.key],),
                resources=PREDICT,
            )
        )

    # baselines ------------------------------------------------------------------------------------
    raw = lay.relapse_raw
    jobs.append(
        Job(
            "suvmax_sweep",
            "Find the best SUVmax threshold on the validation patients (Figure 4)",
            [
                ["recur-eval", "suvmax-sweep", "--images", raw / "imagesTr", "--masks", raw / "masksTr",
                 "--gt", raw / "labelsTr", "--splits", lay.splits, "--fold", str(plan.suvmax_fold),
                 "--out", lay.report],
            ],
            outputs=[lay.report / "best.json", lay.report / "figure4.png"],
            after=first,
        )
    )  # fmt: skip
    suv_dir = lay.predictions / "suvmax"
    jobs.append(
        Job(
            "suvmax_predict",
            "SUVmax-threshold baseline on the test patients",
            lambda: [
                ["recur-eval", "suvmax-predict", "--percent", best_percent(lay.report / "best.json"),
                 "--images", str(raw / "imagesTs"), "--masks", str(raw / "masksTs"), "--out", str(suv_dir)],
            ],
            outputs=lambda: _expected_predictions(raw, suv_dir),
            after=("suvmax_sweep",),
        )
    )  # fmt: skip
    gtv_dir = lay.predictions / "gtv"
    jobs.append(
        Job(
            "gtv_predict",
            "GTV-contour baseline on the test patients",
            [["recur-eval", "gtv-predict", "--masks", raw / "masksTs", "--out", gtv_dir]],
            outputs=lambda: _expected_predictions(raw, gtv_dir),
            after=first,
        )
    )

    # comparison -------------------------------------------------------------------------------------
    def compare_command() -> list[list[str]]:
        preds = []
        for method in plan.methods:
            preds += ["--pred", f"{method.label}={lay.predictions / method.key}"]
        preds += ["--pred", f"SUVmax {best_percent(lay.report / 'best.json')}%={suv_dir}"]
        preds += ["--pred", f"GTV={gtv_dir}"]
        return [
            ["recur-eval", "compare", "--gt", str(raw / "labelsTs"), *preds,
             "--images", str(raw / "imagesTs"), "--masks", str(raw / "masksTs"),
             "--best", plan.methods[0].label, "--out", str(lay.report)],
        ]  # fmt: skip

    jobs.append(
        Job(
            "compare",
            "Compare all methods on the test patients: Table 1, statistics, figures",
            compare_command,
            outputs=[lay.report / n for n in ("table1.md", "stats.json", "per_case.csv")],
            after=(*(f"predict_{m.key}" for m in plan.methods), "suvmax_predict", "gtv_predict"),
        )
    )
    # clinical output for one new patient (`recur predict`: DICOM RTSTRUCT, SEG, report), if asked for: last
    jobs.extend(patient_prediction_jobs(lay, plan, after=tuple(selections.values())))
    return jobs


def patient_prediction_jobs(lay: StudyLayout, plan: StudyPlan, after: Iterable[str] = ()) -> list[Job]:
    """`recur predict` on one new patient's DICOM folder with the study's best seed: what a user does with
    the trained model (RTSTRUCT, SEG and report.html in ``STUDY/predict_new_patient``). Off unless
    ``plan.new_patient`` is set (the demo sets it; a study file with ``[prediction] new_patient``)."""
    if plan.new_patient is None:
        return []
    by_key = {m.key: m for m in plan.methods}
    method = by_key.get(plan.new_patient_method) or plan.methods[0]
    model_dir = lay.model_dir(lay.relapse_dataset, method.trainer)
    out = lay.folder / "predict_new_patient"
    source = plan.new_patient

    def command() -> list[list[str]]:
        patient = source() if callable(source) else source
        return [
            ["recur", "predict", str(patient), "--model", str(model_dir), "--folds", "best",
             "--device", plan.device, "--out", str(out)],
        ]  # fmt: skip

    return [
        Job(
            "predict_new_patient",
            f"Predict one new patient from DICOM with {method.label} (recur predict: RTSTRUCT, SEG, report)",
            command,
            outputs=[out / "report.html"],
            env=nnunet_job_env(plan.device),
            after=tuple(after),
            resources=PREDICT,
        )
    ]


def _show_selection(method: Method, model_dir: Path):
    def show(console) -> None:
        path = model_dir / "seed_selection.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        runs = ", ".join(f"seed {r['fold']}: {r['best_metric']:.3f}" for r in data.get("runs", []))
        console.print(f"    {method.label}: {runs} -> seed {data['best_fold']} (use -f {data['best_fold']})")

    return show


# ------------------------------------------------------------------------------------------------
# The study file


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
    if cfg.device not in ("cpu", "cuda", "mps"):
        raise StudyError(f"{source}: device must be cpu, cuda or mps, not {cfg.device!r}")
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


# ------------------------------------------------------------------------------------------------
# Executors from the study file


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
