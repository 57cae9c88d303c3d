"""`recur predict`: a trained model on new patients (thin typer layer over prediction.pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.nnunet_names import CONFIGURATION, PLANS_NAME

PREDICT_HELP = "\n\n".join(
    [
        "Predict where a new patient's cancer may recur, from the pre-treatment DICOM (planning CT + PET + "
        "RTSTRUCT with the GTV) or the NIfTI layout (ct/pet/gtv.nii.gz), exactly as `recur convert inhouse` "
        "reads a patient folder. RESEARCH TOOL, NOT A MEDICAL DEVICE.",
        "Writes into OUT: probability.nii.gz (float32 on the full planning-CT grid; with several folds also "
        "uncertainty_std.nii.gz), RS_recur_prediction.dcm (RTSTRUCT for the planning system), "
        "SEG_recur_rois.dcm and SEG_recur_probability.dcm (DICOM SEG), report.html and summary.json. "
        "Several patients (or --cohort) go to OUT/<patient folder name>/; a failing patient is reported and "
        "the others go on; the exit code is non-zero when any patient failed.",
        "Example: recur predict /data/new/patient17 --model "
        "$nnUNet_results/Dataset502_RecurOPSCC/nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur "
        "--out pred17 --thresholds 0.3,0.5 --boost-cc 10",
    ]
)


def predict(
    patients: list[Path] = typer.Argument(
        ..., help="Patient folder(s); with --cohort, folders of patient folders."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (one patient) or parent folder (several)."
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Trained model folder (<Trainer>__<Plans>__<config>) or a zip from "
        "nnUNetv2_export_model_to_zip.",
    ),
    dataset: str = typer.Option(
        None, "-d", "--dataset", help="Dataset id or name under $nnUNet_results (instead of --model)."
    ),
    trainer: str = typer.Option("nnUNetTrainerRecur", "-tr", "--trainer", help="Trainer name, with -d."),
    plans: str = typer.Option(PLANS_NAME, "-p", "--plans", help="Plans identifier, with -d."),
    configuration: str = typer.Option(CONFIGURATION, "-c", "--configuration", help="Configuration, with -d."),
    folds: str = typer.Option(
        "best",
        "--folds",
        "-f",
        help="'best' (the seed chosen on validation) or the fold numbers to ensemble: --folds 0 1 2 3 4 "
        "(or 0,1,2,3,4).",
    ),
    thresholds: str = typer.Option(
        "0.5", "--thresholds", help="Probability thresholds, e.g. 0.3,0.5,0.7 (nested ROIs)."
    ),
    boost_cc: str = typer.Option(
        None, "--boost-cc", help="ROI volumes in cc, e.g. 5,10,20: the threshold giving that volume."
    ),
    within_gtv: bool = typer.Option(
        False, "--within-gtv", help="Restrict every ROI to the GTV (sub-volume boost)."
    ),
    include_gtv: bool = typer.Option(False, "--include-gtv", help="Also write the GTV used as an ROI."),
    suvmax_percent: float = typer.Option(
        None,
        "--suvmax-percent",
        help="SUVmax-threshold percent chosen on validation, for the summary's comparison.",
    ),
    roi_gtv: str = typer.Option(
        None, "--roi-gtv", help="Regex of the GTV ROI names (default: names starting 'GTV')."
    ),
    roi_brain: str = typer.Option(None, "--roi-brain", help="Regex of a brain ROI (default: Brain)."),
    pet_series: str = typer.Option(
        None, "--pet-series", help="PET SeriesInstanceUID or SeriesDescription regex, when several PETs."
    ),
    ct_series: str = typer.Option(
        None,
        "--ct-series",
        help="CT SeriesInstanceUID or SeriesDescription regex, when the RTSTRUCT names none.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    tta: bool = typer.Option(
        False, "--tta", help="Test-time mirroring, along the axes the trainer allows (off by default)."
    ),
    cohort: bool = typer.Option(
        False, "--cohort", help="Each PATIENTS folder holds one sub-folder per patient."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Patients predicted in parallel (processes, CPU)."
    ),
) -> None:
    """Predict relapse risk for new patients (help text: PREDICT_HELP)."""
    from nnunet_recur.prediction.levels import parse_list
    from nnunet_recur.prediction.model import ModelError, choose_folds, resolve_model
    from nnunet_recur.prediction.pipeline import PredictOptions, run_batch

    try:
        options = PredictOptions(
            thresholds=parse_list(thresholds, "--thresholds"),
            boost_cc=parse_list(boost_cc, "--boost-cc"),
            within_gtv=within_gtv,
            include_gtv=include_gtv,
            roi_gtv=roi_gtv,
            roi_brain=roi_brain,
            pet_series=pet_series,
            ct_series=ct_series,
            suvmax_percent=suvmax_percent,
        )
        if not options.thresholds and not options.boost_cc:
            raise ValueError("--thresholds and --boost-cc are both empty: nothing to contour")
        for t in options.thresholds:
            if not 0.0 <= t < 1.0:
                raise ValueError(f"--thresholds: {t} is outside [0, 1)")
        if any(v <= 0 for v in options.boost_cc):
            raise ValueError(f"--boost-cc: {boost_cc!r} has a volume <= 0")
        patients, fold_list = _split_fold_numbers(patients, folds)
        jobs = _jobs(patients, out, cohort)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    resolved = None
    try:
        resolved = resolve_model(
            model, dataset=dataset, trainer=trainer, plans=plans, configuration=configuration
        )
        chosen, how = choose_folds(resolved, fold_list)
        from nnunet_recur.prediction.inference import FoldPredictor

        predictor = FoldPredictor(resolved, chosen, device=device, tta=tta)
        predictor.fold_choice = how
        typer.echo(f"model {resolved.model_id}, folds {chosen} ({how}), device {predictor.predictor.device}")

        def report(result) -> None:
            if result.ok:
                typer.echo(f"ok   {result.patient} -> {result.out} ({result.seconds:.1f} s)")
            else:
                typer.echo(f"FAIL {result.patient} [{result.cause}]: {result.message}", err=True)

        results = run_batch(jobs, predictor, options, workers=workers, on_result=report)
    except ModelError as exc:
        typer.echo(f"error [model]: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        if resolved is not None:
            resolved.close()
    failed = [r for r in results if not r.ok]
    typer.echo(f"{len(results) - len(failed)} of {len(results)} patient(s) predicted")
    if failed:
        raise typer.Exit(1)


def _split_fold_numbers(patients: list[Path], folds: str) -> tuple[list[Path], list[str]]:
    """`--folds 0 1 2` reaches typer as --folds 0 plus the stray arguments 1 and 2: take those back
    (bare numbers that are not folders) when --folds is a number."""
    fold_list = folds.replace(",", " ").split()
    if fold_list and fold_list[-1].isdigit():
        stray = [p for p in patients if str(p).isdigit() and not p.exists()]
        fold_list += [str(p) for p in stray]
        patients = [p for p in patients if p not in stray]
    return patients, fold_list


def _jobs(patients: list[Path], out: Path, cohort: bool) -> list[tuple[Path, Path]]:
    folders = []
    for path in patients:
        if not path.is_dir():
            raise ValueError(f"{path}: not a folder")
        if cohort:
            folders.extend(sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")))
        else:
            folders.append(path)
    if not folders:
        raise ValueError("no patient folders found")
    names = [f.name for f in folders]
    if len(folders) > 1 and len(set(names)) != len(names):
        raise ValueError("two patient folders share a name; their outputs would collide")
    if len(folders) == 1 and not cohort:
        return [(folders[0], out)]
    return [(f, out / f.name) for f in folders]
