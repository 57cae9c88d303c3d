"""`recur-eval dose-pattern`: the command function, kept apart so evaluation/cli.py registers it with one
line; the maths is in ``dose_pattern.py``, the report in ``dose_report.py``."""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES

COMMAND = "dose-pattern"


def dose_pattern(
    gt: Path = typer.Option(..., "--gt", help="reference relapse labels folder (<case>.nii.gz)"),
    dose: Path = typer.Option(
        ...,
        "--dose",
        help="dose folder: <case>.nii.gz (Gy, float32, on the label's grid, NaN = not covered) and "
        "<case>.json (prescriptions_gy, ...), as `recur convert` writes doseTr/doseTs",
    ),
    out: Path = typer.Option(..., "--out", help="output folder: dose_pattern.csv/.md/.json/.png"),
    pred: list[str] = typer.Option(
        [],
        "--pred",
        help="a method as NAME=DIR (masks <case>.nii.gz, or <case>.npz with --threshold); repeatable",
    ),
    targets: Path | None = typer.Option(
        None, "--targets", help="folder of target masks <case>_<name>.nii.gz (e.g. masksTs: _gtv, ...)"
    ),
    rx: str | None = typer.Option(
        None, "--rx", help="prescriptions in Gy, e.g. 68,60,50, for cases whose <case>.json lacks them"
    ),
    nidus_mm: float = typer.Option(
        4.0, "--nidus-mm", min=0.0, help="radius of the sphere around the PO (mm)"
    ),
    best: str | None = typer.Option(None, "--best", help="name of the best CNN (default: first --pred)"),
    gtv: str | None = typer.Option(
        None, "--gtv", help="name of the GTV method for McNemar (default: the --pred whose name holds 'GTV')"
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="probability threshold for folders holding <case>.npz"
    ),
    cases: str | None = typer.Option(
        None, "--cases", help="comma list or file of cases (default: every label)"
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes, one case each at a time"),
) -> None:
    """Classify every relapse against the planned dose: PO dose (Due / Zukauskaite), volume (Dawson),
    MD Anderson types A-E; with --pred, how many in-field POs each method's mask captures.

    Works on the relapse components and POs of `compare`. Writes OUT/dose_pattern.csv (one row per
    component), OUT/dose_pattern.md (counts per class with Wilson 95 % CIs, the cross-table against the
    methods, exact McNemar best CNN vs GTV on the in-field POs), OUT/dose_pattern.json and
    OUT/dose_pattern.png (cumulative DVHs; PO dose against distance from the GTV), swapped in together. A
    case that cannot be read is recorded and the others go on (exit 1); bad input exits 2. Rules:
    docs/evaluation.md, "Relapse pattern against dose".

    Example: recur-eval dose-pattern --gt raw/labelsTs --dose raw/doseTs --targets raw/masksTs
    --pred "AI random=preds/random" --pred "GTV contour=preds/gtv" --out eval/dose
    """
    from nnunet_recur.evaluation.staging import staged_report
    from nnunet_recur.evaluation.volumes import EvaluationError

    failed: dict[str, str] = {}
    try:
        with staged_report(out, COMMAND, _owned()) as stage:
            summary, failed = _run(
                gt, dose, stage, pred, targets, rx, nidus_mm, best, gtv, threshold, cases, workers
            )
    except EvaluationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    classes = summary["classifications"]["po_class"]["counts"]
    typer.echo(
        f"{summary['n_components']} relapse component(s): "
        + ", ".join(f"{label} {p['count']}" for label, p in classes.items())
    )
    typer.echo(f"wrote {out}/dose_pattern.csv, dose_pattern.md, dose_pattern.json, dose_pattern.png")
    for case, why in failed.items():
        typer.echo(f"failed: {case}: {why}", err=True)
    if failed:
        raise typer.Exit(FAILED_CASES)


def _owned() -> tuple[str, ...]:
    from nnunet_recur.evaluation.dose_report import OWNED

    return OWNED


def _run(gt, dose, stage, pred, targets, rx, nidus_mm, best, gtv, threshold, cases, workers):
    from nnunet_recur.evaluation import comparison, dose_pattern, dose_report
    from nnunet_recur.evaluation.parallel import map_cases
    from nnunet_recur.evaluation.provenance import provenance
    from nnunet_recur.evaluation.volumes import EvaluationError, cases_in, parse_cases, select_cases

    if not Path(dose).is_dir():
        raise EvaluationError(f"{dose}: dose folder not found")
    if targets is not None and not Path(targets).is_dir():
        raise EvaluationError(f"{targets}: targets folder not found")
    levels = dose_pattern.parse_rx(rx)
    methods = [comparison.Method.parse(spec, threshold) for spec in pred]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise EvaluationError(f"--pred names must differ: {', '.join(names)}")
    best_name = best if best is not None else (names[0] if names else None)
    gtv_name = gtv if gtv is not None else dose_report.default_gtv_method(names)
    for option, value in (("--best", best_name), ("--gtv", gtv_name)):
        if value is not None and value not in names:
            raise EvaluationError(
                f"{option} {value!r} is not one of the --pred names ({', '.join(names) or 'none'})"
            )
    selected = select_cases(cases_in(gt), parse_cases(cases), gt)
    inputs = dose_pattern.DoseInputs(
        labels=Path(gt),
        doses=Path(dose),
        rx=levels,
        nidus_mm=nidus_mm,
        targets=Path(targets) if targets is not None else None,
        methods=tuple(methods),
        dose_axis=dose_report.DOSE_AXIS_GY,
    )
    outcomes = map_cases(dose_pattern.DoseCaseJob(inputs), selected, workers, COMMAND)
    done = [o for o in outcomes if not isinstance(o, str)]
    failed = {c: o for c, o in zip(selected, outcomes, strict=True) if isinstance(o, str)}
    if not done:
        first = next(iter(failed.items()))
        raise EvaluationError(f"no case could be analysed (first: {first[0]}: {first[1]}); nothing written")
    settings = {
        "gt": str(gt),
        "dose": str(dose),
        "targets": str(targets) if targets is not None else None,
        "rx": list(levels) if levels else None,
        "nidus_mm": nidus_mm,
        "methods": {m.name: str(m.folder) for m in methods},
        "dose_axis_gy": dose_report.DOSE_AXIS_GY,
        "isodose_fraction": dose_pattern.ISODOSE_FRACTION,
        "dose_tie_gy": dose_pattern.DOSE_TIE_GY,
    }
    extra = {"cases": [c.case for c in done], "provenance": provenance([p for c in done for p in c.inputs])}
    summary = dose_report.write_report(stage, done, names, best_name, gtv_name, failed, settings, extra)
    return summary, failed
