"""One place for nnU-Net's names and the environment of nnU-Net jobs, without importing torch or nnunetv2.

Plans and configuration names, ``DatasetXXX_Name`` folders, the trainer folder
``<Trainer>__<Plans>__<Configuration>``, and the variables every ``nnUNetv2_*`` job gets. The workflow,
prediction and evaluation import this module instead of restating the names; the trainers package imports
it too, so a rename happens here once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PLANS_NAME = "nnUNetRecurPlans"
CONFIGURATION = "3d_recur"
EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"
FOLDER_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


class DatasetNotFoundError(ValueError):
    """No, or more than one, ``DatasetXXX_*`` folder for an id."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset502_RecurOPSCC`` from 502 and ``RecurOPSCC``."""
    return f"Dataset{int(dataset_id):03d}_{name}"


def dataset_prefix(dataset_id: int) -> str:
    return f"Dataset{int(dataset_id):03d}_"


def find_dataset_folder(root: Path, dataset: int | str) -> Path:
    """The one ``DatasetXXX_*`` folder in `root` for an id (502, "502") or a full name, as nnU-Net finds it.

    Raises DatasetNotFoundError naming `root` when there is none or more than one."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: not a folder")
    text = str(dataset)
    if text.isdigit():
        prefix = dataset_prefix(int(text))
        hits = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
        label = f"{prefix}*"
    else:
        hits = [root / text] if (root / text).is_dir() else []
        label = text
    if not hits:
        raise DatasetNotFoundError(f"no {label} folder in {root}")
    if len(hits) > 1:
        raise DatasetNotFoundError(
            f"several folders for dataset {text} in {root}: {', '.join(p.name for p in hits)}"
        )
    return hits[0]


def trainer_folder_name(trainer: str, plans: str = PLANS_NAME, configuration: str = CONFIGURATION) -> str:
    """``nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur``: nnU-Net's model folder under the dataset."""
    return f"{trainer}__{plans}__{configuration}"


def model_folder(
    results: Path,
    dataset_folder: str,
    trainer: str,
    plans: str = PLANS_NAME,
    configuration: str = CONFIGURATION,
) -> Path:
    return Path(results) / dataset_folder / trainer_folder_name(trainer, plans, configuration)


def ext_trainer_folder() -> Path:
    """The folder shipped inside the package whose one module re-exports every trainer (no torch import)."""
    return Path(__file__).resolve().parent / "trainers" / "ext"


def ext_trainer_value(environ: Mapping[str, str]) -> str:
    """Our folder first, keeping any other folders the user already listed (os.pathsep-separated).

    A user's own ``nnUNet_extTrainer`` never replaces ours: every job must find this project's trainers."""
    ours = str(ext_trainer_folder())
    others = [p for p in environ.get(EXT_TRAINER_VARIABLE, "").split(os.pathsep) if p.strip() and p != ours]
    return os.pathsep.join([ours, *others])


def missing_folder_variables(environ: Mapping[str, str]) -> list[str]:
    return [v for v in FOLDER_VARIABLES if not environ.get(v)]
