"""`recur-eval`: the paper's evaluation (II.F-II.H) on files in nnU-Net's naming.

The commands parse arguments, call the evaluation modules and print where the results went; all
computing lives in the modules. Heavy imports (numpy, SimpleITK, scipy, matplotlib) happen inside the
commands so that `recur-eval --help` stays instant.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from nnunet_recur.evaluation.cli_calibration import calibration
from nnunet_recur.evaluation.cli_dose import dose_pattern
from nnunet_recur.evaluation.cli_dp_qa import dp_qa
from nnunet_recur.evaluation.cli_federated import pool, site_summary
from nnunet_recur.evaluation.cli_training_curves import training_curves
from nnunet_recur.evaluation.inputs import case_selection as _case_selection
from nnunet_recur.evaluation.inputs import folders_from_dataset as _folders
from nnunet_recur.evaluation.inputs import require_option as _require
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES

app = typer.Typer(
    name="recur-eval",
    help=(
        "Evaluate relapse predictions as the paper does (Kutnar et al. 2023, II.F-II.H): Dice, recall, "
        "precision, volumes in cc, points of origin (PO) captured, the SUVmax-threshold and GTV-contour "
        "baselines, paired tests, Table 1 and figures.\n\n"
        "Typical order: suvmax-sweep (validation cases) -> suvmax-predict and gtv-predict (test cases) "
        "-> compare (every method against labelsTs). Definitions: docs/evaluation.md."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _reflowed(text: str) -> str:
    """Docstring -> help text: lines of a paragraph joined, so rich wraps them to the terminal."""
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _command(name: str):
    """`app.command(name)` with the docstring reflowed into the help."""

    def register(function):
        app.command(name, help=_reflowed(function.__doc__ or ""))(function)
        return function

    return register


#: Exit status of an expected error (bad input, refused run): one `error:` line, no traceback, like a
#: usage error. A batch that ran but recorded failed cases exits 1.
ERROR_EXIT = BAD_INPUT


@contextmanager
def _reported_errors():
    """Bad input -> one clear line on stderr and exit status 2 (no traceback)."""
    from nnunet_recur.evaluation.volumes import EvaluationError

    try:
        yield
    except EvaluationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ERROR_EXIT) from None


SWEEP_OWNED = ("sweep.csv", "sweep_per_case.csv", "best.json", "figure4.png")
COMPARE_OWNED = (
    "per_case.csv",
    "points_of_origin.csv",
    "po_capture.csv",
    "table1.csv",
    "table1.md",
    "stats.json",
    "summary.json",
    "capture_curve.csv",
    "capture_vs_volume.png",
    "figures",
)


DATASET_HELP = (
    "nnU-Net raw dataset (folder, id such as 3, or name such as Dataset003_Recur under $nnUNet_raw); "
    "fills the folders not given explicitly"
)
CASES_HELP = "cases to use: a comma list (RECUR_001,RECUR_002) or a file with one case per line"
WORKERS_HELP = "worker processes, one case each at a time"


@_command("suvmax-sweep")
def suvmax_sweep(
    out: Path = typer.Option(..., "--out", help="output folder: sweep.csv, best.json, figure4.png"),
    images: Path | None = typer.Option(None, "--images", help="images folder holding PET <case>_0001.nii.gz"),
    masks: Path | None = typer.Option(
        None, "--masks", help="masks folder holding <case>_gtv.nii.gz and <case>_brain.nii.gz"
    ),
    gt: Path | None = typer.Option(None, "--gt", help="reference relapse labels folder (<case>.nii.gz)"),
    cases: str | None = typer.Option(None, "--cases", help=CASES_HELP),
    # Typer reads each command's options from its own signature, so these (and --all-cases) stay here though
    # they are alike in shape to `recur calibrate`'s and `recur synth`'s options (other flags, other help).
    splits: Path | None = typer.Option(
        None, "--splits", help="nnU-Net splits_final.json: use the validation cases of --fold"
    ),
    fold: int | None = typer.Option(
        None, "--fold", help="fold of --splits (with --dataset, splits default to $nnUNet_preprocessed)"
    ),
    all_cases: bool = typer.Option(
        False,
        "--all-cases",
        help="sweep every reference label (training and validation cases alike: the percent is then "
        "chosen on data the models trained on); needed when neither --splits/--fold nor --cases is given",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help=DATASET_HELP + " (imagesTr, labelsTr, masksTr)"
    ),
    workers: int = typer.Option(1, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Find the SUVmax-threshold percent with the best mean Dice on validation cases (paper Figure 4).

    SUVmax = highest PET (SUV) voxel inside the GTV; prediction at p % = PET >= p/100 x SUVmax (float64),
    brain voxels removed; p = 1..100, all 100 computed in one pass per case. The cases must be chosen:
    --splits/--fold (validation cases of a fold), --cases, or explicitly --all-cases. Writes
    OUT/sweep.csv (percent,mean_dice), OUT/sweep_per_case.csv, OUT/best.json ({"percent": P,
    "mean_dice": D, "cases": [...], "case_set": ...}) and OUT/figure4.png, all swapped in together
    (OUT/suvmax-sweep.status.json says whether the last run completed). A case that cannot be scored
    is recorded in best.json and the others go on (exit status 1); bad input exits 2.

    Example: recur-eval suvmax-sweep --images raw/imagesTr --masks raw/masksTr --gt raw/labelsTr
    --splits splits_final.json --fold 0 --out eval/sweep
    """
    from nnunet_recur.evaluation.staging import staged_report

    excluded: dict[str, str] = {}
    with _reported_errors(), staged_report(out, "suvmax-sweep", SWEEP_OWNED) as stage:
        import numpy as np

        from nnunet_recur.evaluation import baselines, figures, report
        from nnunet_recur.evaluation.parallel import map_cases
        from nnunet_recur.evaluation.provenance import provenance
        from nnunet_recur.evaluation.sweep import BaselineInputs, SweepCase, mean_dice
        from nnunet_recur.evaluation.volumes import (
            EvaluationError,
            brain_path,
            cases_in,
            find_dataset,
            gtv_path,
            label_path,
            pet_path,
            preprocessed_splits,
            write_json,
        )

        chosen = cases is not None or splits is not None or fold is not None
        if all_cases and chosen:
            raise EvaluationError("--all-cases goes alone: not with --cases or --splits/--fold")
        if not all_cases and not chosen:
            raise EvaluationError(
                "choose the sweep cases: --splits splits_final.json --fold F (the validation cases, as the "
                "paper), --cases LIST, or --all-cases (every label, training cases included)"
            )
        folders = _folders(dataset, "Tr", images=images, labels=gt, masks=masks)
        if dataset is not None and fold is not None and splits is None:
            splits = preprocessed_splits(find_dataset(dataset))
        labels = _require(folders["labels"], "--gt")
        inputs = BaselineInputs(
            images=_require(folders["images"], "--images"),
            masks=_require(folders["masks"], "--masks"),
            labels=labels,
        )
        selected = _case_selection(cases_in(labels), labels, cases, splits, fold)
        if fold is not None:
            case_set = f"validation cases of fold {fold}"
        elif cases is not None:
            case_set = "cases given by --cases"
        else:
            case_set = f"all cases in {labels.name} (training and validation)"
        outcomes = map_cases(SweepCase(inputs), selected, workers, "SUVmax sweep")
        scored = {c: o for c, o in zip(selected, outcomes, strict=True) if not isinstance(o, str)}
        excluded = {c: o for c, o in zip(selected, outcomes, strict=True) if isinstance(o, str)}
        for case, why in excluded.items():
            typer.echo(f"warning: {case} left out of the sweep: {why}", err=True)
        if not scored:
            raise EvaluationError("no case could be scored; nothing written")
        per_case = np.vstack(list(scored.values()))
        mean = mean_dice(per_case)
        percents = baselines.PERCENTS
        best = baselines.best_percent(percents, mean)
        report.write_csv(
            stage / "sweep.csv",
            [{"percent": int(p), "mean_dice": float(d)} for p, d in zip(percents, mean, strict=True)],
            ["percent", "mean_dice"],
        )
        report.write_csv(
            stage / "sweep_per_case.csv",
            [
                {"case": c, "percent": int(p), "dice": float(d)}
                for c, row in scored.items()
                for p, d in zip(percents, row, strict=True)
            ],
            ["case", "percent", "dice"],
        )
        read = [
            f(folder, c)
            for c in scored
            for f, folder in (
                (pet_path, inputs.images),
                (gtv_path, inputs.masks),
                (brain_path, inputs.masks),
                (label_path, labels),
            )
        ]
        write_json(
            stage / "best.json",
            {
                "percent": best[0],
                "mean_dice": best[1],
                "n_cases": len(scored),
                "case_set": case_set,
                "cases": list(scored),
                "excluded": excluded,
                "provenance": provenance(read + ([splits] if splits is not None else [])),
            },
        )
        figures.plot_sweep(percents, mean, best, stage / "figure4.png", f"{case_set}, n = {len(scored)}")
    typer.echo(f"best SUVmax threshold: {best[0]} % (mean Dice {best[1]:.3f} over {len(scored)} {case_set})")
    typer.echo(f"wrote {out / 'sweep.csv'}, {out / 'best.json'}, {out / 'figure4.png'}")
    if excluded:
        raise typer.Exit(FAILED_CASES)


def _write_predictions(job, selected: list[str], out: Path, workers: int, label: str) -> None:
    from nnunet_recur.evaluation.parallel import map_cases

    outcomes = map_cases(job, selected, workers, label)
    written = sum(o["status"] == "written" for o in outcomes)
    skipped = sum(o["status"] == "skipped" for o in outcomes)
    failed = {o["case"]: o["error"] for o in outcomes if o["status"] == "failed"}
    for case, why in failed.items():
        typer.echo(f"failed: {case}: {why}", err=True)
    typer.echo(f"{out}: {written} written, {skipped} already there (skipped), {len(failed)} failed")
    return failed


@_command("suvmax-predict")
def suvmax_predict(
    out: Path = typer.Option(..., "--out", help="output folder for <case>.nii.gz masks"),
    percent: float | None = typer.Option(
        None, "--percent", help="threshold in % of SUVmax, in (0, 100] (the paper used 38)"
    ),
    best: Path | None = typer.Option(None, "--best", help="best.json of suvmax-sweep (instead of --percent)"),
    images: Path | None = typer.Option(None, "--images", help="images folder holding PET <case>_0001.nii.gz"),
    masks: Path | None = typer.Option(
        None, "--masks", help="masks folder holding <case>_gtv.nii.gz and <case>_brain.nii.gz"
    ),
    cases: str | None = typer.Option(None, "--cases", help=CASES_HELP + " (default: every PET in --images)"),
    dataset: str | None = typer.Option(None, "--dataset", help=DATASET_HELP + " (imagesTs, masksTs)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="rewrite masks that already exist"),
    workers: int = typer.Option(1, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Write SUVmax-threshold predictions: PET >= P/100 x SUVmax(GTV), brain removed, as <case>.nii.gz.

    Reruns skip masks already written with the same percent (OUT/suvmax_predict.json records it); a
    case that fails (empty GTV, SUVmax <= 0 or non-finite, missing or damaged file, grids that differ)
    is reported and the others go on (exit 1). With --best, the cases the sweep chose the percent on
    are refused (predicting them would score the baseline on its own tuning data).

    Example: recur-eval suvmax-predict --percent 38 --images raw/imagesTs --masks raw/masksTs
    --out preds/suvmax
    """
    with _reported_errors():
        import json

        from nnunet_recur.evaluation.baselines import require_percent
        from nnunet_recur.evaluation.sweep import BaselineInputs, SuvmaxPredictCase, read_best
        from nnunet_recur.evaluation.volumes import PET_CHANNEL, EvaluationError, cases_in, write_json

        if (percent is None) == (best is None):
            raise EvaluationError("give exactly one of --percent P or --best best.json")
        swept: list[str] = []
        if best is not None:
            chosen = read_best(best)
            percent, swept = chosen["percent"], chosen["cases"]
        percent = require_percent(percent)
        folders = _folders(dataset, "Ts", images=images, masks=masks)
        image_dir = _require(folders["images"], "--images")
        mask_dir = _require(folders["masks"], "--masks")
        record = out / "suvmax_predict.json"
        if record.is_file() and not overwrite:
            try:
                previous = json.loads(record.read_text(encoding="utf-8")).get("percent")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                raise EvaluationError(f"{record}: not a valid record ({exc}); use --overwrite") from exc
            if previous != percent:
                raise EvaluationError(
                    f"{out} holds masks at {previous} % of SUVmax, not {percent} %: "
                    "use another --out or --overwrite"
                )
        selected = _case_selection(cases_in(image_dir, PET_CHANNEL), image_dir, cases)
        leaked = sorted({c.casefold() for c in swept} & {c.casefold() for c in selected})
        if leaked:
            named = [c for c in selected if c.casefold() in leaked]
            raise EvaluationError(
                f"{best}: the percent was chosen on case(s) {', '.join(named)}, which are also to be "
                "predicted here; evaluate the baseline on other cases (--cases) or sweep without them"
            )
        out.mkdir(parents=True, exist_ok=True)
        # record the percent before the first mask, so an interrupted run cannot leave unlabelled masks
        write_json(record, {"percent": percent, "cases": selected, "failed": {}})
        job = SuvmaxPredictCase(BaselineInputs(images=image_dir, masks=mask_dir), percent, out, overwrite)
        failed = _write_predictions(job, selected, out, workers, f"SUVmax {percent:g} %")
        write_json(record, {"percent": percent, "cases": selected, "failed": failed})
    if failed:
        raise typer.Exit(FAILED_CASES)


@_command("gtv-predict")
def gtv_predict(
    out: Path = typer.Option(..., "--out", help="output folder for <case>.nii.gz masks"),
    masks: Path | None = typer.Option(None, "--masks", help="masks folder holding <case>_gtv.nii.gz"),
    cases: str | None = typer.Option(None, "--cases", help=CASES_HELP + " (default: every GTV in --masks)"),
    dataset: str | None = typer.Option(None, "--dataset", help=DATASET_HELP + " (masksTs)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="rewrite masks that already exist"),
    workers: int = typer.Option(1, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Write the GTV-contour baseline: the GTV itself as the predicted relapse region, <case>.nii.gz.

    Example: recur-eval gtv-predict --masks raw/masksTs --out preds/gtv
    """
    with _reported_errors():
        from nnunet_recur.evaluation.sweep import GtvPredictCase
        from nnunet_recur.evaluation.volumes import GTV_SUFFIX, cases_in

        mask_dir = _require(_folders(dataset, "Ts", masks=masks)["masks"], "--masks")
        selected = _case_selection(cases_in(mask_dir, GTV_SUFFIX), mask_dir, cases)
        out.mkdir(parents=True, exist_ok=True)
        failed = _write_predictions(GtvPredictCase(mask_dir, out, overwrite), selected, out, workers, "GTV")
    if failed:
        raise typer.Exit(FAILED_CASES)


@_command("compare")
def compare(
    out: Path = typer.Option(..., "--out", help="output folder for the report"),
    pred: list[str] = typer.Option(
        ...,
        "--pred",
        help="a method as NAME=DIR (nnU-Net output folder of <case>.nii.gz, or <case>.npz with "
        "--threshold); repeat for every method, in the order of Table 1",
    ),
    # Alike in shape to `recur-eval calibration`'s folder options (cli_calibration.py): each command declares
    # its own typer options, whose help says what that command reads from each folder.
    gt: Path | None = typer.Option(None, "--gt", help="reference relapse labels folder (<case>.nii.gz)"),
    images: Path | None = typer.Option(
        None, "--images", help="images folder (CT _0000 for the overlays, PET _0001 for the SUV curve)"
    ),
    masks: Path | None = typer.Option(
        None, "--masks", help="masks folder (<case>_gtv, <case>_brain) for the SUVmax capture curve"
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help=DATASET_HELP + " (labelsTs, imagesTs, masksTs)"
    ),
    cases: str | None = typer.Option(None, "--cases", help=CASES_HELP + " (default: every reference label)"),
    best: str | None = typer.Option(
        None,
        "--best",
        help="name of the best CNN (the method compared to the baselines; default first --pred)",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="probability threshold for folders holding <case>.npz"
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="report a method's missing cases in a footnote instead of failing"
    ),
    # On/off flags alike in shape to `recur predict`'s dose options (prediction/cli.py): each command's
    # options live in its own signature, where typer reads them.
    hd95: bool = typer.Option(True, "--hd95/--no-hd95", help="compute the 95 % Hausdorff distance (slowest)"),
    curves: bool = typer.Option(
        True, "--curves/--no-curves", help="PO capture vs volume curves (probability maps, SUV percents)"
    ),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw the PNG figures"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap confidence intervals"),
    quartiles: str = typer.Option(
        "linear",
        "--quartiles",
        help="quartile definition of median (IQR), a numpy percentile method: linear (Hyndman-Fan type 7, "
        "default), weibull (type 6, SPSS), hazen (type 5), median_unbiased (type 8), nearest; recorded "
        "in summary.json",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help=WORKERS_HELP),
    dose: Path | None = typer.Option(
        None, "--dose", help="dose folder (<case>.nii.gz Gy + <case>.json): adds 'In-field POs captured'"
    ),
    rx: str | None = typer.Option(
        None, "--rx", help="with --dose: prescriptions (Gy) if <case>.json has none"
    ),
) -> None:
    """Compare methods against the reference relapse: per-case metrics, Table 1, tests, figures.

    Writes OUT/per_case.csv (method,case,dice,recall,precision,pred_cc,gt_cc,po_count,po_captured,...),
    OUT/table1.md and table1.csv (the paper's Table 1), OUT/stats.json (paired t-test, Wilcoxon,
    bootstrap CI, Fisher exact on POs), OUT/summary.json, OUT/points_of_origin.csv, OUT/po_capture.csv,
    OUT/capture_curve.csv, OUT/capture_vs_volume.png and OUT/figures/<case>_po<N>.png, written into a
    staging folder and swapped in whole; OUT/compare.status.json says whether the last run completed. A
    case missing from a method is an error (or a footnote with --allow-missing); truncated, NaN-holding,
    duplicate-id or differently-gridded inputs are refused (one error line, exit 2).

    Example: recur-eval compare --dataset 501 --pred "AI random=preds/random" --pred
    "SUVmax=preds/suvmax" --pred "GTV contour=preds/gtv" --best "AI random" --out eval/test
    """
    from nnunet_recur.evaluation.staging import staged_report

    with _reported_errors(), staged_report(out, "compare", COMPARE_OWNED) as stage:
        from nnunet_recur.evaluation.compare_run import CompareOptions, run_compare

        summary = run_compare(
            stage,
            CompareOptions(
                pred=pred,
                gt=gt,
                images=images,
                masks=masks,
                dataset=dataset,
                cases=cases,
                best=best,
                threshold=threshold,
                allow_missing=allow_missing,
                hd95=hd95,
                curves=curves,
                figures=figures,
                seed=seed,
                quartiles=quartiles,
                workers=workers,
                dose=dose,
                rx=rx,
            ),
            warn=lambda note: typer.echo(f"warning: {note}", err=True),
        )
    typer.echo((out / "table1.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/per_case.csv, table1.md, table1.csv, stats.json, summary.json")
    missing = sum(len(v) for v in summary["missing"].values())
    if missing:
        typer.echo(f"note: {missing} missing prediction(s) listed in the table footnote", err=True)


_command("training-curves")(training_curves)
_command("dose-pattern")(dose_pattern)
_command("dp-qa")(dp_qa)
_command("calibration")(calibration)
_command("site-summary")(site_summary)
_command("pool")(pool)


def main() -> None:
    """Console-script entry point of `recur-eval`."""
    app()


if __name__ == "__main__":
    main()
