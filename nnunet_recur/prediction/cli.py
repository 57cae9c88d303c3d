"""`recur predict`: a trained model on new patients (thin typer layer over prediction.pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.device_choice import DEVICE_HELP, DeviceChoice
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES
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
        "--dose-map adds a dose-painting-by-numbers PRESCRIPTION (not a calculated dose): "
        "dose_prescription.nii.gz, an RT Dose with its prescription-only RT Plan, a Parametric Map, the "
        "region and --levels ROIs (RS_recur_dose_levels.dcm) and dose_map.json (docs/prediction.md).",
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
    # These options are alike in shape to each other and to other commands' (`recur cv`, `recur convert`'s
    # --roi-*): typer reads each command's options from its own signature, each with its own help.
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
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help=DEVICE_HELP),
    # alike in shape to --suvmax-percent/--roi-gtv above (see the note on --within-gtv)
    calibration: bool = typer.Option(
        True,
        "--calibration/--no-calibration",
        help="Apply the model's calibration.json (from `recur calibrate`) when present (default).",
    ),
    tta: bool = typer.Option(
        False, "--tta", help="Test-time mirroring, along the axes the trainer allows (off by default)."
    ),
    cohort: bool = typer.Option(
        False, "--cohort", help="Each PATIENTS folder holds one sub-folder per patient."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Patients predicted in parallel (processes, CPU)."
    ),
    dose_map: bool = typer.Option(
        False, "--dose-map", help="Dose painting by numbers: write the prescription (docs/prediction.md)."
    ),
    base_gy: float = typer.Option(68.0, "--base-gy", help="Dose outside the region, and D_low (Gy)."),
    boost_gy: float = typer.Option(80.0, "--boost-gy", help="D_high: dose where p >= --p-hi (Gy)."),
    p_lo: float = typer.Option(0.0, "--p-lo", help="Probability at and below which D_low applies."),
    p_hi: float = typer.Option(1.0, "--p-hi", help="Probability at and above which D_high applies."),
    margin_mm: float = typer.Option(5.0, "--margin-mm", help="Region: the GTV grown by this margin (mm)."),
    region_roi: str = typer.Option(None, "--region-roi", help="Region: this RTSTRUCT ROI instead."),
    iso_mean: bool = typer.Option(
        False, "--iso-mean", help="Redistribute at equal mean region dose (--mean-gy) within bounds."
    ),
    mean_gy: float = typer.Option(None, "--mean-gy", help="--iso-mean target mean (default --base-gy)."),
    min_gy: float = typer.Option(60.0, "--min-gy", help="--iso-mean lowest voxel dose (Gy)."),
    max_gy: float = typer.Option(
        None, "--max-gy", help="--iso-mean highest voxel dose (default --boost-gy)."
    ),
    levels: int = typer.Option(None, "--levels", help="Quantise to N dose levels (3-11), one ROI each."),
    report_patient_id: bool = typer.Option(
        False, "--report-patient-id", help="Print the CT's PatientID on report.html (off by default)."
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
            report_patient_id=report_patient_id,
            calibration=calibration,
        )
        if dose_map:
            from nnunet_recur.prediction.dose_painting import DoseMapOptions

            options.dose_map = DoseMapOptions(
                base_gy=base_gy,
                boost_gy=boost_gy,
                p_lo=p_lo,
                p_hi=p_hi,
                margin_mm=margin_mm,
                region_roi=region_roi,
                iso_mean=iso_mean,
                mean_gy=mean_gy,
                min_gy=min_gy,
                max_gy=max_gy,
                levels=levels,
            )
            options.dose_map.validate()
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
        raise typer.Exit(BAD_INPUT) from exc

    def report(result) -> None:
        if result.ok:
            typer.echo(f"ok   {result.patient} -> {result.out} ({result.seconds:.1f} s)")
        else:
            typer.echo(f"FAIL {result.patient} [{result.cause}]: {result.message}", err=True)

    from nnunet_recur.prediction.precheck import split_jobs

    resolved = None
    try:
        resolved = resolve_model(  # reads the model folder's JSON only; the weights load below
            model, dataset=dataset, trainer=trainer, plans=plans, configuration=configuration
        )
        chosen, how = choose_folds(resolved, fold_list)
        jobs, results = split_jobs(jobs, roi_gtv)  # the folders' cheap checks, before the weights load
        for result in results:
            report(result)
        if not jobs:
            typer.echo(f"0 of {len(results)} patient(s) predicted")
            raise typer.Exit(FAILED_CASES)
        from nnunet_recur.prediction.inference import FoldPredictor

        predictor = FoldPredictor(resolved, chosen, device=device.value, tta=tta)
        predictor.fold_choice = how
        typer.echo(f"model {resolved.model_id}, folds {chosen} ({how}), device {predictor.predictor.device}")
        typer.echo(_calibration_line(resolved.folder, calibration))
        results += run_batch(jobs, predictor, options, workers=workers, on_result=report)
    except ModelError as exc:
        typer.echo(f"error [model]: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from exc
    finally:
        if resolved is not None:
            resolved.close()
    failed = [r for r in results if not r.ok]
    typer.echo(f"{len(results) - len(failed)} of {len(results)} patient(s) predicted")
    if failed:
        raise typer.Exit(FAILED_CASES)


def _calibration_line(folder: Path, enabled: bool) -> str:
    """Read the model's calibration once up front, so a damaged calibration.json fails before any patient."""
    from nnunet_recur.prediction.calibration import CalibrationError, load_calibration
    from nnunet_recur.prediction.model import ModelError

    try:
        found = load_calibration(folder) if enabled else None
    except CalibrationError as exc:
        raise ModelError(str(exc)) from exc
    if found is None:
        return "calibration: off (--no-calibration)" if not enabled else "calibration: none (uncalibrated)"
    return f"calibration: {found.describe()}"


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
