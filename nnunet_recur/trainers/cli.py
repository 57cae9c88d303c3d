"""``recur plan`` and ``recur env``: thin typer commands over :mod:`planning` and :mod:`environment`."""

from __future__ import annotations

import os

import typer

from nnunet_recur.exit_status import BAD_INPUT


def _default_processes() -> int:
    return max(1, min(int(os.environ.get("nnUNet_def_n_proc", 8)), os.cpu_count() or 1))


def plan(
    dataset_id: int = typer.Argument(
        ..., help="nnU-Net dataset id of the (relapse) dataset to train on, e.g. 501."
    ),
    pretrain_from: int | None = typer.Option(
        None,
        "--pretrain-from",
        help="Also preprocess this dataset (HECKTOR) with the same plans, for pre-training before "
        "fine-tuning. The dataset given as DATASET_ID defines spacing and patch size.",
    ),
    processes: int | None = typer.Option(
        None,
        "--processes",
        "-np",
        help="Worker processes for fingerprint and preprocessing (default: nnUNet_def_n_proc or CPUs); "
        "1 runs them in this process, starting no workers (faster on small datasets).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Redo fingerprint and preprocessing (needed after raw images changed in place).",
    ),
    pet_zscore: str = typer.Option(
        "patient",
        "--pet-zscore",
        help="Region the PET z-score runs over. patient (default, the authors' code): the whole stored PET "
        "before the crop (the converter's PET_zscore_patient channel); crop: nnU-Net's z-score over the "
        "stored crop (also used when the dataset has no PET_zscore_patient channel).",
    ),
    allow_patch_smaller_than_case: bool = typer.Option(
        False,
        "--allow-patch-smaller-than-case",
        help="Plan even when some cases are larger than the 128x224x160 patch (training then sees random "
        "patches and inference a sliding window, unlike the paper). Without it such a dataset is refused.",
    ),
) -> None:
    """Write nnUNetRecurPlans (configuration 3d_recur: CT spacing, patch 128x224x160, batch 2, RecurUNet,
    CT clipped to [-1024, 1024] -> [-1, 1], PET z-scored over the whole stored PET) and preprocess the
    dataset.

    Needs nnUNet_raw and nnUNet_preprocessed. Safe to rerun: unchanged, complete preprocessing is skipped.

    Example: recur plan 501 --pretrain-from 500
    """
    from nnunet_recur.trainers.planning import PlanningError, plan_dataset, plan_with_pretraining

    processes = processes or _default_processes()
    try:
        if pretrain_from is None:
            summaries = [
                plan_dataset(dataset_id, processes, force, allow_patch_smaller_than_case, pet_zscore)
            ]
        else:
            summaries = list(
                plan_with_pretraining(
                    dataset_id, pretrain_from, processes, force, allow_patch_smaller_than_case, pet_zscore
                )
            )
    except PlanningError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_INPUT) from error
    for summary in summaries:
        status = "already up to date" if summary.preprocessing_skipped else "preprocessed"
        typer.echo(
            f"{summary.dataset_name}: {summary.plans_file}\n"
            f"  3d_recur: spacing {summary.spacing} (z, y, x), patch {summary.patch_size}, "
            f"batch {summary.batch_size}; PET z-scored over the {summary.pet_zscore}; "
            f"{summary.cases_preprocessed} cases {status}\n"
            f"  {summary.patch_note()}",
            err=summary.cases_larger_than_patch > 0,
        )


def env() -> None:
    """Print the shell lines that let nnUNetv2_train / nnUNetv2_predict find the nnunet-recur trainers.

    Prints `export nnUNet_extTrainer=<folder inside the package>` (keeping folders you already listed) and,
    for nnUNet_raw / nnUNet_preprocessed / nnUNet_results when unset, a commented hint.

    Example: eval "$(recur env)"
    """
    from nnunet_recur.trainers.environment import env_lines

    for line in env_lines(os.environ):
        typer.echo(line)


def best_seed(
    dataset_id: int = typer.Argument(..., help="nnU-Net dataset id the folds were trained on, e.g. 501."),
    trainer: str = typer.Option(
        "nnUNetTrainerRecur", "--trainer", "-tr", help="Trainer class name used for training."
    ),
) -> None:
    """Pick the best of the 5 seed runs (folds 0-4 of the identical-fold split) by validation metric.

    Reads fold_*/recur_best.json in $nnUNet_results/<dataset>/<trainer>__nnUNetRecurPlans__3d_recur, writes
    seed_selection.json there and prints the fold to pass to nnUNetv2_predict -f.

    Example: for f in 0 1 2 3 4; do nnUNetv2_train 501 3d_recur $f -p nnUNetRecurPlans -tr nnUNetTrainerRecur;
    done; recur best-seed 501
    """
    from pathlib import Path

    from nnunet_recur.nnunet_names import model_folder
    from nnunet_recur.trainers.planning import PlanningError, dataset_name
    from nnunet_recur.trainers.seeds import select_best_seed

    results = os.environ.get("nnUNet_results")
    if not results:
        typer.echo('error: nnUNet_results is not set (see `eval "$(recur env)"`)', err=True)
        raise typer.Exit(BAD_INPUT)
    try:
        model_dir = model_folder(Path(results), dataset_name(dataset_id), trainer)
        best = select_best_seed(model_dir)
    except (PlanningError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_INPUT) from error
    typer.echo(
        f"best fold {best.fold} (seed {best.seed}): {best.monitor} {best.best_metric:.4f} "
        f"at epoch {best.best_epoch}; "
        f"predict with -f {best.fold}; written to {model_dir / 'seed_selection.json'}"
    )
