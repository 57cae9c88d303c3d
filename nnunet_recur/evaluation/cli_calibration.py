"""`recur-eval calibration`: the command function, registered in evaluation/cli.py with one line; the work is
in ``calibration_inputs.py`` (reading, region), ``calibration.py`` (metrics) and ``calibration_report.py``."""

from __future__ import annotations

from pathlib import Path

import typer


def calibration(
    out: Path = typer.Option(..., "--out", help="output folder: calibration.json/.csv/.md, reliability.png"),
    gt: Path = typer.Option(..., "--gt", help="reference relapse labels folder (<case>.nii.gz)"),
    pred: list[str] = typer.Option(
        ...,
        "--pred",
        help="a method as NAME=DIR holding probabilities: <case>.npz (nnU-Net --save_probabilities), "
        "<case>.nii.gz (float) or <case>/probability.nii.gz (recur predict); repeat per method",
    ),
    region: str = typer.Option(
        "gtv+20mm", "--region", help="voxels scored: gtv+20mm (default, inside the body), body or all"
    ),
    # Alike in shape to `recur-eval compare`'s folder options: typer reads each command's options from its
    # own signature, and this command reads other files from these folders (the GTV, the CT for the body).
    masks: Path | None = typer.Option(None, "--masks", help="masks folder holding <case>_gtv.nii.gz"),
    images: Path | None = typer.Option(
        None, "--images", help="images folder holding the CT <case>_0000.nii.gz (for the body)"
    ),
    cases: str | None = typer.Option(
        None, "--cases", help="a comma list or a file with one case per line (default: every label)"
    ),
    calibration_file: Path | None = typer.Option(
        None,
        "--calibration",
        help="a calibration.json (recur calibrate): every --pred is scored twice, as saved and calibrated",
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the patient-level bootstrap"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="bootstrap resamples (0: no CIs)"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes, one case each at a time"),
) -> None:
    """Measure how well predicted probabilities match observed relapse frequencies (calibration).

    Per method, pooled over the voxels of the region (default: within 20 mm of the GTV, inside the body
    when --images gives the CT): ECE (15 equal-width bins), adaptive ECE (equal-mass bins), MCE, Brier
    score and NLL, each with a patient-level bootstrap 95 % CI; a reliability diagram (reliability.png);
    and the predicted probability at every point of origin against whether the 0.5 ROI captures it
    (po_reliability.csv). Files are swapped in together (OUT/calibration.status.json says whether the
    last run completed). Bad input (missing case, grids that differ, values outside [0, 1]) exits 2.

    With --calibration MODEL/calibration.json every method is also scored after that calibration
    ("NAME, calibrated"), so the fit can be checked on held-out test cases.

    Example: recur-eval calibration --gt raw/labelsTs --masks raw/masksTs --images raw/imagesTs
    --pred "AI random=pred/ai_random" --calibration MODEL/calibration.json --out eval/calibration
    """
    from nnunet_recur.evaluation.cli import _case_selection, _reported_errors
    from nnunet_recur.evaluation.staging import staged_report

    with _reported_errors():
        from nnunet_recur.evaluation import calibration as cal
        from nnunet_recur.evaluation.volumes import EvaluationError

        if region not in cal.REGIONS:
            raise EvaluationError(f"--region {region!r}: choose one of {', '.join(cal.REGIONS)}")
        if region == "gtv+20mm" and masks is None:
            raise EvaluationError("--region gtv+20mm needs --masks (the folder of <case>_gtv.nii.gz)")
        for option, folder in (("--masks", masks), ("--images", images)):
            if folder is not None and not folder.is_dir():
                raise EvaluationError(f"{option} {folder}: folder not found")
        methods = []
        for spec in pred:
            name, sep, folder = spec.partition("=")
            if not sep or not name.strip() or not folder.strip():
                raise EvaluationError(f"--pred {spec!r}: expected NAME=DIR")
            if not Path(folder.strip()).is_dir():
                raise EvaluationError(f"--pred {spec!r}: folder {folder.strip()} not found")
            methods.append((name.strip(), Path(folder.strip()), None))
        if calibration_file is not None:
            from nnunet_recur.prediction.calibration import CalibrationError, read_calibration

            try:
                fitted = read_calibration(calibration_file)
            except CalibrationError as exc:
                raise EvaluationError(str(exc)) from exc
            methods += [(f"{name}, calibrated", folder, fitted) for name, folder, _ in methods]
        names = [n for n, _, _ in methods]
        if len(set(names)) != len(names):
            raise EvaluationError(f"--pred names must differ: {', '.join(names)}")

    with _reported_errors(), staged_report(out, "calibration", _owned()) as stage:
        from nnunet_recur.evaluation.calibration_inputs import CalibrationCase, RegionInputs
        from nnunet_recur.evaluation.calibration_report import write_calibration_report
        from nnunet_recur.evaluation.parallel import map_cases
        from nnunet_recur.evaluation.provenance import provenance
        from nnunet_recur.evaluation.volumes import cases_in

        selected = _case_selection(cases_in(gt), gt, cases)
        job = CalibrationCase(RegionInputs(gt, masks, images, region), tuple(methods))
        results = map_cases(job, selected, workers, "calibration")
        settings = {
            "gt": str(gt),
            "masks": str(masks) if masks else None,
            "images": str(images) if images else None,
            "region": region,
            "margin_mm": cal.MARGIN_MM,
            "bins": cal.BINS,
            "bootstrap": bootstrap,
            "seed": seed,
            "methods": {n: str(f) for n, f, _ in methods},
            "calibration": str(calibration_file) if calibration_file else None,
        }
        extra = {"provenance": provenance([p for r in results for p in r["inputs"]])}
        summary = write_calibration_report(stage, results, names, settings, extra, seed, bootstrap)
    for note in summary["notes"]:
        typer.echo(f"note: {note}", err=True)
    typer.echo((out / "calibration.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/calibration.json, calibration.csv, calibration.md, reliability.png")


def _owned() -> tuple[str, ...]:
    from nnunet_recur.evaluation.calibration_report import OWNED

    return OWNED
