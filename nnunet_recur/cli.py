"""The `recur` command: one typer app that gathers the sub-commands each package owns.

The CLI only parses and prints; the work lives in the packages (see docs in each module).
Heavy imports (torch, nnunetv2, SimpleITK) happen inside the commands so that `recur --help`
stays instant.
"""

from __future__ import annotations

import typer

from nnunet_recur import __version__
from nnunet_recur.dataset_conversion.cli import app as convert_app
from nnunet_recur.federated.cli import app as federated_app
from nnunet_recur.prediction.cli import PREDICT_HELP, predict
from nnunet_recur.prediction.cli_calibrate import CALIBRATE_HELP, calibrate
from nnunet_recur.synthetic.cli import synth
from nnunet_recur.trainers.cli import best_seed, env, plan
from nnunet_recur.workflow.cli import cv, demo, study_app

#: Printed by `recur --help` and `recur --version`; README says the same.
RESEARCH_NOTE = (
    "Research tool, not a medical device: its predictions must not be used for diagnosis or treatment."
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nnunet-recur {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="recur",
    help=(
        "nnunet-recur: predict where a head-and-neck cancer recurs after radiotherapy, voxel by voxel, "
        "from pre-treatment FDG-PET/CT (Kutnar et al. 2023), on top of nnU-Net v2.\n\n"
        "Typical order: synth (or your own data) -> convert -> plan -> nnUNetv2_train -> "
        "nnUNetv2_predict -> recur-eval. `recur demo` runs all of it on a synthetic cohort.\n\n"
        f"{RESEARCH_NOTE}"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The app-level options (sub-commands do the work)."""


app.command("synth")(synth)
app.add_typer(convert_app, name="convert")
app.command("plan")(plan)
app.command("env")(env)
app.command("best-seed")(best_seed)
app.command("demo")(demo)
app.command("cv")(cv)
app.command("predict", help=PREDICT_HELP)(predict)
app.command("calibrate", help=CALIBRATE_HELP)(calibrate)
app.add_typer(study_app, name="study")
app.add_typer(federated_app, name="federated")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
