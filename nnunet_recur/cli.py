"""The `recur` command: one typer app that gathers the sub-commands each package owns.

The CLI only parses and prints; the work lives in the packages (see docs in each module).
Heavy imports (torch, nnunetv2, SimpleITK) happen inside the commands so that `recur --help`
stays instant.
"""

from __future__ import annotations

import typer

from nnunet_recur.dataset_conversion.cli import app as convert_app
from nnunet_recur.synthetic.cli import synth
from nnunet_recur.trainers.cli import best_seed, env, plan
from nnunet_recur.workflow.cli import cv, demo, study_app

app = typer.Typer(
    name="recur",
    help=(
        "nnunet-recur: predict where a head-and-neck cancer recurs after radiotherapy, voxel by voxel, "
        "from pre-treatment FDG-PET/CT (Kutnar et al. 2023), on top of nnU-Net v2.\n\n"
        "Typical order: synth (or your own data) -> convert -> plan -> nnUNetv2_train -> "
        "nnUNetv2_predict -> recur-eval. `recur demo` runs all of it on a synthetic cohort."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.command("synth")(synth)
app.add_typer(convert_app, name="convert")
app.command("plan")(plan)
app.command("env")(env)
app.command("best-seed")(best_seed)
app.command("demo")(demo)
app.command("cv")(cv)
app.add_typer(study_app, name="study")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
