"""`recur demo` and `recur cv`: thin typer commands over the stage lists in demo.py and cv.py."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import typer

from nnunet_recur.workflow.demo import (
    DEFAULT_EPOCHS,
    DEFAULT_HECKTOR_CASES,
    DEFAULT_INHOUSE_CASES,
    DEFAULT_SEEDS,
)


class Size(str, Enum):
    small = "small"
    paper = "paper"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _run_stages(runner, stages, console) -> None:
    """Run the stages; a failing stage exits 1 with its command and log, Ctrl-C exits 130 (rerun resumes)."""
    from nnunet_recur.workflow.stages import StageError, report_failure

    try:
        runner.run(stages)
    except StageError as err:
        report_failure(console, err)
        raise typer.Exit(1) from err
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted.[/yellow] Run the same command again to resume.")
        raise typer.Exit(130) from None


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
    size: Size = typer.Option(
        Size.small,
        "--size",
        help="Synthetic image size: 'small' for CPUs, 'paper' = the paper's 512 x 512 CT.",
    ),
    epochs: int = typer.Option(
        DEFAULT_EPOCHS,
        "--epochs",
        min=0,
        help="Training epochs per run (pre-training, each seed): a variant nnUNetTrainerRecur_<N>epochs must "
        "exist (2, 5, 10); 0 or 1000 = the paper's recipe (max 1000, early stopping). The default is sized "
        "so that the small demo fits 15 min on 2 CPU cores.",
    ),
    seeds: int = typer.Option(
        DEFAULT_SEEDS,
        "--seeds",
        min=1,
        max=5,
        help="Seeds per method; the best on validation Dice is kept (paper: 5).",
    ),  # fmt: skip
    device: Device = typer.Option(Device.cpu, "--device", help="Where nnU-Net trains and predicts."),
    inhouse_cases: int = typer.Option(
        DEFAULT_INHOUSE_CASES,
        "--inhouse-cases",
        min=8,
        help="Patients in the synthetic in-house cohort (a few are defective).",
    ),
    hecktor_cases: int = typer.Option(
        DEFAULT_HECKTOR_CASES,
        "--hecktor-cases",
        min=5,
        help="Cases in the synthetic HECKTOR pre-training cohort.",
    ),
) -> None:
    """Run the whole study on a synthetic cohort: synth -> convert -> plan -> train -> predict -> evaluate.

    Every stage prints the public command it runs; its output goes to OUT/logs/.
    A rerun skips finished stages: Ctrl-C and rerun resumes.
    Table 1, statistics and figures land in OUT/report/.

    Example: recur demo --out ./demo_out --epochs 10 --seeds 1
    """
    from rich.console import Console

    from nnunet_recur.workflow import demo as d
    from nnunet_recur.workflow.stages import StageRunner

    console = Console(highlight=False)
    cfg = d.DemoConfig(
        out=d.display_path(out),
        size=size.value,
        epochs=epochs,
        seeds=seeds,
        device=device.value,
        inhouse_cases=inhouse_cases,
        hecktor_cases=hecktor_cases,
    )
    try:
        d.check_config(cfg)
        trainers = d.resolve_trainers(cfg.epochs, d.available_trainers())
        env = d.nnunet_environment(cfg.out, cfg.device)
        d.check_dataset_ids(env)
    except (ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.rule("nnunet-recur demo")
    console.print("The commands below need these variables (the demo sets them itself):", style="dim")
    for k, v in env.items():
        console.print(f"export {k}={v}", markup=False, soft_wrap=True)
    if trainers.note:
        console.print(f"Note: {trainers.note}", style="dim")
    stages = d.build_stages(cfg, env, trainers)
    runner = StageRunner(cfg.out, env=env, console=console)
    start = time.monotonic()
    _run_stages(runner, stages, console)
    d.print_table1(console, cfg.out / "report")
    console.print(f"Demo finished in {(time.monotonic() - start) / 60:.1f} min; logs in {runner.log_dir}")


def cv(
    dataset_id: int = typer.Argument(..., help="nnU-Net dataset id (planned with `recur plan`)."),
    trainer: str = typer.Option("nnUNetTrainerRecur", "--trainer", help="Trainer class (`-tr`)."),
    folds: str = typer.Option(
        "0,1,2,3,4", "--folds", help="Comma-separated folds to train, one after another."
    ),
    device: Device = typer.Option(Device.cuda, "--device", help="Where nnU-Net trains."),
    out: Path = typer.Option(
        None, "--out", help="Report folder (default ./recur_cv/DatasetXXX_Name/TRAINER)."
    ),
) -> None:
    """Cross-validate a trainer, then evaluate its out-of-fold predictions per fold and pooled.

    Folds run one after another: nnUNetv2_train -p nnUNetRecurPlans -c 3d_recur --npz.
    Then `recur-eval compare` on each fold's validation predictions and on all folds pooled.

    Needs nnUNet_raw, nnUNet_preprocessed and nnUNet_results exported.
    Each fold is an independent nnUNetv2_train call: on a cluster, run one fold per job,
    then `recur cv` (finished folds are skipped) to evaluate.

    Example: recur cv 502 --trainer nnUNetTrainerRecur --folds 0,1,2,3,4 --device cuda
    """
    from rich.console import Console

    from nnunet_recur.workflow import cv as c
    from nnunet_recur.workflow.stages import StageRunner

    console = Console(highlight=False)
    try:
        fold_list = c.parse_folds(folds)
        env = c.cv_environment(device.value)
        dataset = c.dataset_folder_name(Path(env["nnUNet_raw"]), dataset_id)
        out_dir = (out or Path("recur_cv") / dataset / trainer).resolve()
        stages = c.build_cv_stages(dataset_id, trainer, fold_list, device.value, out_dir, env)
        if len(fold_list) > 1 and not c.pooled_is_possible(stages):
            console.print(
                "Note: these folds share validation patients (splits_final.json); no pooled evaluation. "
                "Convert with `--split cv5` for a cross-validation with disjoint folds."
            )
    except (ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    runner = StageRunner(out_dir, env=env, console=console)
    _run_stages(runner, stages, console)
    pooled = " and pooled/" if c.pooled_is_possible(stages) else ""
    console.print(
        f"Cross-validation reports in {out_dir} (fold_*/{pooled}: table1.md, per_case.csv, stats.json)"
    )
