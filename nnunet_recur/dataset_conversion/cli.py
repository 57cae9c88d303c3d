"""`recur convert ...` (placeholder until the conversion issue lands)."""

import typer

app = typer.Typer(help="Convert cohorts into nnU-Net raw datasets.", no_args_is_help=True)


@app.command("placeholder")
def _placeholder() -> None:
    """Not implemented yet."""
    raise typer.Exit(2)
