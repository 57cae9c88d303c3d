"""One place for nnU-Net's names and the environment of nnU-Net jobs, without importing torch or nnunetv2.

Plans and configuration names, ``DatasetXXX_Name`` folders, the trainer folder
``<Trainer>__<Plans>__<Configuration>``, and the variables every ``nnUNetv2_*`` job gets. The workflow,
prediction and evaluation import this module instead of restating the names; the trainers package imports
it too, so a rename happens here once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

PLANS_NAME = "nnUNetRecurPlans"
CONFIGURATION = "3d_recur"
EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"
FOLDER_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


#: nnU-Net's dataset folder names: ``Dataset`` + three digits + ``_`` + a name.
_DATASET_NAME = re.compile(r"Dataset\d{3}_.+")


class DatasetNotFoundError(ValueError):
    """No, or more than one, ``DatasetXXX_*`` folder for an id."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset502_RecurOPSCC`` from 502 and ``RecurOPSCC``."""
    return f"Dataset{int(dataset_id):03d}_{name}"


def dataset_prefix(dataset_id: int) -> str:
    return f"Dataset{int(dataset_id):03d}_"


def dataset_id(folder_name: str) -> int:
    """502 from ``Dataset502_RecurOPSCC``; ValueError for a name that is not nnU-Net's."""
    if not _DATASET_NAME.fullmatch(folder_name):
        raise ValueError(f"{folder_name!r} is not a DatasetXXX_Name folder name")
    return int(folder_name[len("Dataset") : len("Dataset") + 3])


def find_dataset_folder(root: Path, dataset: int | str) -> Path:
    """The one ``DatasetXXX_*`` folder in `root` for an id (502, "502"), a full name
    (``Dataset502_RecurOPSCC``) or the name after the id (``RecurOPSCC``), as nnU-Net finds it.

    Raises DatasetNotFoundError naming `root` when there is none or more than one (nnU-Net refuses an
    ambiguous id too)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: not a folder")
    text = str(dataset)
    if text.isdigit():
        prefix = dataset_prefix(int(text))
        hits = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
        label = f"{prefix}*"
    elif (root / text).is_dir() and text.startswith("Dataset"):
        hits = [root / text]
        label = text
    else:
        hits = sorted(
            p
            for p in root.iterdir()
            if p.is_dir() and _DATASET_NAME.fullmatch(p.name) and p.name.partition("_")[2] == text
        )
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


def job_environment(
    folders: Mapping[str, str], environ: Mapping[str, str], device: str | None = None
) -> dict[str, str]:
    """The variables every ``nnUNetv2_*`` job of a study, a cross-validation or the demo gets.

    nnU-Net's three folders from `folders`; ``nnUNet_extTrainer`` by :func:`ext_trainer_value` (ours
    first, keeping the folders the user listed in `environ`: a user's own trainers stay findable, and
    ours are never dropped); on CPU, ``nnUNet_def_n_proc`` from `environ`, else 1 (nnU-Net's default 8
    export workers only cost start-up time on a few cores).
    """
    env = {variable: str(folders[variable]) for variable in FOLDER_VARIABLES}
    env[EXT_TRAINER_VARIABLE] = ext_trainer_value(environ)
    if device == "cpu":
        env["nnUNet_def_n_proc"] = environ.get("nnUNet_def_n_proc", "1")
    return env
