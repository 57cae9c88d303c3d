"""Which trained model `recur predict` uses, and which of its folds (seeds).

A model is an nnU-Net trainer output folder (``.../<Trainer>__<Plans>__<configuration>`` with plans.json,
dataset.json and fold_N/checkpoint_final.pth). It may be given as that folder, nnU-Net style as a dataset
id plus trainer (looked up under $nnUNet_results), or as a zip from ``nnUNetv2_export_model_to_zip``
(unpacked into a temporary folder: a machine that never saw the training data needs nothing else, because
the converter's crop box and settings travel in the model's dataset.json).

Folds: ``best`` is the seed chosen on validation (seed_selection.json written by
`nnunet_recur.trainers.seeds.select_best_seed`, computed here from fold_*/recur_best.json when those are
present and no selection exists, or when the selection no longer lists what those files hold - a fold
retrained or added after `recur best-seed` - see ``seeds.selection_state``); a model with a single fold needs
no selection; several folds without a selection is an error.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_recur.nnunet_names import (
    CONFIGURATION,
    PLANS_NAME,
    DatasetNotFoundError,
    find_dataset_folder,
    trainer_folder_name,
)
from nnunet_recur.trainers.seeds import SELECTION_FILE, refresh_selection

# dataset.json channel name -> the key of the prepared image (`prepare.crop_case`) that feeds it
CHANNEL_IMAGES = {"CT": "ct", "PET": "pet", "PET_zscore_patient": "pet_zscore"}


class ModelError(Exception):
    """A model that cannot be used (missing files, wrong channels, unknown fold): one-line message."""


@dataclass
class Model:
    """A resolved model folder and what `recur predict` needs from it."""

    folder: Path
    dataset_json: dict
    plans: dict
    available_folds: list[int]
    source: str  # what the user passed (folder, "-d 502 -tr X", zip path)
    checkpoint: str = "checkpoint_final.pth"
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def trainer(self) -> str:
        return self.folder.name.split("__")[0]

    @property
    def model_id(self) -> str:
        """Dataset and trainer folder, e.g. Dataset502_X/nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur."""
        return f"{self.plans.get('dataset_name', self.folder.parent.name)}/{self.folder.name}"

    @property
    def validation_percent(self) -> float | None:
        """The SUVmax-threshold percent chosen on validation, when the model carries one."""
        value = self.dataset_json.get("recur_suvmax_percent")
        return float(value) if value is not None else None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _folds_in(folder: Path, checkpoint: str) -> list[int]:
    folds = []
    for child in folder.glob("fold_*"):
        suffix = child.name[len("fold_") :]
        if suffix.isdigit() and (child / checkpoint).is_file():
            folds.append(int(suffix))
    return sorted(folds)


def _load(folder: Path, source: str, checkpoint: str, tmp=None) -> Model:
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: no {name} (not an nnU-Net trained model folder)")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    plans = json.loads((folder / "plans.json").read_text())
    folds = _folds_in(folder, checkpoint)
    if not folds:
        raise ModelError(f"{folder}: no fold_N/{checkpoint} (train the model first)")
    model = Model(folder, dataset_json, plans, folds, source, checkpoint, tmp)
    check_model_inputs(model)
    return model


def check_model_inputs(model: Model) -> None:
    """The model's channels must be ones the converter prepares (CT, PET and its z-scored copy), and it must
    carry the crop box."""
    channels = model.dataset_json.get("channel_names") or model.dataset_json.get("modality")
    known = isinstance(channels, dict) and channels and all(v in CHANNEL_IMAGES for v in channels.values())
    if (
        not known
        or sorted(int(k) for k in channels) != list(range(len(channels)))
        or "CT" not in channels.values()
    ):
        raise ModelError(
            f"{model.folder / 'dataset.json'}: the model's input channels are {channels}, "
            f"recur predict prepares {sorted(CHANNEL_IMAGES)} (with CT)"
        )
    if "recur_crop" not in model.dataset_json:
        raise ModelError(
            f"{model.folder / 'dataset.json'}: no crop box 'recur_crop' (the model was not trained on a "
            "dataset written by recur convert)"
        )
    box = model.dataset_json["recur_crop"]
    size = box.get("size_voxels")
    if size is not None and (len(size) != 3 or any(int(s) <= 0 for s in size)):
        raise ModelError(f"{model.folder / 'dataset.json'}: recur_crop size_voxels {size} is not a 3-D box")


def _model_folder_in(root: Path) -> Path:
    """The one trainer folder (with plans.json and fold_*) inside an unpacked zip."""
    candidates = sorted({p.parent for p in root.rglob("plans.json") if any(p.parent.glob("fold_*"))})
    if len(candidates) != 1:
        found = ", ".join(str(c.relative_to(root)) for c in candidates) or "none"
        raise ModelError(f"expected one trained model folder in the zip, found {found}")
    return candidates[0]


def resolve_model(
    model: str | Path | None = None,
    *,
    dataset: str | None = None,
    trainer: str = "nnUNetTrainerRecur",
    plans: str = PLANS_NAME,
    configuration: str = CONFIGURATION,
    checkpoint: str = "checkpoint_final.pth",
) -> Model:
    """A `Model` from a folder, a zip, or (model None) dataset id/name + trainer under $nnUNet_results."""
    if model is not None:
        path = Path(model)
        if path.is_file() and zipfile.is_zipfile(path):
            tmp = tempfile.TemporaryDirectory(prefix="recur_model_")
            try:
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        target = (Path(tmp.name) / member).resolve()
                        if not str(target).startswith(str(Path(tmp.name).resolve())):
                            raise ModelError(f"{path}: unsafe member name {member!r}")
                    archive.extractall(tmp.name)
                return _load(_model_folder_in(Path(tmp.name)), str(path), checkpoint, tmp)
            except BaseException:
                tmp.cleanup()
                raise
        if path.is_file():
            raise ModelError(f"{path}: neither a model folder nor a zip file")
        if not path.is_dir():
            raise ModelError(f"{path}: no such model folder or zip")
        return _load(path, str(path), checkpoint)
    if dataset is None:
        raise ModelError("no model: pass --model FOLDER|ZIP or -d DATASET [-tr TRAINER]")
    results = os.environ.get("nnUNet_results")
    if not results:
        raise ModelError("-d needs $nnUNet_results (or pass --model FOLDER|ZIP)")
    try:
        dataset_folder = find_dataset_folder(Path(results), dataset)
        folder = dataset_folder / trainer_folder_name(trainer, plans, configuration)
    except DatasetNotFoundError as exc:
        raise ModelError(f"no dataset {dataset!r}: {exc}") from exc
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such trained model (trainer {trainer})")
    return _load(folder, f"-d {dataset} -tr {trainer}", checkpoint)


def choose_folds(model: Model, folds: list[str]) -> tuple[list[int], str]:
    """The folds to use and how they were chosen ("best (seed_selection.json)", "requested", ...)."""
    if not folds or folds == ["best"]:
        selection = model.folder / SELECTION_FILE
        try:  # the project's one best-seed rule; (re)writes a missing or stale selection
            state = refresh_selection(model.folder)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model.folder}: cannot select the best seed ({exc})") from exc
        note = ", recomputed: the fold results changed after it was written" if state == "stale" else ""
        if selection.is_file():
            try:
                best = int(json.loads(selection.read_text())["best_fold"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelError(f"{selection}: unreadable seed selection ({exc})") from exc
            if best not in model.available_folds:
                raise ModelError(f"{selection}: best fold {best} has no {model.checkpoint}")
            return [best], f"best seed (fold {best}, {SELECTION_FILE}{note})"
        if len(model.available_folds) == 1:
            return list(model.available_folds), f"the model's only fold ({model.available_folds[0]})"
        raise ModelError(
            f"{model.folder}: --folds best needs {SELECTION_FILE} (run `recur best-seed`); the model has "
            f"folds {model.available_folds}: pass --folds {' '.join(map(str, model.available_folds))} to "
            "ensemble them"
        )
    chosen = []
    for value in folds:
        if not value.isdigit():
            raise ModelError(f"--folds: {value!r} is neither 'best' nor a fold number")
        fold = int(value)
        if fold not in model.available_folds:
            raise ModelError(f"{model.folder}: unknown fold {fold} (available: {model.available_folds})")
        if fold not in chosen:
            chosen.append(fold)
    return chosen, "requested"
