"""`recur plan` and `recur env` (placeholders until the trainers issue lands)."""

import typer


def plan(dataset_id: int = typer.Argument(..., help="nnU-Net dataset id")) -> None:
    """Plan and preprocess a dataset with nnUNetRecurPlans (not implemented yet)."""
    raise typer.Exit(2)


def env() -> None:
    """Print the environment exports nnU-Net needs (not implemented yet)."""
    raise typer.Exit(2)
