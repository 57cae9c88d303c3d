"""The shell lines ``recur env`` prints: where nnU-Net finds our trainers, and hints for its data folders."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"
NNUNET_FOLDER_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def ext_trainer_folder() -> Path:
    """The folder shipped inside the package whose one module re-exports every trainer."""
    return Path(__file__).resolve().parent / "ext"


def ext_trainer_value(environ: Mapping[str, str]) -> str:
    """Our folder first, keeping any other folders the user already listed (os.pathsep-separated)."""
    ours = str(ext_trainer_folder())
    others = [p for p in environ.get(EXT_TRAINER_VARIABLE, "").split(os.pathsep) if p.strip() and p != ours]
    return os.pathsep.join([ours, *others])


def env_lines(environ: Mapping[str, str]) -> list[str]:
    """``export nnUNet_extTrainer=...`` plus a commented hint for each unset nnU-Net folder variable."""
    lines = [f"export {EXT_TRAINER_VARIABLE}={shlex.quote(ext_trainer_value(environ))}"]
    for variable in NNUNET_FOLDER_VARIABLES:
        if not environ.get(variable):
            lines.append(
                f"# {variable} is not set; nnU-Net needs it, e.g.: export {variable}=$HOME/nnUNet/{variable}"
            )
    return lines
