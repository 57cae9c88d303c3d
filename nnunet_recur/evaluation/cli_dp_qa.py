"""`recur-eval dp-qa`: the command function, kept apart so evaluation/cli.py registers it with one line; the
work is in ``dp_qa.py``."""

from __future__ import annotations

from pathlib import Path

import typer


def dp_qa(
    prescription: Path = typer.Option(
        ..., "--prescription", help="the prescription RT Dose (recur predict --dose-map)"
    ),
    planned: Path = typer.Option(
        ..., "--planned", help="the RT Dose of the plan returned by the planning system"
    ),
    region: str = typer.Option(None, "--region", help="ROI name of the region to score (with --rtstruct)"),
    rtstruct: Path = typer.Option(None, "--rtstruct", help="the RTSTRUCT holding --region (same frame)"),
    out: Path = typer.Option(..., "--out", help="folder for dp_qa.json, dp_qa.png and dp_qa.md"),
) -> None:
    """Plan QA against a dose-painting prescription: quality-volume histogram of Q = planned / prescribed
    (Vanderstraeten et al. 2006), the fraction of voxels with Q in [0.95, 1.05], the quality factor
    Q_F = mean |Q - 1| and the DVHs of both.

    The planned dose is resampled linearly onto the prescription grid; a planned dose on another frame of
    reference is refused. Without --region every voxel with a prescription > 0 is scored; for a
    `recur predict --dose-map` prescription give --region DP_region --rtstruct RS_recur_dose_levels.dcm.
    """
    from nnunet_recur.evaluation.dp_qa import run_dp_qa, write_dp_qa
    from nnunet_recur.evaluation.volumes import EvaluationError
    from nnunet_recur.exit_status import BAD_INPUT

    try:
        result = run_dp_qa(prescription, planned, region, rtstruct)
        write_dp_qa(result, out)
    except EvaluationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    q = result.summary["quality"]
    typer.echo(
        f"Q in [0.95, 1.05]: {q['fraction_q_in_0.95_1.05']:.4f} of {q['voxels']} voxels; "
        f"Q_F {q['quality_factor_qf']:.4f}; wrote {out / 'dp_qa.md'}"
    )
