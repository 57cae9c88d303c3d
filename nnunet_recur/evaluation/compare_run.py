"""`recur-eval compare` as one function: the options checked, every case scored, the report and figures
written into the staging folder (the CLI only parses the options and prints where the results went)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nnunet_recur.evaluation.inputs import case_selection, folders_from_dataset, require_option


@dataclass(frozen=True)
class CompareOptions:
    """The options of `recur-eval compare` (see its help)."""

    pred: list[str]
    gt: Path | None = None
    images: Path | None = None
    masks: Path | None = None
    dataset: str | None = None
    cases: str | None = None
    # Alike in shape to comparison.CompareInputs: these are the command's options; CompareInputs holds the
    # picklable part a worker needs (figures off unless asked).
    best: str | None = None
    threshold: float | None = None
    allow_missing: bool = False
    hd95: bool = True
    curves: bool = True
    figures: bool = True
    seed: int = 0
    quartiles: str = "linear"
    workers: int = 1
    dose: Path | None = None  # dose folder: adds the in-field column (dose-pattern's PO-dose rule)
    rx: str | None = None


def run_compare(stage: Path, options: CompareOptions, warn: Callable[[str], None]) -> dict:
    """Score every method on every selected case and write the report into `stage`; returns the summary."""
    from nnunet_recur.evaluation import comparison, report
    from nnunet_recur.evaluation import figures as figure_module
    from nnunet_recur.evaluation.parallel import map_cases
    from nnunet_recur.evaluation.provenance import provenance
    from nnunet_recur.evaluation.volumes import EvaluationError, cases_in

    if options.quartiles not in report.QUARTILE_METHODS:
        raise EvaluationError(
            f"--quartiles {options.quartiles!r}: choose one of {', '.join(report.QUARTILE_METHODS)}"
        )
    folders = folders_from_dataset(
        options.dataset, "Ts", labels=options.gt, images=options.images, masks=options.masks
    )
    labels = require_option(folders["labels"], "--gt")
    image_dir = folders["images"] if folders["images"] is None or folders["images"].is_dir() else None
    mask_dir = folders["masks"] if folders["masks"] is None or folders["masks"].is_dir() else None
    if options.images is not None and image_dir is None:
        raise EvaluationError(f"{options.images}: folder not found")
    if options.masks is not None and mask_dir is None:
        raise EvaluationError(f"{options.masks}: folder not found")
    methods = [comparison.Method.parse(spec, options.threshold) for spec in options.pred]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise EvaluationError(f"--pred names must differ: {', '.join(names)}")
    best_name = options.best if options.best is not None else names[0]
    if best_name not in names:
        raise EvaluationError(f"--best {best_name!r} is not one of the --pred names ({', '.join(names)})")
    reference_cases = cases_in(labels)
    selected = case_selection(reference_cases, labels, options.cases)
    unmatched = comparison.unmatched_predictions(methods, reference_cases)
    for name, ids in unmatched.items():
        warn(
            f"{name}: {len(ids)} prediction(s) without a reference label in {labels}, "
            f"not scored: {', '.join(ids)}"
        )
    # Keyword arguments alike in shape to other builders' (workflow/study_file.py's StudyPlan): other classes.
    inputs = comparison.CompareInputs(
        labels=labels,
        methods=tuple(methods),
        images=image_dir,
        masks=mask_dir,
        allow_missing=options.allow_missing,
        hd95=options.hd95,
        curves=options.curves,
        figures=options.figures,
    )
    results = map_cases(comparison.CaseEvaluator(inputs), selected, options.workers, "compare")
    settings = {
        "gt": str(labels),
        "images": str(image_dir) if image_dir else None,
        "masks": str(mask_dir) if mask_dir else None,
        "threshold": options.threshold,
        "allow_missing": options.allow_missing,
        "hd95": options.hd95,
        "seed": options.seed,
        "quartiles": options.quartiles,
    }
    extra = {
        "unmatched_predictions": unmatched,
        "provenance": provenance([path for r in results for path in r.inputs]),
    }
    summary = report.write_compare_report(stage, results, methods, best_name, options.seed, settings, extra)
    if options.dose is not None:  # the in-field column (recur-eval dose-pattern's PO-dose rule)
        from nnunet_recur.evaluation import dose_report

        infield = dose_report.infield_capture(results, labels, options.dose, options.rx)
        dose_report.add_infield_column(stage, infield)
    for note in summary["warnings"]:
        warn(note)
    if options.figures:
        colours = figure_module.method_colours(names + [comparison.SUV_CURVE])
        for result in results:
            figure_module.plot_po_overlays(result.case, result.slices, colours, stage / "figures")
        rows = {row["method"]: row for row in summary["table1"]}
        po_total = rows["Ground truth"]["po_total"]
        fixed = {
            n: (
                float(sum(m.pred_cc for r in results for m in r.methods if m.method == n))
                / max(rows[n]["n_cases"], 1),
                rows[n]["po_captured"],
            )
            for n in names
        }
        figure_module.plot_capture_curves(
            summary["capture_curves"], fixed, po_total, stage / "capture_vs_volume.png", colours
        )
    return summary
