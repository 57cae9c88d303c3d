"""`recur synth` (placeholder until the synthetic-cohort issue lands)."""

import typer


def synth(out: str = typer.Argument(..., help="output folder")) -> None:
    """Write a synthetic head-and-neck PET/CT cohort (not implemented yet)."""
    raise typer.Exit(2)
