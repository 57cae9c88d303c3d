"""`recur-eval` (placeholder until the evaluation issue lands)."""

import typer

app = typer.Typer(help="Evaluate recurrence predictions.", no_args_is_help=True)


@app.command("placeholder")
def _placeholder() -> None:
    """Not implemented yet."""
    raise typer.Exit(2)


def main() -> None:
    app()
