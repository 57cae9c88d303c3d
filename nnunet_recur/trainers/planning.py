"""``nnUNetRecurPlans`` / ``3d_recur``: the paper's preprocessing expressed as nnU-Net plans.

nnU-Net's own fingerprint and planner run first (they supply the reader/writer, resampling functions and label
handling); :func:`recur_plans` then derives a plans file with a single configuration ``3d_recur``:

* target spacing = the data's CT spacing (median over cases; the converter resamples PET onto the CT grid, so
  a dataset of one scanner protocol is not resampled at all); identity axis transpose, so arrays stay (z, y,
  x) and x - left-right - is the last axis (the flip augmentation relies on it);
* patch 128 x 224 x 160 (z, y, x) and batch 2 as in the paper; where the cropped volumes are smaller, each
  axis is the largest cropped size rounded up to a multiple of 8 (the network pools three times), so one patch
  covers a whole case. A case *larger* than the paper's patch would silently turn training into random patches
  and inference into a sliding window: planning refuses it (:class:`PatchSmallerThanCase`) unless
  ``allow_patch_smaller_than_case`` (``recur plan --allow-patch-smaller-than-case``), and the summary says so;
* network ``nnunet_recur.trainers.network.RecurUNet`` (dotted path; nnU-Net resolves it with
  ``pydoc.locate``);
* normalisation: a channel named CT uses nnU-Net's ``CTNormalization`` with intensity properties
  percentile_00_5 = -1024, percentile_99_5 = 1024, mean = 0, std = 1024 - i.e. clip to [-1024, 1024] HU and
  map to [-1, 1]. PET (:data:`PET_ZSCORE_REGIONS`, ``recur plan --pet-zscore``): ``patient`` (default, the
  authors' code) feeds the network the converter's channel ``PET_zscore_patient`` - PET z-scored over the
  whole stored PET before the crop - through ``NoNormalization``, and the network reads CT and that channel
  only (``arch_kwargs.input_channel_indices``), so the SUV channel stays in imagesTr/imagesTs for the SUVmax
  baseline; ``crop`` z-scores the SUV channel over the stored crop (nnU-Net's ``ZScoreNormalization``, no
  mask), the only choice for a dataset without that channel. Both live in the plans, which the trainer
  copies next to the model, so ``nnUNetv2_predict`` and ``nnUNetPredictor`` on converted cases normalise
  exactly as preprocessing did.

``--pretrain-from`` (:func:`plan_with_pretraining`): the *fine-tuning* dataset defines the plans (spacing and
patch); they are moved to the pre-training dataset with nnU-Net's ``move_plans_between_datasets`` and HECKTOR
is preprocessed with them, so pre-training sees data at the resolution and patch size the fine-tuned network
works at, and both share one architecture (only an output head of a different size is re-initialised).

In-process planning (``trainers/inprocess_pool.py``): with one process, nnU-Net's spawn pools and its
12-process listing pool are replaced by calls in this process (~3.6 CPU-s of worker imports saved per pool,
six pools for ``--pretrain-from``); nnU-Net's own per-case functions do the work, so the files are the same.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.nnunet_names import CONFIGURATION, PLANS_NAME
from nnunet_recur.nnunet_names import dataset_id as dataset_id_of  # many locals here are named dataset_id
from nnunet_recur.trainers.inprocess_pool import nnunet_in_process
from nnunet_recur.trainers.network import PAPER_FEATURES_PER_STAGE

RECUR_PLANS_NAME = PLANS_NAME  # the names live in nnunet_names.py; these aliases keep the callers' imports
RECUR_CONFIGURATION = CONFIGURATION
PAPER_PATCH_SIZE = (128, 224, 160)  # (z, y, x)
PAPER_BATCH_SIZE = 2
PATCH_DIVISOR = 2 ** (len(PAPER_FEATURES_PER_STAGE) - 1)
NETWORK_CLASS_NAME = "nnunet_recur.trainers.network.RecurUNet"
CT_INTENSITY_PROPERTIES = {"mean": 0.0, "std": 1024.0, "percentile_00_5": -1024.0, "percentile_99_5": 1024.0}
PATIENT_ZSCORE_CHANNEL = "PET_zscore_patient"  # written by the converter (nnunet_writer.CHANNEL_NAMES)
PET_ZSCORE_REGIONS = ("patient", "crop")


class PlanningError(RuntimeError):
    """A dataset cannot be planned (missing folders, unexpected channels); the message names the problem."""


class PatchSmallerThanCase(PlanningError):
    """Some cases are larger than the paper's patch on some axis (see the module docstring)."""


@dataclass
class PlanSummary:
    dataset_name: str
    plans_file: str
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    cases_preprocessed: int
    preprocessing_skipped: bool
    largest_case: list[int] | None = None  # (z, y, x) voxels at the plans' spacing, per axis over the cases
    cases_larger_than_patch: int = 0
    pet_zscore: str = "crop"  # the region the network's PET input was z-scored over

    def patch_note(self) -> str:
        """One line for the plan summary: does one patch cover every case?"""
        if self.largest_case is None:
            return "case sizes unknown"
        if self.cases_larger_than_patch == 0:
            return f"one patch covers every case (largest {self.largest_case})"
        return (
            f"WARNING: {self.cases_larger_than_patch} case(s) larger than the patch (largest "
            f"{self.largest_case}): training sees random patches, inference a sliding window - not the "
            "paper's whole crop"
        )


def recur_patch_size(shapes_zyx: Sequence[Sequence[int]]) -> list[int]:
    """Per axis: the paper's patch, or the largest case rounded up to a multiple of 8 when that is smaller."""
    largest = np.max(np.asarray(shapes_zyx, dtype=int), axis=0)
    return [
        int(min(paper, PATCH_DIVISOR * math.ceil(size / PATCH_DIVISOR)))
        for paper, size in zip(PAPER_PATCH_SIZE, largest, strict=True)
    ]


def shapes_at_spacing(fingerprint: dict, spacing: Sequence[float]) -> list[list[int]]:
    """Every case's cropped shape (z, y, x) after nnU-Net resamples it to ``spacing`` (its rounding)."""
    return [
        [round(size * s / t) for size, s, t in zip(shape, case_spacing, spacing, strict=True)]
        for shape, case_spacing in zip(fingerprint["shapes_after_crop"], fingerprint["spacings"], strict=True)
    ]


def cases_larger_than(shapes_zyx: Sequence[Sequence[int]], patch_zyx: Sequence[int]) -> int:
    return sum(any(s > p for s, p in zip(shape, patch_zyx, strict=True)) for shape in shapes_zyx)


def check_patch_covers_cases(
    name: str, shapes_zyx: Sequence[Sequence[int]], patch_zyx: Sequence[int], spacing, allowed: bool
) -> tuple[list[int], int]:
    """(largest shape per axis, number of cases larger than the patch); refuses them unless ``allowed``."""
    largest = [int(v) for v in np.max(np.asarray(shapes_zyx, dtype=int), axis=0)]
    larger = cases_larger_than(shapes_zyx, patch_zyx)
    if larger and not allowed:
        raise PatchSmallerThanCase(
            f"{name}: {larger} of {len(shapes_zyx)} cases are larger than the patch {list(patch_zyx)} "
            f"(largest {largest} voxels (z, y, x) at spacing {[round(float(s), 4) for s in spacing]} mm): "
            "training would see random patches and inference a sliding window instead of the paper's whole "
            "crop. Convert with a smaller crop box (HECKTOR: recur convert hecktor --crop fixed-mm) "
            "or rerun with --allow-patch-smaller-than-case"
        )
    return largest, larger


def _names_by_index(channel_names: dict) -> list[str]:
    return [str(name) for _, name in sorted(channel_names.items(), key=lambda item: int(item[0]))]


def normalisation_for_channels(channel_names: dict) -> list[str]:
    """CTNormalization for CT, NoNormalization for the converter's patient-level z-scored PET (normalised
    already), ZScoreNormalization for every other channel (PET in SUV)."""
    schemes = []
    for name in _names_by_index(channel_names):
        if name.casefold() == "ct":
            schemes.append("CTNormalization")
        elif name == PATIENT_ZSCORE_CHANNEL:
            schemes.append("NoNormalization")
        else:
            schemes.append("ZScoreNormalization")
    return schemes


def pet_zscore_inputs(channel_names: dict, pet_zscore: str = "patient") -> tuple[str, list[int] | None]:
    """(region actually used, channels the network reads or None for all).

    ``patient`` needs the converter's ``PET_zscore_patient`` channel and then reads every channel but the SUV
    one; without that channel (a dataset not made by ``recur convert``) it falls back to ``crop``. ``crop``
    reads every channel but the patient-level one.
    """
    if pet_zscore not in PET_ZSCORE_REGIONS:
        raise PlanningError(f"--pet-zscore must be one of {PET_ZSCORE_REGIONS}, got {pet_zscore!r}")
    names = _names_by_index(channel_names)
    if PATIENT_ZSCORE_CHANNEL not in names:
        return "crop", None
    suv = [i for i, n in enumerate(names) if n.casefold() == "pet"]
    skip = set(suv) if pet_zscore == "patient" else {names.index(PATIENT_ZSCORE_CHANNEL)}
    return pet_zscore, [i for i in range(len(names)) if i not in skip]


def recur_plans(base_plans: dict, fingerprint: dict, dataset_json: dict, pet_zscore: str = "patient") -> dict:
    """The ``nnUNetRecurPlans`` dict from nnU-Net's default plans, the fingerprint and dataset.json."""
    if "3d_fullres" not in base_plans["configurations"]:
        raise PlanningError(
            f"{base_plans['dataset_name']}: nnU-Net planned no 3d_fullres configuration (2D data?)"
        )
    fullres = base_plans["configurations"]["3d_fullres"]
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    shapes = np.asarray(fingerprint["shapes_after_crop"], dtype=int)
    target_spacing = np.median(spacings, axis=0)
    shapes_at_target = shapes_at_spacing(fingerprint, target_spacing)
    channel_names = dataset_json["channel_names"]
    normalisation = normalisation_for_channels(channel_names)
    region, input_channels = pet_zscore_inputs(channel_names, pet_zscore)
    arch_kwargs = {"features_per_stage": list(PAPER_FEATURES_PER_STAGE)}
    if input_channels is not None:
        arch_kwargs["input_channel_indices"] = input_channels

    plans = deepcopy(base_plans)
    plans["plans_name"] = RECUR_PLANS_NAME
    plans["transpose_forward"] = [0, 1, 2]
    plans["transpose_backward"] = [0, 1, 2]
    plans["original_median_spacing_after_transp"] = [float(s) for s in np.median(spacings, axis=0)]
    plans["original_median_shape_after_transp"] = [int(round(s)) for s in np.median(shapes, axis=0)]
    plans["experiment_planner_used"] = (
        f"{base_plans.get('experiment_planner_used')} + nnunet_recur.recur_plans"
    )
    intensity = plans["foreground_intensity_properties_per_channel"]
    for channel, scheme in enumerate(normalisation):
        if scheme == "CTNormalization":
            intensity[str(channel)] = {**intensity.get(str(channel), {}), **CT_INTENSITY_PROPERTIES}
    plans["configurations"] = {
        RECUR_CONFIGURATION: {
            "data_identifier": f"{RECUR_PLANS_NAME}_{RECUR_CONFIGURATION}",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": PAPER_BATCH_SIZE,
            "patch_size": recur_patch_size(shapes_at_target),
            "median_image_size_in_voxels": [int(round(s)) for s in np.median(shapes_at_target, axis=0)],
            "spacing": [float(s) for s in target_spacing],
            "normalization_schemes": normalisation,
            "use_mask_for_norm": [False] * len(normalisation),
            "resampling_fn_data": fullres["resampling_fn_data"],
            "resampling_fn_seg": fullres["resampling_fn_seg"],
            "resampling_fn_data_kwargs": fullres["resampling_fn_data_kwargs"],
            "resampling_fn_seg_kwargs": fullres["resampling_fn_seg_kwargs"],
            "resampling_fn_probabilities": fullres["resampling_fn_probabilities"],
            "resampling_fn_probabilities_kwargs": fullres["resampling_fn_probabilities_kwargs"],
            "architecture": {
                "network_class_name": NETWORK_CLASS_NAME,
                "arch_kwargs": arch_kwargs,
                "_kw_requires_import": [],
            },
            "batch_dice": True,
            "recur_pet_zscore": region,
        }
    }
    return plans


# ------------------------------------------------------------------------------------ nnU-Net orchestration
def _require_nnunet_paths() -> tuple[str, str]:
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    for variable in (nnUNet_raw, nnUNet_preprocessed):
        if not variable.get():
            raise PlanningError(f'{variable.env_var_name} is not set: export it (see `eval "$(recur env)"`)')
    return nnUNet_raw.get(), nnUNet_preprocessed.get()


def dataset_name(dataset_id: int | str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    raw, _ = _require_nnunet_paths()
    try:
        return maybe_convert_to_dataset_name(dataset_id)
    except RuntimeError as error:
        raise PlanningError(f"no dataset with id {dataset_id} in nnUNet_raw={raw}") from error


def _write_json_atomically(data: dict, path: str) -> None:
    """The plans file: indent 4, insertion order, no final newline (the bytes it always had)."""
    write_json_atomic(path, data, indent=4, allow_nan=True, final_newline=False)


def _load_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def _training_case_ids(name: str) -> list[str]:
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    raw, _ = _require_nnunet_paths()
    dataset_json = _load_json(os.path.join(raw, name, "dataset.json"))
    return sorted(get_filenames_of_train_images_and_targets(os.path.join(raw, name), dataset_json))


def _preprocessed_case_ids(name: str, plans: dict) -> list[str]:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    _, preprocessed = _require_nnunet_paths()
    folder = os.path.join(preprocessed, name, plans["configurations"][RECUR_CONFIGURATION]["data_identifier"])
    if not os.path.isdir(folder) or not os.listdir(folder):
        return []
    try:
        return sorted(infer_dataset_class(folder).get_identifiers(folder))
    except (RuntimeError, AssertionError, ValueError):
        return []


def _save_plans_and_preprocess(
    name: str, plans: dict, num_processes: int, force: bool, fingerprint: dict, allow_larger: bool
) -> PlanSummary:
    """Check the patch covers the cases (at the plans' spacing); write the plans; preprocess unless the same
    plans were preprocessed for every training case already."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

    configuration = plans["configurations"][RECUR_CONFIGURATION]
    largest, larger = check_patch_covers_cases(
        name,
        shapes_at_spacing(fingerprint, configuration["spacing"]),
        configuration["patch_size"],
        configuration["spacing"],
        allow_larger,
    )
    _, preprocessed = _require_nnunet_paths()
    plans_file = os.path.join(preprocessed, name, f"{RECUR_PLANS_NAME}.json")
    unchanged = _load_json(plans_file) == json.loads(json.dumps(plans))
    complete = _preprocessed_case_ids(name, plans) == _training_case_ids(name)
    skip = unchanged and complete and not force
    if not unchanged:
        _write_json_atomically(plans, plans_file)
    if not skip:
        preprocess_dataset(
            dataset_id_of(name),
            RECUR_PLANS_NAME,
            [RECUR_CONFIGURATION],
            [num_processes],
            verbose=False,
        )
    configuration = plans["configurations"][RECUR_CONFIGURATION]
    return PlanSummary(
        dataset_name=name,
        plans_file=plans_file,
        spacing=configuration["spacing"],
        patch_size=configuration["patch_size"],
        batch_size=configuration["batch_size"],
        cases_preprocessed=len(_preprocessed_case_ids(name, plans)),
        preprocessing_skipped=skip,
        largest_case=largest,
        cases_larger_than_patch=larger,
        pet_zscore=configuration.get("recur_pet_zscore", "crop"),
    )


def _fingerprint(dataset_id: int, num_processes: int, force: bool) -> dict:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset

    return extract_fingerprint_dataset(
        dataset_id, num_processes=num_processes, check_dataset_integrity=True, clean=force, verbose=False
    )


def plan_dataset(
    dataset_id: int,
    num_processes: int = 1,
    force: bool = False,
    allow_patch_smaller_than_case: bool = False,
    pet_zscore: str = "patient",
) -> PlanSummary:
    """Fingerprint, nnU-Net's default planner, ``nnUNetRecurPlans`` / ``3d_recur``, then preprocessing."""
    with nnunet_in_process(num_processes):
        return _plan_dataset(dataset_id, num_processes, force, allow_patch_smaller_than_case, pet_zscore)


def _plan_dataset(
    dataset_id: int, num_processes: int, force: bool, allow_patch_smaller_than_case: bool, pet_zscore: str
) -> PlanSummary:
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    name = dataset_name(dataset_id)
    raw, _ = _require_nnunet_paths()
    dataset_json = _load_json(os.path.join(raw, name, "dataset.json"))
    if dataset_json is None:
        raise PlanningError(f"{os.path.join(raw, name, 'dataset.json')} is missing")
    fingerprint = _fingerprint(dataset_id, num_processes, force)
    planner = ExperimentPlanner(
        dataset_id, plans_name="nnUNetPlans"
    )  # also copies dataset.json (needed below)
    base_plans = planner.plan_experiment()
    return _save_plans_and_preprocess(
        name,
        recur_plans(base_plans, fingerprint, dataset_json, pet_zscore),
        num_processes,
        force,
        fingerprint,
        allow_patch_smaller_than_case,
    )


def plan_with_pretraining(
    dataset_id: int,
    pretrain_id: int,
    num_processes: int = 1,
    force: bool = False,
    allow_patch_smaller_than_case: bool = False,
    pet_zscore: str = "patient",
) -> tuple[PlanSummary, PlanSummary]:
    """Plan the fine-tuning dataset, then move its plans to the pre-training dataset and preprocess that."""
    with nnunet_in_process(num_processes):
        return _plan_with_pretraining(
            dataset_id, pretrain_id, num_processes, force, allow_patch_smaller_than_case, pet_zscore
        )


def _plan_with_pretraining(
    dataset_id: int,
    pretrain_id: int,
    num_processes: int,
    force: bool,
    allow_patch_smaller_than_case: bool,
    pet_zscore: str,
) -> tuple[PlanSummary, PlanSummary]:
    from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import (
        move_plans_between_datasets,
    )

    target = _plan_dataset(dataset_id, num_processes, force, allow_patch_smaller_than_case, pet_zscore)
    source_name = dataset_name(pretrain_id)
    raw, preprocessed = _require_nnunet_paths()
    source_json = _load_json(os.path.join(raw, source_name, "dataset.json"))
    target_json = _load_json(os.path.join(raw, target.dataset_name, "dataset.json"))
    if source_json["channel_names"] != target_json["channel_names"]:
        raise PlanningError(
            f"{source_name} has channels {source_json['channel_names']} but {target.dataset_name} has "
            f"{target_json['channel_names']}: pre-training needs the same input channels in the same order"
        )
    # the trainer copies dataset_fingerprint.json next to the model; its shapes check the patch below
    source_fingerprint = _fingerprint(pretrain_id, num_processes, force)
    os.makedirs(os.path.join(preprocessed, source_name), exist_ok=True)
    moved_file = os.path.join(preprocessed, source_name, f"{RECUR_PLANS_NAME}.json")
    previous = _load_json(moved_file)
    move_plans_between_datasets(dataset_id, pretrain_id, RECUR_PLANS_NAME, RECUR_PLANS_NAME)
    moved = _load_json(moved_file)
    if previous is not None:  # let the skip check compare with what was preprocessed before
        _write_json_atomically(previous, moved_file)
    # nnUNet#2560: preprocessing reads dataset.json from nnUNet_preprocessed, which the move does not write.
    shutil.copyfile(
        os.path.join(raw, source_name, "dataset.json"),
        os.path.join(preprocessed, source_name, "dataset.json"),
    )
    pretrain = _save_plans_and_preprocess(
        source_name, moved, num_processes, force, source_fingerprint, allow_patch_smaller_than_case
    )
    return target, pretrain
