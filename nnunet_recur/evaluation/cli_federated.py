"""`recur-eval site-summary` and `recur-eval pool`: the command functions, kept apart so evaluation/cli.py
registers them with one line each; the work is in ``site_summary.py`` and ``pooling.py``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from nnunet_recur.exit_status import BAD_INPUT

SALT_ENV = "RECUR_SITE_SALT"


def site_summary(
    compare_out: Path = typer.Argument(..., help="a `recur-eval compare` report folder (its summary.json)"),
    out: Path = typer.Option(..., "--out", help="folder for site_summary.json and manifest.json"),
    site: str = typer.Option(..., "--site", help="this site's name as the pooled report will show it"),
    salt: str | None = typer.Option(
        None,
        "--salt",
        help=f"secret salt of the case-id hashes (default: ${SALT_ENV}, else a fresh random one, so the "
        "hashes differ between runs); it never leaves the site",
    ),
    dose_pattern: Path | None = typer.Option(
        None,
        "--dose-pattern",
        help="a `recur-eval dose-pattern` output folder of the same cases: shares the three dose classes "
        "of every PO (default: the PO-dose class of compare's --dose column, if it has one)",
    ),
) -> None:
    """Write what a site may share of a compare report: per-case metrics, no image, no identifier.

    OUT/site_summary.json holds, per case and method, Dice, recall, precision, volumes, PO counts and
    per-PO capture flags, HD95, and per PO its dose classes where the site has them (never a dose in Gy);
    case ids are replaced by salted hashes and listed in hash order. OUT/manifest.json lists exactly
    the fields that leave the site (docs/federated.md).

    Example: recur-eval site-summary eval/test --site "Centre A" --out share/centre_a
    """
    from nnunet_recur.evaluation import site_summary as module
    from nnunet_recur.evaluation.volumes import EvaluationError

    secret = salt or os.environ.get(SALT_ENV) or module.new_salt()
    try:
        summary = module.build_site_summary(compare_out, site, secret, dose_pattern)
        paths = module.write_site_summary(out, summary)
    except (EvaluationError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    if not (salt or os.environ.get(SALT_ENV)):
        typer.echo(
            f"note: random salt; pass --salt or set ${SALT_ENV} for hashes stable across runs", err=True
        )
    dose = f", dose classes {', '.join(summary['dose_classes'])}" if summary["dose_classes"] else ""
    typer.echo(f"wrote {paths[0]} ({len(summary['cases'])} cases{dose}) and {paths[1]}")


def pool(
    summaries: list[Path] = typer.Argument(..., help="site summaries (site_summary.json or its folder)"),
    out: Path = typer.Option(..., "--out", help="folder for the pooled report"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap confidence intervals"),
) -> None:
    """Pool site summaries: pooled Table 1 with per-site rows, stratified tests, forest plot.

    Writes OUT/table1.md and table1.csv (pooled), OUT/sites_table1.csv (a row per site and method beside
    the pooled one), OUT/stats.json (the paired tests of compare on all cases), OUT/stratified.json
    (Cochran-Mantel-Haenszel for PO capture and a DerSimonian-Laird random-effects meta-analysis of the
    paired Dice difference, best method vs each other) and OUT/forest.png. Where sites shared dose
    classes: OUT/dose.json and OUT/dose_capture.csv (POs captured per PO-dose class and method, pooled
    and per site, Wilson 95 % CIs; CMH of in-field capture stratified by site; the sites left out).

    Example: recur-eval pool share/centre_a share/centre_b share/centre_c --out eval/pooled
    """
    from nnunet_recur.evaluation import pooling
    from nnunet_recur.evaluation import site_summary as module
    from nnunet_recur.evaluation.staging import staged_report
    from nnunet_recur.evaluation.volumes import EvaluationError

    try:
        loaded = [(path, module.read_site_summary(path)) for path in summaries]
        with staged_report(out, "pool", pooling.POOL_OWNED) as stage:
            result = pooling.pool(loaded, stage, seed)
    except (EvaluationError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    typer.echo((out / "table1.md").read_text(encoding="utf-8"))
    typer.echo(f"pooled {result['n_cases']} cases from {len(result['sites'])} sites into {out}")
