"""`recur demo` and `recur cv` (placeholders until the end-to-end issue lands)."""

import typer


def demo() -> None:
    """Run the whole study on the synthetic cohort (not implemented yet)."""
    raise typer.Exit(2)


def cv(dataset_id: int = typer.Argument(..., help="nnU-Net dataset id")) -> None:
    """Cross-validate a trainer (not implemented yet)."""
    raise typer.Exit(2)
