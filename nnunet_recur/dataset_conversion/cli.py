"""`recur convert ...`: turn cohorts into nnU-Net raw datasets (thin typer layer over cohort.py and the
readers; the work happens in the library)."""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.dataset_conversion.cli_readers import pet, rtstruct
from nnunet_recur.exit_status import BAD_INPUT

app = typer.Typer(
    help=(
        "Convert cohorts into nnU-Net v2 raw datasets (CT in HU + PET in SUV, region-based labels, crop box "
        "around the GTV, quality checks with an exclusion report)."
    ),
    no_args_is_help=True,
)
app.command("pet")(pet)
app.command("rtstruct")(rtstruct)

_RAW_DIR_HELP = "nnU-Net raw folder to write into (default: $nnUNet_raw)."
_REPORT_HELP = (
    "Folder for exclusions.csv, cases.csv, summary.json and the rerun state (names patients, so it must not "
    "lie inside nnUNet_raw). Default: ./recur_reports/DatasetXXX_Name/."
)
_ID_MAP_HELP = "Write the patient -> case pseudonym map (CSV patient,case) here; not written unless asked."
_WORKERS_HELP = "Patients converted in parallel (processes)."
_PET_SERIES_HELP = (
    "Which PET series to convert, when a patient has several: a SeriesInstanceUID or a regex of the "
    "SeriesDescription. Default: the one attenuation- and decay-corrected series "
    "(CorrectedImage ATTN + DECY)."
)
_CT_SERIES_HELP = (
    "Which CT series to convert when the RTSTRUCT references none of several: a SeriesInstanceUID or a "
    "regex of the SeriesDescription."
)

_RX_HELP = (
    "Prescriptions in Gy, e.g. 68,60,50, for patients whose RT Plan records none (or who have no RT Plan); "
    "written to doseTr|doseTs/<case>.json with prescription_source --rx."
)
_DOSE_PLAN_HELP = (
    "RT Plan SOPInstanceUID whose dose to use when a patient has PLAN doses of several plans (the error "
    "names them)."
)
_REQUIRE_DOSE_HELP = (
    "Exclude patients without an RT Dose (cause dose_missing); by default they convert without."
)


def _finish(summary) -> None:
    """Print the one-line summary and where things went; exit 0 when at least one patient converted."""
    typer.echo(f"dataset: {summary.dataset_folder}")
    if summary.box.size_mm is not None:
        size = " x ".join(f"{s:g}" for s in summary.box.size_mm)
        typer.echo(f"crop box ({summary.box.mode}): {size} mm (x, y, z), in voxels at each case's spacing")
    elif summary.box.size_voxels is not None:
        size = " x ".join(str(s) for s in summary.box.size_voxels)
        typer.echo(f"crop box ({summary.box.mode}): {size} voxels (x, y, z)")
    else:
        typer.echo("crop: none")
    if summary.split is not None:
        s = summary.split
        typer.echo(
            f"split ({s.mode}, seed {s.seed}): {len(s.train)} train, {len(s.val)} val, {len(s.test)} test"
        )
    if summary.splits_path is not None:
        typer.echo(f"splits_final.json: {summary.splits_path}")
    if summary.splits_note:
        typer.echo(summary.splits_note)
    typer.echo(f"report: {summary.report_dir} (exclusions.csv, cases.csv, summary.json)")
    typer.echo(f"{summary.written} case(s) written, {summary.skipped} unchanged and skipped")
    typer.echo(summary.line)
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for failure in summary.failed_for_non_data_reasons:
        typer.echo(f"error [{failure.cause}]: {failure.patient}: {failure.detail}", err=True)
    raise typer.Exit(summary.exit_code)


def _run(function, **kwargs) -> None:
    from nnunet_recur.dataset_conversion.nnunet_writer import DatasetLocationError

    try:
        summary = function(**kwargs)
    except (DatasetLocationError, OSError, ValueError) as exc:  # OSError: a report on a full disk
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from exc
    _finish(summary)


INHOUSE_HELP = "\n\n".join(
    [
        "Convert an in-house cohort (pre-treatment PET/CT + GTV + relapse contours) into a relapse dataset.",
        "Each patient folder is checked (PET missing, relapse missing, PET corrupt, uneven spacing, "
        "missing slice, frame of reference, GTV missing or outside the PET); CT and PET are cut to their "
        "common axial range, PET (SUV) is resampled onto the CT grid, and every case is cropped to one "
        "box around its GTV centre. Excluded patients go to REPORT_DIR/exclusions.csv and the run "
        "carries on; case ids are pseudonyms (RECUR_001, ...). Exit code 0 when at least one patient "
        "converted.",
        "Example: recur convert inhouse synth_out/patients --dataset-id 501 --split paper --seed 1 "
        "--id-map ids.csv",
    ]
)
HECKTOR_HELP = "\n\n".join(
    [
        "Convert the HECKTOR 2022 training release into a GTVp dataset for pre-training (AI finetune).",
        "PET is resampled onto the CT grid (linear), labels nearest neighbour; cases with an empty GTVp are "
        "excluded (gtv_missing), as the authors did; every converted case is a training case.",
        "Example: recur convert hecktor /data/hecktor2022 --dataset-id 501 --labels gtvp",
    ]
)


@app.command("inhouse", help=INHOUSE_HELP)
def inhouse(
    src: Path = typer.Argument(
        ...,
        help="Folder with one sub-folder per patient: a DICOM export (any file names and nesting) "
        "or ct/pet/gtv/relapse NIfTI.",
    ),
    dataset_id: int = typer.Option(..., "--dataset-id", help="nnU-Net dataset number (1-999)."),
    name: str = typer.Option("RecurOPSCC", "--name", help="Dataset name: DatasetXXX_<name>."),
    split: str = typer.Option(
        "paper",
        "--split",
        help="paper: random 60/20/20 train/val/test; cv5: 5-fold CV over train+val, test held out.",
    ),
    seed: int = typer.Option(12345, "--seed", help="Seed of the random split (recorded in dataset.json)."),
    crop: str = typer.Option(
        "auto",
        "--crop",
        help="auto: box from the train+val GTV/relapse extent + 15 %; fixed: 160 x 224 x 128 voxels; none.",
    ),
    # Alike in shape to `recur predict`'s --roi-*/--*-series options, with the converter's own defaults and
    # help: typer reads each command's options from its own signature.
    roi_gtv: str = typer.Option(
        None, "--roi-gtv", help="Regex for GTV ROI names (default: names starting 'GTV')."
    ),
    roi_relapse: str = typer.Option(
        None,
        "--roi-relapse",
        help="Regex for relapse ROI names (default: relapse|recur|recidiv|rezidiv|residiv).",
    ),
    roi_brain: str = typer.Option(
        None,
        "--roi-brain",
        help="Regex for a brain ROI (default: Brain); without one the brain mask is automatic.",
    ),
    report_dir: Path = typer.Option(None, "--report-dir", help=_REPORT_HELP),
    id_map: Path = typer.Option(None, "--id-map", help=_ID_MAP_HELP),
    workers: int = typer.Option(1, "--workers", min=1, help=_WORKERS_HELP),
    raw_dir: Path = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
    pet_series: str = typer.Option(None, "--pet-series", help=_PET_SERIES_HELP),
    ct_series: str = typer.Option(None, "--ct-series", help=_CT_SERIES_HELP),
    rx: str = typer.Option(None, "--rx", help=_RX_HELP),
    dose_plan: str = typer.Option(None, "--dose-plan", help=_DOSE_PLAN_HELP),
    require_dose: bool = typer.Option(False, "--require-dose", help=_REQUIRE_DOSE_HELP),
    label_threshold: float = typer.Option(
        0.5,
        "--label-threshold",
        help="NIfTI masks with non-integer values (soft labels, e.g. resampled linearly) are cut at this "
        "fraction of their scale (1, or their maximum above 1); the report notes each one.",
    ),
) -> None:
    """Convert an in-house cohort into a relapse dataset (help text: INHOUSE_HELP).

    Example: recur convert inhouse synth_out/patients --dataset-id 501 --split paper --seed 1
    """
    from nnunet_recur.dataset_conversion.cohort import convert_inhouse
    from nnunet_recur.dataset_conversion.dose_conversion import parse_rx

    try:
        prescriptions = parse_rx(rx)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from exc
    _run(
        convert_inhouse,
        src=src,
        dataset_id=dataset_id,
        name=name,
        split=split,
        seed=seed,
        crop=crop,
        roi_gtv=roi_gtv,
        roi_relapse=roi_relapse,
        roi_brain=roi_brain,
        report_dir=report_dir,
        id_map=id_map,
        workers=workers,
        raw_dir=raw_dir,
        pet_series=pet_series,
        ct_series=ct_series,
        rx=prescriptions,
        dose_plan=dose_plan,
        require_dose=require_dose,
        label_threshold=label_threshold,
    )


@app.command("hecktor", help=HECKTOR_HELP)
def hecktor(
    src: Path = typer.Argument(
        ..., help="HECKTOR 2022 release folder (imagesTr/ with __CT/__PT, labelsTr/)."
    ),
    dataset_id: int = typer.Option(..., "--dataset-id", help="nnU-Net dataset number (1-999)."),
    name: str = typer.Option("HECKTOR2022", "--name", help="Dataset name: DatasetXXX_<name>."),
    labels: str = typer.Option("gtvp", "--labels", help="gtvp (the paper's pre-training) or gtvp+gtvn."),
    crop: str = typer.Option(
        "fixed-mm",
        "--crop",
        help="fixed-mm: the paper's 160 x 224 x 128-voxel box in mm (156.2 x 218.7 x 256 mm) around the "
        "GTVp centre, so that it still fits the patch after nnU-Net resamples HECKTOR to the relapse "
        "spacing; fixed: 160 x 224 x 128 voxels at HECKTOR's own spacing; auto; none.",
    ),
    report_dir: Path = typer.Option(None, "--report-dir", help=_REPORT_HELP),
    id_map: Path = typer.Option(None, "--id-map", help=_ID_MAP_HELP),
    workers: int = typer.Option(1, "--workers", min=1, help=_WORKERS_HELP),
    raw_dir: Path = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
) -> None:
    """Convert the HECKTOR 2022 release into a GTVp dataset (help text: HECKTOR_HELP).

    Example: recur convert hecktor /data/hecktor2022 --dataset-id 501 --labels gtvp
    """
    from nnunet_recur.dataset_conversion.cohort import convert_hecktor

    _run(
        convert_hecktor,
        src=src,
        dataset_id=dataset_id,
        name=name,
        labels=labels,
        crop=crop,
        report_dir=report_dir,
        id_map=id_map,
        workers=workers,
        raw_dir=raw_dir,
    )


@app.command("new-patient")
def new_patient(
    patient: Path = typer.Argument(
        ..., help="One patient folder (DICOM CT + PET + RTSTRUCT with a GTV, or ct/pet/gtv NIfTI)."
    ),
    dataset: Path = typer.Option(
        ...,
        "--dataset",
        help="The converted training dataset folder (DatasetXXX_Name); its dataset.json holds the crop box.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for nnUNetv2_predict -i (masks go to OUT/masks)."),
    case: str = typer.Option("RECUR_NEW", "--case", help="Case id of the written files (a pseudonym)."),
    roi_gtv: str = typer.Option(None, "--roi-gtv", help="Regex of the GTV ROI names (default: TPS names)."),
    roi_brain: str = typer.Option(None, "--roi-brain", help="Regex of a brain ROI, if the RTSTRUCT has one."),
    pet_series: str = typer.Option(None, "--pet-series", help=_PET_SERIES_HELP),
    ct_series: str = typer.Option(None, "--ct-series", help=_CT_SERIES_HELP),
) -> None:
    """Prepare a new patient (no relapse yet) exactly like the training data, for nnUNetv2_predict.

    Same checks, PET -> SUV on the CT grid, and the crop box recorded in the dataset's dataset.json
    ("recur_crop"), centred on this patient's GTV. Writes OUT/<case>_0000.nii.gz (CT),
    OUT/<case>_0001.nii.gz (PET, SUV), OUT/<case>_0002.nii.gz (PET z-scored over the whole stored PET, the
    network's PET input) and OUT/masks/<case>_gtv|_brain.nii.gz.

    Example: recur convert new-patient /data/new/patient17 --dataset $nnUNet_raw/Dataset502_RecurOPSCC
    --out new_cases
    """
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.new_patient import prepare_new_patient

    if not (dataset / "dataset.json").is_file():
        typer.echo(f"error: {dataset}: no dataset.json (pass the DatasetXXX_Name folder)", err=True)
        raise typer.Exit(BAD_INPUT)
    try:
        written = prepare_new_patient(
            patient,
            dataset,
            out,
            case,
            roi_gtv=roi_gtv,
            roi_brain=roi_brain,
            pet_series=pet_series,
            ct_series=ct_series,
        )
    except ConversionError as err:
        typer.echo(f"error [{err.cause}]: {err}", err=True)
        raise typer.Exit(BAD_INPUT) from err
    except (ValueError, OSError) as err:  # a case id with separators, a full disk
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(BAD_INPUT) from err
    except KeyError as err:
        typer.echo(f"error: {dataset / 'dataset.json'}: no crop box {err} recorded", err=True)
        raise typer.Exit(BAD_INPUT) from err
    for path in written.values():
        typer.echo(str(path))
