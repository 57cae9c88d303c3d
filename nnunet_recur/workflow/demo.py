"""The whole study on a synthetic cohort, as public command lines (`recur demo`).

The demo is the tutorial: every job is a command a user can type (`recur synth`, `recur convert`,
`recur plan`, stock `nnUNetv2_train` / `nnUNetv2_predict`, `recur best-seed`, `recur-eval`), printed before it
runs and logged under ``OUT/logs/``. It is a study (:mod:`nnunet_recur.workflow.study`) preceded by the data
preparation (synthesise, convert, plan), run by the same driver and journal as `recur study run` and
`recur cv`, on the local executor: pre-train on HECKTOR GTVp, train "AI random" and "AI finetune" on the
in-house relapse dataset with K seeds each, keep the best seed per method (`recur best-seed`), predict the
test patients, run the SUVmax-threshold and GTV baselines, compare everything in Table 1 (with the in-field
column), classify the relapses against the planned dose (`recur-eval dose-pattern`, workflow/dose_jobs.py),
plot the training curves (`recur-eval training-curves`) and predict one test patient from its DICOM folder as
a new patient (`recur predict --dose-map`: RTSTRUCT, SEG, report, dose-painting prescription and RT Dose).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nnunet_recur.nnunet_names import FOLDER_VARIABLES, dataset_folder_name, dataset_prefix, job_environment
from nnunet_recur.workflow.calibration_jobs import calibration_jobs
from nnunet_recur.workflow.dose_jobs import add_dose_jobs
from nnunet_recur.workflow.graph import Job
from nnunet_recur.workflow.study import (
    CONFIGURATION,
    PAPER_MAX_EPOCHS,
    PLANS,
    PRETRAIN_TRAINER,
    Method,
    StudyError,
    StudyLayout,
    StudyPlan,
    available_trainers,
    epoch_variants,
    pretrain_trainer_for,
    resolve_methods,
    study_jobs,
)

HECKTOR_ID = 501
HECKTOR_NAME = "SynthHECKTOR"
INHOUSE_ID = 502
INHOUSE_NAME = "SynthRecur"
TRAINER = "nnUNetTrainerRecur"
METHODS = ("AI random", "AI finetune")

# The defaults are sized for <= 15 minutes on a 2-core CPU (docs/benchmarks_demo.md, issue 14 experiment 1):
# the coarse `demo` profile (patch 24 x 32 x 24) lets the networks train 50 epochs, enough to learn the task;
# 48 patients leave 8 test patients after the converter's exclusions.
DEFAULT_SIZE = "demo"
DEFAULT_INHOUSE_CASES = 48
DEFAULT_HECKTOR_CASES = 10
DEFAULT_EPOCHS = 50
DEFAULT_PRETRAIN_EPOCHS = 20
DEFAULT_SEEDS = 1
DEFAULT_SEED = 2023

__all__ = ["CONFIGURATION", "PAPER_MAX_EPOCHS", "PLANS", "PRETRAIN_TRAINER", "available_trainers"]


@dataclass(frozen=True)
class DemoConfig:
    """What the user chose; stored in OUT/demo_config.json so that a rerun resumes the same study."""

    out: Path
    size: str = DEFAULT_SIZE
    epochs: int = DEFAULT_EPOCHS
    seeds: int = DEFAULT_SEEDS
    device: str = "cpu"
    inhouse_cases: int = DEFAULT_INHOUSE_CASES
    hecktor_cases: int = DEFAULT_HECKTOR_CASES
    seed: int = DEFAULT_SEED  # the synthetic cohorts (HECKTOR: seed, in-house: seed + 1)
    pretrain_epochs: int = DEFAULT_PRETRAIN_EPOCHS

    def study_key(self) -> dict:
        """The choices that change results (device does not: resuming on a GPU is fine)."""
        d = asdict(self)
        d.pop("out")
        d.pop("device")
        return d


def display_path(path: Path) -> Path:
    """Relative to the working directory when inside it (shorter printed commands), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


class DemoPaths:
    """Every folder the demo writes, derived from OUT and the nnU-Net environment."""

    def __init__(self, cfg: DemoConfig, env: dict[str, str]):
        self.out = cfg.out
        self.synth_hecktor = cfg.out / "synthetic" / "hecktor"
        self.synth_inhouse = cfg.out / "synthetic" / "inhouse"
        self.raw = display_path(Path(env["nnUNet_raw"]))
        self.preprocessed = display_path(Path(env["nnUNet_preprocessed"]))
        self.results = display_path(Path(env["nnUNet_results"]))
        self.reports = cfg.out / "recur_reports"
        self.report = cfg.out / "report"

    def dataset(self, dataset_id: int, name: str) -> str:
        return dataset_folder_name(dataset_id, name)

    @property
    def hecktor_raw(self) -> Path:
        return self.raw / self.dataset(HECKTOR_ID, HECKTOR_NAME)

    @property
    def inhouse_raw(self) -> Path:
        return self.raw / self.dataset(INHOUSE_ID, INHOUSE_NAME)

    @property
    def inhouse_splits(self) -> Path:
        return self.preprocessed / self.dataset(INHOUSE_ID, INHOUSE_NAME) / "splits_final.json"

    def layout(self) -> StudyLayout:
        return StudyLayout(
            folder=self.out,
            raw=self.raw,
            preprocessed=self.preprocessed,
            results=self.results,
            relapse_id=INHOUSE_ID,
            relapse_dataset=self.dataset(INHOUSE_ID, INHOUSE_NAME),
            pretrain_id=HECKTOR_ID,
            pretrain_dataset=self.dataset(HECKTOR_ID, HECKTOR_NAME),
        )


# ------------------------------------------------------------------------------------------------
# Trainer names: nnU-Net has no epoch flag, so `--epochs N` picks a trainer variant


@dataclass(frozen=True)
class DemoTrainers:
    """The trainer classes one demo run uses: pre-training and one per method (AI random, AI finetune)."""

    pretrain: str
    train: str
    finetune: str
    note: str = ""


def resolve_trainers(
    epochs: int, available: Iterable[str], pretrain_epochs: int | None = None
) -> DemoTrainers:
    """Map `--epochs N` (and `--pretrain-epochs M`, default N) onto the trainer variants nnunet_recur.trainers
    offers.

    0 or 1000 = the full recipe (max 1000 epochs, early stopping). Training needs an exact
    `<trainer>_<N>epochs`; pre-training (only a warm start) uses `nnUNetTrainerRecurPretrain_<M>epochs`, or
    the longest variant shorter than M, or the shortest if none is that short (said in the note).
    """
    available = list(available)
    try:
        random, finetune = resolve_methods(METHODS, epochs, available)
    except StudyError as exc:
        raise ValueError(str(exc).replace("epochs = ", "--epochs ")) from exc
    try:
        pre_epochs = epochs if pretrain_epochs is None else pretrain_epochs
        pretrain, note = pretrain_trainer_for(pre_epochs, available)
    except StudyError as exc:
        raise ValueError(str(exc).replace("epochs = ", "--pretrain-epochs ")) from exc
    return DemoTrainers(pretrain, random.trainer, finetune.trainer, note)


def epoch_choices(available: Iterable[str]) -> list[int]:
    """Every N with `nnUNetTrainerRecur_<N>epochs` and its AI finetune twin (what `--epochs` takes)."""
    available = list(available)
    random = epoch_variants(TRAINER, available)
    finetune = epoch_variants("nnUNetTrainerRecurFinetune", available)
    return sorted(set(random) & set(finetune))


def nnunet_environment(out: Path, device: str) -> dict[str, str]:
    """nnU-Net's folders inside OUT unless the user already exported them; the rest is
    `nnunet_names.job_environment` (our trainers first, keeping the user's; 1 export worker on CPU)."""
    folders = {var: os.environ.get(var) or str((out / var).resolve()) for var in FOLDER_VARIABLES}
    return job_environment(folders, os.environ, device)


def test_patient_folder(cfg: DemoConfig) -> Path:
    """The DICOM folder of the first test patient in the converter's cases.csv (dataset 502): the demo's
    "new patient" for `recur predict`. Read when the job starts, after the conversion wrote the report."""
    p = DemoPaths(cfg, {"nnUNet_raw": ".", "nnUNet_preprocessed": ".", "nnUNet_results": "."})
    cases = p.reports / p.dataset(INHOUSE_ID, INHOUSE_NAME) / "cases.csv"
    with cases.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("role") == "test":
                return p.synth_inhouse / "patients" / row["patient"]
    raise ValueError(f"{cases}: no patient with role 'test'")


# ------------------------------------------------------------------------------------------------
# Jobs


def build_jobs(cfg: DemoConfig, env: dict[str, str], trainers: DemoTrainers) -> list[Job]:
    """Data preparation, then the study graph (the same one `recur study run` builds)."""
    p = DemoPaths(cfg, env)
    prep = preparation_jobs(cfg, p)
    plan = StudyPlan(
        methods=[
            Method("ai_random", "AI random", trainers.train, pretrained=False),
            Method("ai_finetune", "AI finetune", trainers.finetune, pretrained=True),
        ],
        pretrain_trainer=trainers.pretrain,
        seeds=cfg.seeds,
        device=cfg.device,
        new_patient=lambda: test_patient_folder(cfg),
        validation_probabilities=True,  # for the calibration step
    )
    jobs = prep + study_jobs(p.layout(), plan, after=(prep[-1].name,))
    # calibration before Table 1; the new patient's prediction waits for the fit (and applies it)
    calibration = calibration_jobs(p.layout(), plan)
    at = next(i for i, j in enumerate(jobs) if j.name == "compare")
    jobs = [*jobs[:at], *calibration, *jobs[at:]]
    jobs = [
        replace(j, after=(*j.after, calibration[0].name)) if j.name == "predict_new_patient" else j
        for j in jobs
    ]
    jobs = add_dose_jobs(jobs, p.layout())  # compare --dose, dose-pattern, predict --dose-map (issues 20, 21)
    # the training curves before the new patient's prediction, so that `recur predict` ends the tutorial
    at = next((i for i, j in enumerate(jobs) if j.name == "predict_new_patient"), len(jobs))
    return [*jobs[:at], training_curves_job(cfg, p, plan), *jobs[at:]]


def training_curves_job(cfg: DemoConfig, p: DemoPaths, plan: StudyPlan) -> Job:
    """`recur-eval training-curves`: validation Dice and learning rate per epoch of every run, kept epoch
    marked, in OUT/report/training_curves.png (+ .csv, .json)."""
    lay = p.layout()
    runs = []
    if any(m.pretrained for m in plan.methods):
        pre = lay.fold_dir(lay.pretrain_dataset, plan.pretrain_trainer, 0)
        runs += ["--run", f"pre-training={pre}"]
    for method in plan.methods:
        for seed in range(plan.seeds):
            fold_dir = lay.fold_dir(lay.relapse_dataset, method.trainer, seed)
            runs += ["--run", f"{method.label} seed {seed}={fold_dir}"]
    return Job(
        "training_curves",
        "Plot the training curves: validation Dice and learning rate per epoch, kept epoch marked",
        [["recur-eval", "training-curves", *runs, "--out", p.report]],
        outputs=[p.report / f"training_curves.{ext}" for ext in ("png", "csv", "json")],
        after=tuple(f"select_{m.key}" for m in plan.methods),
    )


def preparation_jobs(cfg: DemoConfig, p: DemoPaths) -> list[Job]:
    """Synthesise both cohorts, convert them, plan and preprocess: what a user does once before a study."""
    hecktor_ds = p.dataset(HECKTOR_ID, HECKTOR_NAME)
    inhouse_ds = p.dataset(INHOUSE_ID, INHOUSE_NAME)
    stages: list[Job] = []

    # 1. synthetic cohorts ----------------------------------------------------------------------
    stages.append(
        Job(
            "synth_hecktor",
            f"Synthesise a HECKTOR-like pre-training cohort ({cfg.hecktor_cases} cases)",
            [
                ["recur", "synth", p.synth_hecktor, "--cases", cfg.hecktor_cases, "--seed", cfg.seed,
                 "--format", "hecktor", "--size", cfg.size],
            ],
            outputs=[p.synth_hecktor / "imagesTr", p.synth_hecktor / "labelsTr"],
        )
    )  # fmt: skip
    stages.append(
        Job(
            "synth_inhouse",
            f"Synthesise an in-house DICOM cohort ({cfg.inhouse_cases} patients, some with defects)",
            [
                ["recur", "synth", p.synth_inhouse, "--cases", cfg.inhouse_cases, "--seed", cfg.seed + 1,
                 "--format", "inhouse-dicom", "--size", cfg.size, "--defects"],
            ],
            outputs=[p.synth_inhouse / "patients", p.synth_inhouse / "ground_truth" / "defects.json"],
        )
    )  # fmt: skip

    # 2. conversion ------------------------------------------------------------------------------
    # The HECKTOR cases must fit the patch planned on the in-house crop (recur plan refuses larger ones).
    # Neither the whole image (small: 45 x 72 x 72 voxels against a 48 x 64 x 56 patch for 40 patients;
    # demo: 23 x 36 x 36 against ~24 x 32 x 24) nor the paper's box in mm fits at the synthetic sizes; the
    # box around the cohort's GTVp does. paper: the converter's default (the paper's box in mm).
    hecktor_crop = ["--crop", "auto"] if cfg.size in ("demo", "small") else []
    stages.append(
        Job(
            "convert_hecktor",
            "Convert the HECKTOR cohort into an nnU-Net dataset (GTVp labels)",
            [
                ["recur", "convert", "hecktor", p.synth_hecktor, "--dataset-id", HECKTOR_ID,
                 "--name", HECKTOR_NAME, *hecktor_crop, "--report-dir", p.reports / hecktor_ds],
            ],
            outputs=[p.hecktor_raw / "dataset.json"],
        )
    )  # fmt: skip
    stages.append(
        Job(
            "convert_inhouse",
            "Convert the in-house DICOM cohort (quality checks, SUV, RTSTRUCT masks, paper split)",
            [
                ["recur", "convert", "inhouse", p.synth_inhouse / "patients", "--dataset-id", INHOUSE_ID,
                 "--name", INHOUSE_NAME, "--split", "paper", "--seed", cfg.seed,
                 "--report-dir", p.reports / inhouse_ds],
            ],
            outputs=[p.inhouse_raw / "dataset.json", p.inhouse_splits],
            show=lambda console: show_exclusions(console, p.reports / inhouse_ds / "exclusions.csv"),
        )
    )  # fmt: skip

    # 3. plans shared by pre-training and fine-tuning --------------------------------------------
    plans_file = p.preprocessed / inhouse_ds / f"{PLANS}.json"
    hecktor_plans_file = p.preprocessed / hecktor_ds / f"{PLANS}.json"
    stages.append(
        Job(
            "plan",
            "Plan and preprocess both datasets with one architecture (nnUNetRecurPlans, 3d_recur)",
            [["recur", "plan", INHOUSE_ID, "--pretrain-from", HECKTOR_ID]],
            outputs=[plans_file, hecktor_plans_file],
        )
    )
    return stages


def show_exclusions(console: Console, csv_path: Path) -> None:
    """The converter's exclusions (patient folder, cause, detail) as a table."""
    if not csv_path.is_file():
        console.print(f"    (no exclusion report at {csv_path})")
        return
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        console.print("    no patient excluded")
        return
    table = Table(title=f"{len(rows)} patient(s) excluded by the quality checks", title_justify="left")
    table.add_column("patient", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        detail = (row.get("detail") or "").split(": ", 1)[-1]  # drop the file path; the CSV keeps it
        table.add_row(row.get("patient", ""), row.get("cause", ""), detail)
    console.print(table)
    console.print(f"    full list: {csv_path}", soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# Configuration guard


def check_config(cfg: DemoConfig) -> None:
    """Refuse to mix two different studies in one OUT folder (a rerun must resume the same one)."""
    path = cfg.out / "demo_config.json"
    key = cfg.study_key()
    if path.is_file():
        old = json.loads(path.read_text())
        if old != key:
            diff = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in key.items() if old.get(k) != v)
            raise ValueError(
                f"{cfg.out} holds a demo run with other settings ({diff}); "
                f"use another --out or delete {cfg.out} to start over"
            )
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key, indent=1))


def check_dataset_ids(env: dict[str, str]) -> None:
    """A foreign DatasetXXX folder with our id would make nnU-Net's id look-up ambiguous."""
    for root in (env["nnUNet_raw"], env["nnUNet_preprocessed"]):
        for did, name in ((HECKTOR_ID, HECKTOR_NAME), (INHOUSE_ID, INHOUSE_NAME)):
            ours = dataset_folder_name(did, name)
            for f in Path(root).glob(f"{dataset_prefix(did)}*"):
                if f.name != ours:
                    raise ValueError(
                        f"{f} already uses dataset id {did}; the demo needs it for {ours}. "
                        "Unset nnUNet_raw/nnUNet_preprocessed/nnUNet_results to keep the demo inside --out."
                    )


RESEARCH_NOTE = "nnunet-recur is a research tool, not a medical device: not for clinical decisions."
DEMO_MEANING = (
    "Table 1 compares, on synthetic test patients, how well each method's volume covers where the simulated "
    "relapses started (Dice, volume, POs captured; the paper's finding is AI random capturing as many POs as "
    "the GTV at a smaller volume), but the data are synthetic, so it is no evidence about real relapses."
)


def print_table1(console: Console, report: Path, meaning: str | None = None) -> None:
    from rich.markdown import Markdown  # noqa: PLC0415

    table = report / "table1.md"
    if table.is_file():
        console.rule("Table 1 (test patients)")
        console.print(Markdown(table.read_text()))
        if meaning:
            console.print(meaning, soft_wrap=True)
        console.print(f"Report folder: {report}")
