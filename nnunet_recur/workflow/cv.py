"""Cross-validation of one trainer (`recur cv`): nnU-Net's folds one after another, then Table 1-style
metrics per fold and on the pooled out-of-fold predictions.

Each fold is one stock command, ``nnUNetv2_train ID 3d_recur F -p nnUNetRecurPlans -tr TRAINER --npz``,
independent of the others: the folds are jobs of the same graph, driver and executors as `recur study`
(one after another locally, one per GPU with ``--gpus``, or one Slurm job each), and each fold's evaluation
waits only for its own training.  nnU-Net writes the out-of-fold predictions of fold F to
``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONF/fold_F/validation/<case>.nii.gz``.  For
``recur-eval compare`` each fold's validation cases are listed in ``OUT/fold_F/cases.txt`` (``--cases``),
and the pooled evaluation links all folds' predictions into one folder.  Pooling needs disjoint validation
sets (``recur convert inhouse --split cv5``); when splits_final.json shows that the chosen folds share
validation patients (the paper split repeats one split five times), the pooled step is left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from nnunet_recur.atomic_io import write_text_atomic
from nnunet_recur.nnunet_names import (
    FOLDER_VARIABLES,
    DatasetNotFoundError,
    find_dataset_folder,
    job_environment,
    missing_folder_variables,
    model_folder,
)
from nnunet_recur.workflow.graph import Job
from nnunet_recur.workflow.study import train_job

NIFTI = ".nii.gz"


class CVSetupError(ValueError):
    """The environment or dataset does not allow a cross-validation run."""


def cv_environment(device: str) -> dict[str, str]:
    """nnU-Net's folders must already be exported (the user's data lives there); the job environment is
    `nnunet_names.job_environment` (our trainers first, keeping the user's)."""
    missing = missing_folder_variables(os.environ)
    if missing:
        raise CVSetupError(
            f"{', '.join(missing)} not set: export nnU-Net's folders first (see `recur env` and the README)"
        )
    return job_environment({v: os.environ[v] for v in FOLDER_VARIABLES}, os.environ, device)


def dataset_folder_name(raw: Path, dataset_id: int) -> str:
    """`DatasetXXX_Name` for an id, from the raw folder (without importing nnunetv2)."""
    try:
        return find_dataset_folder(raw, dataset_id).name
    except DatasetNotFoundError as exc:
        raise CVSetupError(f"nnUNet_raw: {exc}") from exc


def parse_folds(text: str) -> list[int]:
    """'0,1,2,3,4' -> [0, 1, 2, 3, 4]; nnU-Net's folds are 0-4 (more with a custom splits file)."""
    try:
        folds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise CVSetupError(f"--folds {text!r}: expected comma-separated integers such as 0,1,2,3,4") from exc
    if not folds or any(f < 0 for f in folds) or len(set(folds)) != len(folds):
        raise CVSetupError(f"--folds {text!r}: expected distinct non-negative fold numbers")
    return folds


def _cases_in(folder: Path) -> list[str]:
    return sorted(p.name[: -len(NIFTI)] for p in folder.glob(f"*{NIFTI}"))


def link_cases(cases_by_source: dict[Path, Sequence[str]], target: Path) -> None:
    """Fill `target` with links `<case>.nii.gz` (and `<case>.npz` probability maps where nnU-Net wrote them,
    so the pooled report can draw the CNN's threshold curve) -> source files (rebuilt each time)."""
    if target.exists():
        for f in target.iterdir():
            f.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for source, cases in cases_by_source.items():
        for case in cases:
            src = (source / f"{case}{NIFTI}").resolve()
            if not src.is_file():
                raise FileNotFoundError(f"{src}: expected file for case {case} is missing")
            os.symlink(src, target / f"{case}{NIFTI}")
            probabilities = src.with_name(f"{case}.npz")
            if probabilities.is_file():
                os.symlink(probabilities, target / probabilities.name)


def write_case_list(cases: Sequence[str], path: Path) -> None:
    """One case id per line (what `recur-eval compare --cases FILE` reads); an empty fold is an error."""
    if not cases:
        raise CVSetupError(f"no validation predictions to evaluate for {path.parent.name}")
    write_text_atomic(path, "\n".join(cases) + "\n")


def build_cv_jobs(
    dataset_id: int,
    trainer: str,
    folds: Sequence[int],
    device: str,
    out: Path,
    env: dict[str, str],
) -> list[Job]:
    raw_root = Path(env["nnUNet_raw"])
    dataset = dataset_folder_name(raw_root, dataset_id)
    raw = raw_root / dataset
    run_dir = model_folder(Path(env["nnUNet_results"]), dataset, trainer)
    splits_file = Path(env["nnUNet_preprocessed"]) / dataset / "splits_final.json"
    if splits_file.is_file():
        n_splits = len(json.loads(splits_file.read_text()))
        unknown = [f for f in folds if f >= n_splits]
        if unknown:  # nnU-Net would silently train on its own random 80:20 split instead
            raise CVSetupError(
                f"{splits_file}: has folds 0-{n_splits - 1}, so fold(s) {unknown} do not exist; "
                "nnU-Net would train them on a random split of its own"
            )
    stages: list[Job] = []

    for fold in folds:
        stages.append(
            train_job(
                f"train_fold{fold}",
                f"Train {trainer} on fold {fold}",
                dataset_id,
                fold,
                trainer,
                run_dir / f"fold_{fold}",
                device,
                {},
                extra=["--npz"],
                after=(),
            )
        )

    def fold_eval(name, title, cases_file: Path, predictions: Path, report: Path, gather, after) -> None:
        stages.append(Job(f"gather_{name}", f"List the validation cases of {title}", action=gather,
                          outputs=[cases_file], after=after))  # fmt: skip
        stages.append(
            Job(
                f"compare_{name}",
                f"Evaluate {title} (recur-eval compare)",
                [
                    ["recur-eval", "compare", "--gt", raw / "labelsTr", "--cases", cases_file,
                     "--pred", f"{trainer}={predictions}", "--images", raw / "imagesTr",
                     "--masks", raw / "masksTr", "--out", report],
                ],
                outputs=[report / "table1.md", report / "per_case.csv"],
            )
        )  # fmt: skip

    for fold in folds:
        val = run_dir / f"fold_{fold}" / "validation"
        cases_file = out / f"fold_{fold}" / "cases.txt"

        def gather(val=val, cases_file=cases_file) -> None:
            write_case_list(_cases_in(val), cases_file)

        fold_eval(
            f"fold{fold}",
            f"fold {fold}",
            cases_file,
            val,
            out / f"fold_{fold}",
            gather,
            (f"train_fold{fold}",),
        )

    pool = len(folds) > 1
    if pool and splits_file.is_file():
        splits = json.loads(splits_file.read_text())
        pool = all(f < len(splits) for f in folds) and folds_are_disjoint(splits, folds)
    if pool:
        pooled_cases, pooled_pred = out / "pooled" / "cases.txt", out / "pooled" / "predictions"

        def gather_pooled() -> None:
            by_fold = {run_dir / f"fold_{f}" / "validation": _cases_in(run_dir / f"fold_{f}" / "validation")
                       for f in folds}  # fmt: skip
            seen: dict[str, Path] = {}
            for folder, cases in by_fold.items():
                for c in cases:
                    if c in seen:
                        raise CVSetupError(
                            f"case {c} is a validation case of both {seen[c].parent.name} and "
                            f"{folder.parent.name}: the folds are not disjoint (a `--split paper` dataset "
                            "repeats one split five times); pooled cross-validation needs `--split cv5`"
                        )
                    seen[c] = folder
            link_cases(by_fold, pooled_pred)
            write_case_list(sorted(seen), pooled_cases)

        after = tuple(f"train_fold{f}" for f in folds)
        fold_eval(
            "pooled", "all folds pooled", pooled_cases, pooled_pred, out / "pooled", gather_pooled, after
        )
    return stages


def pooled_is_possible(stages: Sequence[Job]) -> bool:
    return any(s.name == "compare_pooled" for s in stages)


def folds_are_disjoint(splits: list[dict], folds: Sequence[int]) -> bool:
    """True when the chosen folds of a splits_final.json validate on different patients."""
    seen: set[str] = set()
    for f in folds:
        val = set(splits[f]["val"])
        if val & seen:
            return False
        seen |= val
    return True
