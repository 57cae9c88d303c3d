"""The shell lines ``recur env`` prints: where nnU-Net finds our trainers, and hints for its data folders.

The names and the ``nnUNet_extTrainer`` rule (ours first, keeping the user's folders) live in the light
``nnunet_recur/nnunet_names.py``; re-exported here for the trainers' callers.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from nnunet_recur.nnunet_names import (  # noqa: F401 - re-exports
    EXT_TRAINER_VARIABLE,
    FOLDER_VARIABLES,
    ext_trainer_folder,
    ext_trainer_value,
)


def env_lines(environ: Mapping[str, str]) -> list[str]:
    """``export nnUNet_extTrainer=...`` plus a commented hint for each unset nnU-Net folder variable."""
    lines = [f"export {EXT_TRAINER_VARIABLE}={shlex.quote(ext_trainer_value(environ))}"]
    for variable in FOLDER_VARIABLES:
        if not environ.get(variable):
            lines.append(
                f"# {variable} is not set; nnU-Net needs it, e.g.: export {variable}=$HOME/nnUNet/{variable}"
            )
    return lines
