"""`recur calibrate MODEL`: thin typer layer over prediction.calibration_fit (registered in cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

CALIBRATE_HELP = "\n\n".join(
    [
        "Fit temperature (or Platt) scaling of the model's relapse probability on its validation cases.",
        "Minimises the voxel NLL over the region (default: within 20 mm of the GTV, inside the body) of the "
        "saved validation probabilities fold_F/validation/<case>.npz (nnUNetv2_train --npz), and writes "
        "MODEL/calibration.json (method, parameters, the cases fitted on, ECE/NLL before and after). "
        "`recur predict` then applies it unless --no-calibration. Temperature scaling keeps the 0.5 level: "
        "ROIs at 0.5 do not move; other thresholds, --boost-cc and dose maps do.",
        "Example: recur calibrate "
        "$nnUNet_results/Dataset502_RecurOPSCC/nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur",
    ]
)


def calibrate(
    model: str = typer.Argument(
        ..., help="Trained model folder (<Trainer>__<Plans>__<config>), as `recur predict --model` takes."
    ),
    folds: str = typer.Option(
        "best",
        "--folds",
        "-f",
        help="'best' (the seed recur predict uses), 'all' (every fold's out-of-fold predictions, as after "
        "recur cv) or fold numbers (0,1)",
    ),
    method: str = typer.Option("temperature", "--method", help="temperature (default) or platt"),
    region: str = typer.Option("gtv+20mm", "--region", help="fitting voxels: gtv+20mm, body or all"),
    gt: Path | None = typer.Option(
        None, "--gt", help="reference labels (default $nnUNet_preprocessed/<dataset>/gt_segmentations)"
    ),
    # Alike in shape to `recur-eval suvmax-sweep`'s options (evaluation/cli.py): typer reads each command's
    # options from its own signature; these have their own defaults ($nnUNet_raw, imagesTr) and help.
    masks: Path | None = typer.Option(
        None, "--masks", help="<case>_gtv.nii.gz folder (default $nnUNet_raw/<dataset>/masksTr)"
    ),
    images: Path | None = typer.Option(
        None, "--images", help="CT <case>_0000.nii.gz folder for the body (default imagesTr when present)"
    ),
    skip_if_no_signal: bool = typer.Option(
        False,
        "--skip-if-no-signal",
        help="when the validation logits do not rise with relapse (an untrained model), say so, write no "
        "calibration.json and exit 0 instead of 2 (scripts such as the demo's short runs)",
    ),
) -> None:
    """Fit a calibration of the model's relapse probability (help text: CALIBRATE_HELP)."""
    from nnunet_recur.evaluation.volumes import EvaluationError
    from nnunet_recur.exit_status import BAD_INPUT
    from nnunet_recur.prediction.calibration import CalibrationError, NoSignalError, write_calibration
    from nnunet_recur.prediction.calibration_fit import default_inputs, describe, fit_model_calibration
    from nnunet_recur.prediction.model import ModelError, resolve_model

    resolved = None
    try:
        if region not in ("gtv+20mm", "body", "all"):
            raise CalibrationError(f"--region {region!r}: choose gtv+20mm, body or all")
        resolved = resolve_model(model)
        if resolved.source != str(resolved.folder):
            raise CalibrationError(f"{model}: calibrate a model folder (a zip cannot store calibration.json)")
        inputs = default_inputs(resolved, gt, masks, images, region)
        calibration = fit_model_calibration(resolved, inputs, folds, method)
        path = write_calibration(resolved.folder, calibration)
    except NoSignalError as exc:
        if not skip_if_no_signal:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(BAD_INPUT) from None
        typer.echo(f"note: {exc}; no calibration.json written (--skip-if-no-signal)")
        return
    except (ModelError, CalibrationError, EvaluationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    finally:
        if resolved is not None:
            resolved.close()
    typer.echo(describe(calibration))
    typer.echo(f"wrote {path}")
