"""The jobs of one study: its folders (`StudyLayout`), what it runs (`StudyPlan`) and the job graph
(`study_jobs`, `patient_prediction_jobs`) of pre-training, seeds, best seed, predictions and Table 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_recur.nnunet_names import (
    CONFIGURATION,
    model_folder,
)
from nnunet_recur.nnunet_names import PLANS_NAME as PLANS
from nnunet_recur.trainers.seeds import refresh_selection
from nnunet_recur.workflow.best_method import BEST_CNN_FILE, BEST_CNN_JOB, best_method_job, read_best_method
from nnunet_recur.workflow.cpu_env import cpu_training_env
from nnunet_recur.workflow.graph import PREDICT, TRAIN, Job
from nnunet_recur.workflow.study_methods import (
    PRETRAIN_FOLD,
    Method,
    StudyError,
)


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
    validation_probabilities: bool = False  # nnUNetv2_train --npz: fold validation .npz (recur calibrate)


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
    """The fold `recur best-seed` chose (seed_selection.json in the model folder), recomputed by the same rule
    if the fold results changed since (a fold retrained after its select job: trainers.seeds)."""
    path = model_dir / "seed_selection.json"
    try:
        refresh_selection(model_dir)
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
                    extra=["--npz"] if plan.validation_probabilities else (),
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

    # Table 1's best CNN: chosen on validation Dice by the best-seed rule (workflow/best_method.py)
    models = [(m.label, m.trainer, lay.model_dir(lay.relapse_dataset, m.trainer)) for m in plan.methods]
    jobs.append(best_method_job(lay.report / BEST_CNN_FILE, models, after=tuple(selections.values())))

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
             "--best", read_best_method(lay.report / BEST_CNN_FILE), "--out", str(lay.report)],
        ]  # fmt: skip

    jobs.append(
        Job(
            "compare",
            "Compare all methods on the test patients: Table 1, statistics, figures",
            compare_command,
            outputs=[lay.report / n for n in ("table1.md", "stats.json", "per_case.csv")],
            after=(
                *(f"predict_{m.key}" for m in plan.methods),
                "suvmax_predict",
                "gtv_predict",
                BEST_CNN_JOB,
            ),
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
