"""Writes an nnU-Net v2 raw dataset: images, labels, auxiliary masks, dataset.json, splits_final.json.

Every file is written under a temporary name inside the dataset folder and then moved into place with
os.replace, so an interrupted run never leaves a half-written file where nnU-Net looks. Within a case
the CT (`_0000`, the file nnU-Net lists cases by) is moved last, so a case without it is not a case.
Only file names of the form `<prefix>_NNN...` are ever deleted. No patient name or id enters this folder.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur import atomic_io, nnunet_names
from nnunet_recur.atomic_io import write_text_atomic  # noqa: F401 - the converter's callers import it here
from nnunet_recur.dataset_conversion.nifti_io import verify_written_nifti

FILE_ENDING = ".nii.gz"
# 0: CT (HU), 1: PET in SUV (the SUVmax baseline reads it), 2: PET z-scored over the whole stored PET before
# the crop (the network's PET input: paper II.C "on a patient level", as the authors' code)
CHANNEL_NAMES = {"0": "CT", "1": "PET", "2": "PET_zscore_patient"}
PARTS = ("Tr", "Ts")
MASK_NAMES = ("gtv", "brain")
TMP_DIR_NAME = ".recur_tmp"
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


class DatasetLocationError(Exception):
    """The output location cannot be used (unset nnUNet_raw, clashing dataset id, bad name)."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise DatasetLocationError(f"--dataset-id must be between 1 and 999, got {dataset_id}")
    if not _DATASET_NAME_RE.match(name):
        raise DatasetLocationError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    return nnunet_names.dataset_folder_name(dataset_id, name)


def raw_root(raw_dir: str | os.PathLike | None) -> Path:
    """`raw_dir` when given, else $nnUNet_raw; a clear error when neither is set."""
    value = os.fspath(raw_dir) if raw_dir else os.environ.get("nnUNet_raw")
    if not value:
        raise DatasetLocationError(
            "nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (see `recur env`) or pass --raw-dir"
        )
    return Path(value)


def check_no_id_clash(root: Path, dataset_id: int, folder_name: str) -> None:
    """nnU-Net finds a dataset by its number: a second DatasetXXX_* folder with that number breaks it."""
    if not root.is_dir():
        return
    prefix = nnunet_names.dataset_prefix(dataset_id)
    clashes = sorted(p.name for p in root.iterdir() if p.name.startswith(prefix) and p.name != folder_name)
    if clashes:
        raise DatasetLocationError(
            f"{root}: dataset id {dataset_id} is already used by {', '.join(clashes)}; "
            "choose another --dataset-id or remove that folder"
        )


def write_json_atomic(path: Path, content: dict | list) -> None:
    """JSON with the converter's fixed layout (indent 4, insertion order; nnU-Net's dataset.json and the
    reports keep the bytes they always had) so reruns produce the same bytes; the writer is atomic_io's."""
    atomic_io.write_json_atomic(path, content, indent=4, allow_nan=True)


def ct_for_writing(ct: sitk.Image) -> sitk.Image:
    """CT in HU as int16 when it holds whole numbers within range (DICOM CT does), else float32."""
    array = sitk.GetArrayViewFromImage(ct)
    if np.issubdtype(array.dtype, np.integer) and array.min() >= -32768 and array.max() <= 32767:
        return sitk.Cast(ct, sitk.sitkInt16)
    if array.size and np.all(np.mod(array, 1) == 0) and array.min() >= -32768 and array.max() <= 32767:
        return sitk.Cast(ct, sitk.sitkInt16)
    return sitk.Cast(ct, sitk.sitkFloat32)


class DatasetWriter:
    """One nnU-Net raw dataset folder, e.g. $nnUNet_raw/Dataset501_RecurOPSCC."""

    def __init__(self, folder: Path, case_prefix: str = "RECUR"):
        self.folder = Path(folder)
        self.case_prefix = case_prefix
        self.tmp_dir = self.folder / TMP_DIR_NAME
        self._case_re = re.compile(
            rf"^({re.escape(case_prefix)}_\d+)(_\d{{4}}|_[a-z]+)?{re.escape(FILE_ENDING)}$"
        )

    # -- paths -------------------------------------------------------------------------------------------
    def case_files(self, case: str, part: str, mask_names: tuple[str, ...]) -> dict[str, Path]:
        """Final paths of one case, in the order they are moved into place (CT last)."""
        if part not in PARTS:
            raise ValueError(part)
        files = {f"mask_{m}": self.folder / f"masks{part}" / f"{case}_{m}{FILE_ENDING}" for m in mask_names}
        files["label"] = self.folder / f"labels{part}" / f"{case}{FILE_ENDING}"
        files["pet"] = self.folder / f"images{part}" / f"{case}_0001{FILE_ENDING}"
        files["pet_zscore"] = self.folder / f"images{part}" / f"{case}_0002{FILE_ENDING}"
        files["ct"] = self.folder / f"images{part}" / f"{case}_0000{FILE_ENDING}"
        return files

    def case_complete(self, case: str, part: str, mask_names: tuple[str, ...]) -> bool:
        return all(p.is_file() for p in self.case_files(case, part, mask_names).values())

    def case_verified(self, case: str, part: str, mask_names: tuple[str, ...]) -> bool:
        """Every file of the case is present and whole (header, size, gzip CRC): what a rerun checks
        before it skips a case, so a file truncated by a full disk is rewritten, not kept for good."""
        if not self.case_complete(case, part, mask_names):
            return False
        try:
            for path in self.case_files(case, part, mask_names).values():
                verify_written_nifti(path)
        except OSError:
            return False
        return True

    # -- writing -----------------------------------------------------------------------------------------
    def write_case(self, case: str, part: str, images: dict[str, sitk.Image]) -> None:
        """Write one case; `images` has keys ct, pet, label and mask_<name> (all on one grid)."""
        mask_names = tuple(k[len("mask_") :] for k in images if k.startswith("mask_"))
        targets = self.case_files(case, part, mask_names)
        if set(targets) != set(images):
            raise ValueError(f"case {case}: expected images {sorted(targets)}, got {sorted(images)}")
        staging = self.tmp_dir / f"write_{case}_{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            written = {}
            for key, target in targets.items():
                tmp = staging / target.name
                sitk.WriteImage(images[key], str(tmp), useCompression=True)
                verify_written_nifti(tmp)  # ITK does not raise on a full disk: check before the rename
                written[key] = tmp
            for key, target in targets.items():  # CT last
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(written[key], target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _case_files(self):
        """Yield (path, case, part) for every converter-named file in the images/labels/masks/dose folders."""
        for sub in ("images", "labels", "masks", "dose"):
            for part in PARTS:
                folder = self.folder / f"{sub}{part}"
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    match = self._case_re.match(path.name.replace(".json", FILE_ENDING))
                    if match:
                        yield path, match.group(1), part

    def remove_case(self, case: str) -> list[Path]:
        """Delete every file of `case` from every part (used when a case changes part or is excluded)."""
        removed = [path for path, name, _ in self._case_files() if name == case]
        for path in removed:
            path.unlink()
        return removed

    def cases_on_disk(self) -> dict[str, set[str]]:
        """{case: {parts}} for every converter-named file found in the dataset folder."""
        found: dict[str, set[str]] = {}
        for _, case, part in self._case_files():
            found.setdefault(case, set()).add(part)
        return found

    def ensure_folders(self, with_test: bool, with_masks: bool) -> None:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if with_test else ()):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        if with_masks:
            (self.folder / "masksTr").mkdir(parents=True, exist_ok=True)
            if with_test:
                (self.folder / "masksTs").mkdir(parents=True, exist_ok=True)

    def write_dataset_json(self, content: dict) -> Path:
        path = self.folder / "dataset.json"
        write_json_atomic(path, content)
        return path

    def cleanup_tmp(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def relapse_dataset_labels() -> dict:
    """Region-based: one sigmoid output for the relapse."""
    return {"labels": {"background": 0, "relapse": [1]}, "regions_class_order": [1]}


def hecktor_dataset_labels(with_gtvn: bool) -> dict:
    """Region-based, one sigmoid per structure. Each region lists the label values it covers: GTVp is
    label 1 and GTVn label 2 in the HECKTOR files, and the two do not overlap, so GTVn is [2] (not [1, 2])."""
    if with_gtvn:
        return {"labels": {"background": 0, "GTVp": [1], "GTVn": [2]}, "regions_class_order": [1, 2]}
    return {"labels": {"background": 0, "GTVp": [1]}, "regions_class_order": [1]}


def base_dataset_json(name: str, description: str, labels: dict, num_training: int) -> dict:
    content = {
        "name": name,
        "description": description,
        "channel_names": dict(CHANNEL_NAMES),
    }
    content.update(labels)
    content["numTraining"] = int(num_training)
    content["file_ending"] = FILE_ENDING
    content["overwrite_image_reader_writer"] = "SimpleITKIO"
    return content
