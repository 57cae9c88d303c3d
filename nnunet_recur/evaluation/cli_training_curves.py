"""`recur-eval training-curves`: the command function, kept apart so evaluation/cli.py registers it with
one line (``_command("training-curves")(training_curves)``); the work is in ``training_curves.py``."""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.exit_status import BAD_INPUT


def training_curves(
    run: list[str] = typer.Option(
        ...,
        "--run",
        help="a trained run as LABEL=FOLD_DIR (an nnU-Net fold_k folder); repeat for every method and seed",
    ),
    out: Path = typer.Option(..., "--out", help="folder for training_curves.png/.csv/.json"),
) -> None:
    """Plot validation Dice and learning rate per epoch for each run, the kept epoch marked.

    Reads nnU-Net's logger from checkpoint_final.pth (checkpoint_latest.pth for an interrupted run) and the
    kept epoch from recur_best.json. nnU-Net's own progress.png stays in each fold folder.
    """
    from nnunet_recur.evaluation.training_curves import (  # noqa: PLC0415 - torch/matplotlib on use only
        TrainingCurveError,
        read_training_curve,
        write_training_curves,
    )

    curves = []
    try:
        for item in run:
            label, sep, folder = item.partition("=")
            if not sep or not label.strip() or not folder.strip():
                raise TrainingCurveError(f"--run {item!r}: expected LABEL=FOLD_DIR")
            curves.append(read_training_curve(Path(folder), label.strip()))
        paths = write_training_curves(curves, out)
    except TrainingCurveError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    for c in curves:
        kept = "none" if c.chosen_epoch is None else f"epoch {c.chosen_epoch}"
        typer.echo(f"{c.label}: {c.epochs} epochs, kept {kept}")
    typer.echo(f"wrote {paths['png']}")
