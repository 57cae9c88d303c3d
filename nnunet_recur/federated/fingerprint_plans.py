"""Federated plans end to end: the shared plans from a merged fingerprint, and a site preprocessing with them.

`plans_from_fingerprint` runs nnU-Net's own `ExperimentPlanner` and our `recur_plans` (the `recur plan`
recipe) on a merged `dataset_fingerprint.json` and a `dataset.json` alone, in a scratch nnU-Net folder
pair: the coordinator needs no image. nnU-Net's planner looks at one image only to pick the image reader;
here the reader comes from the dataset.json's `file_ending` (or its `overwrite_image_reader_writer`), as
nnU-Net itself does when a file cannot decide. Spacing and patch size depend on the fingerprint's spacings
and shapes only, which the merge keeps exactly, so they equal the plans of a central fingerprint of the
union of the sites' cases.

`preprocess_site` is a site's step: the shared plans under the site's own dataset name, the raw
dataset.json beside them (nnU-Net's preprocessor reads it from nnUNet_preprocessed, nnUNet#2560), and
nnU-Net's preprocessing of the site's cases with configuration `3d_recur`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.nnunet_names import CONFIGURATION, PLANS_NAME
from nnunet_recur.nnunet_names import dataset_id as dataset_id_of

#: The dataset name of the scratch planning folder; every site replaces it by its own.
PLANNING_DATASET = "Dataset999_FederatedPlans"
_NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed")


class SitePlanningError(ValueError):
    """A fingerprint, dataset.json or site folder that the plans cannot be made or used from."""


@contextlib.contextmanager
def _scratch_nnunet_folders(root: Path):
    """nnUNet_raw / nnUNet_preprocessed pointed at `root` while inside (nnU-Net reads them on every use)."""
    saved = {key: os.environ.get(key) for key in _NNUNET_FOLDERS}
    os.environ["nnUNet_raw"] = str(root / "raw")
    os.environ["nnUNet_preprocessed"] = str(root / "preprocessed")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_inputs(fingerprint: dict, dataset_json: dict) -> None:
    for key in ("spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel"):
        if not fingerprint.get(key):
            raise SitePlanningError(f"fingerprint: no {key!r} (a merged dataset_fingerprint.json expected)")
    if len(fingerprint["spacings"]) != len(fingerprint["shapes_after_crop"]):
        raise SitePlanningError("fingerprint: spacings and shapes_after_crop differ in length")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in dataset_json:
            raise SitePlanningError(f"dataset.json: no {key!r}")
    channels = len(dataset_json["channel_names"])
    if len(fingerprint["foreground_intensity_properties_per_channel"]) != channels:
        raise SitePlanningError(
            f"fingerprint has {len(fingerprint['foreground_intensity_properties_per_channel'])} channel(s), "
            f"dataset.json {channels}"
        )


def plans_from_fingerprint(
    fingerprint: dict, dataset_json: dict, pet_zscore: str = "patient", allow_patch_smaller_than_case=False
) -> dict:
    """`nnUNetRecurPlans` from a (merged) fingerprint and a dataset.json, without any image."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    from nnunet_recur.trainers import planning

    _check_inputs(fingerprint, dataset_json)

    class FingerprintOnlyPlanner(ExperimentPlanner):
        def determine_reader_writer(self):  # no image to try: the first reader of the file ending
            return determine_reader_writer_from_dataset_json(self.dataset_json, None, verbose=False)

    scratch_json = {**dataset_json, "numTraining": len(fingerprint["spacings"])}
    with tempfile.TemporaryDirectory(prefix="recur-fedplans-") as tmp:
        root = Path(tmp)
        (root / "raw" / PLANNING_DATASET / "imagesTr").mkdir(parents=True)
        (root / "preprocessed" / PLANNING_DATASET).mkdir(parents=True)
        (root / "raw" / PLANNING_DATASET / "dataset.json").write_text(json.dumps(scratch_json))
        (root / "preprocessed" / PLANNING_DATASET / "dataset_fingerprint.json").write_text(
            json.dumps(fingerprint)
        )
        with _scratch_nnunet_folders(root), contextlib.redirect_stdout(io.StringIO()):
            base = FingerprintOnlyPlanner(PLANNING_DATASET, plans_name="nnUNetPlans").plan_experiment()
    base["experiment_planner_used"] = "ExperimentPlanner on a merged federated fingerprint"
    plans = planning.recur_plans(base, fingerprint, dataset_json, pet_zscore)
    configuration = plans["configurations"][CONFIGURATION]
    planning.check_patch_covers_cases(
        "the federation's cases",
        planning.shapes_at_spacing(fingerprint, configuration["spacing"]),
        configuration["patch_size"],
        configuration["spacing"],
        allow_patch_smaller_than_case,
    )
    return plans


def preprocess_site(dataset: int | str, shared: dict, processes: int = 1) -> Path:
    """Write the shared plans (with this site's dataset name) and preprocess the site's raw dataset.

    Returns the site's nnUNet_preprocessed dataset folder (plans, dataset.json, `3d_recur` data)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    from nnunet_recur.trainers import planning
    from nnunet_recur.trainers.inprocess_pool import nnunet_in_process

    name = planning.dataset_name(dataset)  # also requires nnUNet_raw / nnUNet_preprocessed
    raw_json = Path(nnUNet_raw.get()) / name / "dataset.json"
    if not raw_json.is_file():  # the readers' usual guard (site_summary has its twin), with this error type
        raise SitePlanningError(f"{raw_json}: not found")
    try:
        dataset_json = json.loads(raw_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SitePlanningError(f"{raw_json}: unreadable ({exc})") from exc
    schemes = shared.get("configurations", {}).get(CONFIGURATION, {}).get("normalization_schemes")
    if schemes is None:
        raise SitePlanningError(f"the shared plans have no {CONFIGURATION} configuration")
    if len(dataset_json.get("channel_names", {})) != len(schemes):
        raise SitePlanningError(
            f"{raw_json}: {len(dataset_json.get('channel_names', {}))} channel(s), the shared plans "
            f"normalise {len(schemes)}"
        )
    folder = Path(nnUNet_preprocessed.get()) / name
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{PLANS_NAME}.json", {**shared, "dataset_name": name}, indent=4)
    shutil.copyfile(raw_json, folder / "dataset.json")
    with nnunet_in_process(processes), contextlib.redirect_stdout(io.StringIO()):
        preprocess_dataset(dataset_id_of(name), PLANS_NAME, [CONFIGURATION], [processes], verbose=False)
    return folder
