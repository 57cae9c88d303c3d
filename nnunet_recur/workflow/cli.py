"""`recur demo`, `recur cv` and `recur study run|status`: thin typer commands over one driver (driver.py)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import typer

from nnunet_recur.device_choice import DEVICE_HELP, DeviceChoice, DeviceError, resolve_device
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES, INTERRUPTED
from nnunet_recur.synthetic.cli import CohortSize  # one size enum for `recur synth` and `recur demo`
from nnunet_recur.workflow.demo import (
    DEFAULT_EPOCHS,
    DEFAULT_HECKTOR_CASES,
    DEFAULT_INHOUSE_CASES,
    DEFAULT_PRETRAIN_EPOCHS,
    DEFAULT_SEED,
    DEFAULT_SEEDS,
    DEFAULT_SIZE,
    available_trainers,
    epoch_choices,
)


def _epochs_help() -> str:
    choices = ", ".join(str(n) for n in epoch_choices(available_trainers())) or "none"
    return (
        f"Training epochs of AI random and AI finetune (each seed): a variant nnUNetTrainerRecur_<N>epochs "
        f"must exist ({choices}); 0 or 1000 = the paper's recipe (max 1000, early stopping). The default "
        "fits the demo size in 15 min on 2 CPU cores; with a GPU the demo may use more epochs in the same "
        "budget."
    )


def parse_gpus(text: str | None) -> tuple[str, ...]:
    return tuple(g.strip() for g in (text or "").split(",") if g.strip())


def _drive(jobs, folder: Path, executor, env, console, max_retries, wait=True, executor_for=None, poll=0.2):
    """Run the job graph; a failing job exits 1 with its command and log, Ctrl-C exits 130 (rerun resumes)."""
    from nnunet_recur.workflow.driver import Driver, JobError, report_failure
    from nnunet_recur.workflow.graph import GraphError, JobGraph
    from nnunet_recur.workflow.journal import JournalError

    try:
        driver = Driver(JobGraph(jobs), folder, executor, env=env, console=console, max_retries=max_retries,
                        executor_for=executor_for, poll_seconds=poll)  # fmt: skip
        driver.run(wait=wait)
    except JobError as err:
        report_failure(console, err)
        raise typer.Exit(FAILED_CASES) from err
    except (JournalError, GraphError) as err:
        console.print(f"[red]error:[/red] {err}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from err
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted.[/yellow] Run the same command again to resume.")
        raise typer.Exit(INTERRUPTED) from None
    return driver


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
    size: CohortSize = typer.Option(
        CohortSize(DEFAULT_SIZE),
        "--size",
        help="Synthetic image size: 'demo' (coarse voxels, for a CPU), 'small' (the same field of view at "
        "half the voxel size), 'paper' = the paper's 512 x 512 CT.",
    ),
    epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", min=0, help=_epochs_help()),
    pretrain_epochs: int = typer.Option(
        DEFAULT_PRETRAIN_EPOCHS,
        "--pretrain-epochs",
        min=0,
        help="Epochs of the HECKTOR pre-training (nnUNetTrainerRecurPretrain_<N>epochs, else the nearest "
        "shorter variant); 0 = the paper's recipe.",
    ),
    seeds: int = typer.Option(
        DEFAULT_SEEDS,
        "--seeds",
        min=1,
        max=5,
        help="Seeds per method; the best on validation Dice is kept (paper: 5).",
    ),  # fmt: skip
    device: DeviceChoice = typer.Option(
        DeviceChoice.auto,
        "--device",
        help="Where nnU-Net trains and predicts: " + DEVICE_HELP + " The defaults "
        "are sized for 2 CPU cores; with a GPU the demo may use more epochs (--epochs 100) in the same "
        "budget.",
    ),
    gpus: str = typer.Option(
        None, "--gpus", help="Local GPUs to run jobs on at once (one job per GPU), e.g. 0,1."
    ),
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
    seed: int = typer.Option(
        DEFAULT_SEED, "--seed", help="Seed of the synthetic cohorts (bench/demo_robustness.py tries others)."
    ),
) -> None:
    """Run the whole study on a synthetic cohort: synth -> convert -> plan -> train -> predict -> evaluate.

    Every job prints the public command it runs; its output goes to OUT/logs/.
    A rerun skips finished jobs (OUT/journal.json): Ctrl-C and rerun resumes.
    Table 1, statistics, figures and training curves land in OUT/report/.
    The last job predicts one test patient from DICOM (recur predict) into OUT/predict_new_patient/.

    Example: recur demo --out ./demo_out --seeds 1
    """
    from rich.console import Console

    from nnunet_recur.workflow import demo as d
    from nnunet_recur.workflow.executors.local import LocalExecutor

    console = Console(highlight=False)
    try:
        chosen_device = resolve_device(device)
    except DeviceError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from exc
    cfg = d.DemoConfig(
        out=d.display_path(out),
        size=size.value,
        epochs=epochs,
        seeds=seeds,
        device=chosen_device,
        inhouse_cases=inhouse_cases,
        hecktor_cases=hecktor_cases,
        seed=seed,
        pretrain_epochs=pretrain_epochs,
    )
    try:
        d.check_config(cfg)
        trainers = d.resolve_trainers(cfg.epochs, d.available_trainers(), cfg.pretrain_epochs)
        env = d.nnunet_environment(cfg.out, cfg.device)
        d.check_dataset_ids(env)
    except (ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from exc
    console.rule("nnunet-recur demo")
    console.print("The commands below need these variables (the demo sets them itself):", style="dim")
    for k, v in env.items():
        console.print(f"export {k}={v}", markup=False, soft_wrap=True)
    _print_cpu_env(console, cfg.device)
    console.print(f"Device: {cfg.device}", style="dim")
    if trainers.note:
        console.print(f"Note: {trainers.note}", style="dim")
    jobs = d.build_jobs(cfg, env, trainers)
    start = time.monotonic()
    driver = _drive(jobs, cfg.out, LocalExecutor(parse_gpus(gpus)), env, console, max_retries=None)
    d.print_table1(console, cfg.out / "report", meaning=d.DEMO_MEANING)
    console.print(f"Demo finished in {(time.monotonic() - start) / 60:.1f} min; logs in {driver.log_dir}")
    console.print(d.RESEARCH_NOTE)


def _print_cpu_env(console, device: str) -> None:
    """The variables every nnUNetv2_train / nnUNetv2_predict job gets on a CPU (why: workflow/cpu_env.py)."""
    from nnunet_recur.workflow.study import nnunet_job_env

    extra = nnunet_job_env(device)
    if extra:
        console.print("On a CPU, the nnU-Net training and prediction jobs also get:", style="dim")
        for k, v in extra.items():
            console.print(f"export {k}={v}", markup=False, soft_wrap=True)


def cv(
    dataset_id: int = typer.Argument(..., help="nnU-Net dataset id (planned with `recur plan`)."),
    trainer: str = typer.Option("nnUNetTrainerRecur", "--trainer", help="Trainer class (`-tr`)."),
    folds: str = typer.Option(
        "0,1,2,3,4", "--folds", help="Comma-separated folds to train (independent jobs)."
    ),
    device: DeviceChoice = typer.Option(
        DeviceChoice.auto, "--device", help="Where nnU-Net trains: " + DEVICE_HELP + " (Slurm: auto = cuda)"
    ),
    # Alike in shape to `recur predict`'s options: typer reads each command's options from its signature.
    out: Path = typer.Option(
        None, "--out", help="Report folder (default ./recur_cv/DatasetXXX_Name/TRAINER)."
    ),
    gpus: str = typer.Option(None, "--gpus", help="Local GPUs to train folds on at once, e.g. 0,1."),
    config: Path = typer.Option(
        None,
        "--executor-config",
        help="A study TOML whose executor and resources tables say where folds run (Slurm).",
    ),
    max_retries: int = typer.Option(2, "--max-retries", min=0, help="Resubmissions of a failed job."),
) -> None:
    """Cross-validate a trainer, then evaluate its out-of-fold predictions per fold and pooled.

    Folds are independent jobs (nnUNetv2_train -p nnUNetRecurPlans -c 3d_recur --npz): one after another,
    one per GPU with --gpus, or one Slurm job each with --executor-config STUDY.toml.
    Then `recur-eval compare` on each fold's validation predictions and on all folds pooled.

    Needs nnUNet_raw, nnUNet_preprocessed and nnUNet_results exported.
    A rerun resumes: finished folds are skipped, running ones re-attached, failed ones resumed with --c.

    Example: recur cv 502 --trainer nnUNetTrainerRecur --folds 0,1,2,3,4 --device cuda
    """
    from rich.console import Console

    from nnunet_recur.workflow import cv as c
    from nnunet_recur.workflow import study as s

    console = Console(highlight=False)
    try:
        fold_list = c.parse_folds(folds)
        ex_cfg = s.ExecutorConfig(kind="local", gpus=parse_gpus(gpus), max_retries=max_retries)
        if config is not None:
            ex_cfg = s.load_study(config).executor
        chosen_device = resolve_device(device, runs_here=ex_cfg.kind == "local")
        env = c.cv_environment(chosen_device)
        dataset = c.dataset_folder_name(Path(env["nnUNet_raw"]), dataset_id)
        out_dir = (out or Path("recur_cv") / dataset / trainer).resolve()
        stages = c.build_cv_jobs(dataset_id, trainer, fold_list, chosen_device, out_dir, env)
        executor, executor_for = s.make_executors(ex_cfg, out_dir)
        if len(fold_list) > 1 and not c.pooled_is_possible(stages):
            console.print(
                "Note: these folds share validation patients (splits_final.json); no pooled evaluation. "
                "Convert with `--split cv5` for a cross-validation with disjoint folds."
            )
    except (ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from exc
    _drive(stages, out_dir, executor, env, console, max_retries=ex_cfg.max_retries, executor_for=executor_for,
           poll=ex_cfg.poll_interval())  # fmt: skip
    pooled = " and pooled/" if c.pooled_is_possible(stages) else ""
    console.print(
        f"Cross-validation reports in {out_dir} (fold_*/{pooled}: table1.md, per_case.csv, stats.json)"
    )


# ------------------------------------------------------------------------------------------------
# recur study run | status

study_app = typer.Typer(
    help="The paper's study from one TOML file, as jobs here or on a Slurm cluster (docs/cluster.md).",
    no_args_is_help=True,
)


class ExecutorKind(str, Enum):
    local = "local"
    slurm = "slurm"


@study_app.command("run")
def study_run(
    study_file: Path = typer.Argument(..., help="The study TOML (datasets, methods, seeds, executor)."),
    executor: ExecutorKind = typer.Option(
        None, "--executor", help="Override the executor kind of the study file."
    ),
    gpus: str = typer.Option(None, "--gpus", help="Local executor: GPUs to run jobs on at once, e.g. 0,1."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Override the seeds of the study file."),
    epochs: int = typer.Option(
        None, "--epochs", min=0, help="Override the epochs of the study file (0 = the recipe)."
    ),
    device: DeviceChoice = typer.Option(
        None,
        "--device",
        help="Override the device of the study file: " + DEVICE_HELP + " (Slurm: auto = cuda)",
    ),
    folder: Path = typer.Option(None, "--folder", help="Override the study folder (journal, logs, report)."),
    max_retries: int = typer.Option(None, "--max-retries", min=0, help="Resubmissions of a failed job."),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the jobs to the end, or submit what is ready and exit."
    ),
) -> None:
    """Build the study's job graph, submit what is ready and follow it; a rerun resumes.

    pretrain -> AI finetune seeds; AI random seeds; best seed per method (recur best-seed) -> predict test
    -> SUVmax/GTV baselines -> recur-eval compare (Table 1). Every job is a public command, printed before
    it is submitted; the journal is STUDY_FOLDER/journal.json.

    Example: recur study run study.toml && recur study status study_paper
    """
    import os

    from rich.console import Console

    from nnunet_recur.workflow import study as s

    console = Console(highlight=False)
    overrides = {
        "kind": executor.value if executor else None,
        "gpus": parse_gpus(gpus) or None,
        "seeds": seeds,
        "epochs": epochs,
        "device": device.value if device else None,
        "folder": folder,
        "max_retries": max_retries,
    }
    try:
        cfg = s.load_study(study_file, overrides)
        env = s.nnunet_paths(cfg, os.environ)
        jobs, note = s.build_study(cfg, env, s.available_trainers())
        ex, executor_for = s.make_executors(cfg.executor, cfg.folder)
    except (ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from exc
    console.rule(f"recur study: {cfg.folder} ({cfg.executor.kind})")
    for k, v in env.items():
        console.print(f"export {k}={v}", markup=False, soft_wrap=True)
    _print_cpu_env(console, cfg.device)
    if note:
        console.print(f"Note: {note}", style="dim")
    start = time.monotonic()
    _drive(jobs, cfg.folder, ex, env, console, cfg.executor.max_retries, wait=wait, executor_for=executor_for,
           poll=cfg.executor.poll_interval())  # fmt: skip
    if (cfg.folder / "report" / "table1.md").is_file():
        from nnunet_recur.workflow.demo import print_table1

        print_table1(console, cfg.folder / "report")
    console.print(
        f"Driver ran {(time.monotonic() - start) / 60:.1f} min; journal {cfg.folder / 'journal.json'}"
    )


@study_app.command("status")
def study_status(
    folder: Path = typer.Argument(..., help="The study folder (holds journal.json)."),
    watch: bool = typer.Option(False, "--watch", help="Redraw every few seconds until all jobs ended."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between redraws with --watch."),
) -> None:
    """A table of the study's jobs: state, job id, node, elapsed time, epochs done, best validation Dice."""
    from rich.console import Console
    from rich.live import Live

    from nnunet_recur.workflow.journal import ACTIVE, JOURNAL_FILE, JournalError
    from nnunet_recur.workflow.status import study_rows

    console = Console(highlight=False)
    if not (folder / JOURNAL_FILE).is_file():
        console.print(f"[red]error:[/red] {folder / JOURNAL_FILE}: no journal (run `recur study run` first)")
        raise typer.Exit(BAD_INPUT)
    try:
        rows = study_rows(folder)
    except JournalError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(BAD_INPUT) from exc
    if not watch:
        console.print(_status_table(rows))
        return
    with Live(_status_table(rows), console=console, refresh_per_second=1) as live:
        while any(r.state in ACTIVE or r.state == "pending" for r in rows):
            time.sleep(interval)
            rows = study_rows(folder)
            live.update(_status_table(rows))


def _status_table(rows):
    from rich.table import Table

    from nnunet_recur.workflow.driver import format_seconds

    table = Table(title="recur study status", title_justify="left")
    for col in ("job", "state", "job id", "node", "elapsed", "epochs", "best val Dice", "attempts"):
        table.add_column(col, no_wrap=True)
    styles = {"done": "green", "running": "cyan", "queued": "yellow", "failed": "red"}
    for r in rows:
        table.add_row(
            r.job,
            f"[{styles.get(r.state, 'white')}]{r.state}[/]",
            r.job_id,
            r.node,
            format_seconds(r.elapsed) if r.elapsed is not None else "",
            "" if r.epochs is None else str(r.epochs),
            "" if r.best_dice is None else f"{r.best_dice:.3f}",
            str(r.attempts),
        )
    return table
