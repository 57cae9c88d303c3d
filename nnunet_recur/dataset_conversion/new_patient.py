"""A new patient (no relapse yet) prepared exactly like the training data: the one path shared by
`recur convert new-patient` and `recur predict`, kept apart from the cohort driver because it converts one
folder against an existing dataset's recorded crop box instead of building a dataset."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from nnunet_recur.atomic_io import atomic_path
from nnunet_recur.dataset_conversion.crop import CropBox
from nnunet_recur.dataset_conversion.inhouse import InhouseOptions

CASE_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def check_case_id(case_id: str) -> str:
    """A case id is a file-name stem: letters, digits, '_' and '-' only (no separators, no '..')."""
    if not CASE_ID_RE.match(case_id or ""):
        raise ValueError(f"case id {case_id!r} must be letters, digits, '_' or '-' (it becomes a file name)")
    return case_id


@dataclass
class NewPatientInput:
    """A new patient prepared like the training data: the case on its CT grid, the cropped images the
    model sees (keys as `crop_case`), and where the box sits (voxel index of its first voxel in `case.ct`)."""

    case: object  # PreparedCase (carries planning_ct / planning_series for putting predictions back)
    images: dict
    box: CropBox
    box_start: tuple[int, int, int]


def crop_box_of(dataset_json: dict) -> CropBox:
    """The crop box recorded by the converter; KeyError('recur_crop') when there is none."""
    if "recur_crop" not in dataset_json:
        raise KeyError("recur_crop")
    return CropBox.from_json(dataset_json["recur_crop"])


def prepare_new_patient_input(
    patient_folder: str | Path,
    dataset_json: dict,
    *,
    roi_gtv: str | None = None,
    roi_brain: str | None = None,
    pet_series: str | None = None,
    ct_series: str | None = None,
) -> NewPatientInput:
    """The one preparation path of a new patient (no relapse yet), shared by `recur convert new-patient`
    and `recur predict`: same reader, checks, axial cut and PET resampling as training, and the crop box
    recorded in the training dataset's dataset.json (same size in voxels, centred on this patient's GTV).
    Raises ConversionError with the exclusion cause when the patient fails a check."""
    from nnunet_recur.dataset_conversion import geometry
    from nnunet_recur.dataset_conversion.inhouse import load_inhouse_patient
    from nnunet_recur.dataset_conversion.prepare import crop_case, measure_case

    box = crop_box_of(dataset_json)
    defaults = InhouseOptions()
    options = InhouseOptions(
        roi_gtv=roi_gtv or defaults.roi_gtv,
        roi_brain=roi_brain or defaults.roi_brain,
        require_relapse=False,
        pet_series=pet_series,
        ct_series=ct_series,
    )
    options.validate()
    case = load_inhouse_patient(patient_folder, options)
    centre = measure_case(case).centre_index
    images = crop_case(case, box, centre)
    start = geometry.box_start(centre, box.size_voxels) if box.size_voxels is not None else (0, 0, 0)
    return NewPatientInput(case=case, images=images, box=box, box_start=start)


def prepare_new_patient(
    patient_folder: str | Path,
    dataset_folder: str | Path,
    out_dir: str | Path,
    case_id: str = "RECUR_NEW",
    *,
    roi_gtv: str | None = None,
    roi_brain: str | None = None,
    pet_series: str | None = None,
    ct_series: str | None = None,
) -> dict[str, Path]:
    """A new patient (no relapse yet) prepared exactly like the training data of `dataset_folder`, for
    `nnUNetv2_predict -i OUT_DIR` (see `prepare_new_patient_input`).

    Writes OUT_DIR/<case>_0000.nii.gz (CT), _0001.nii.gz (PET SUV), _0002.nii.gz (PET z-scored on the patient
    level) and OUT_DIR/masks/<case>_gtv|_brain.nii.gz (the masks the evaluation reads); a relapse, when the
    folder has one, goes to OUT_DIR/labels/<case>.nii.gz. Raises ConversionError with the exclusion cause when
    the patient fails a check, ValueError for a case id that is not a plain file-name stem (`[A-Za-z0-9_-]`:
    `../../x` would write outside OUT_DIR).
    """
    check_case_id(case_id)
    dataset_json = json.loads((Path(dataset_folder) / "dataset.json").read_text())
    images = prepare_new_patient_input(
        patient_folder,
        dataset_json,
        roi_gtv=roi_gtv,
        roi_brain=roi_brain,
        pet_series=pet_series,
        ct_series=ct_series,
    ).images
    out_dir = Path(out_dir)
    targets = {
        "ct": out_dir / f"{case_id}_0000.nii.gz",
        "pet": out_dir / f"{case_id}_0001.nii.gz",
        "pet_zscore": out_dir / f"{case_id}_0002.nii.gz",
        "mask_gtv": out_dir / "masks" / f"{case_id}_gtv.nii.gz",
        "mask_brain": out_dir / "masks" / f"{case_id}_brain.nii.gz",
        "label": out_dir / "labels" / f"{case_id}.nii.gz",
    }
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.nifti_io import verify_written_nifti

    if not sitk.GetArrayViewFromImage(images["label"]).any():
        del targets["label"]
    for key, target in targets.items():
        with atomic_path(target) as tmp:
            sitk.WriteImage(images[key], str(tmp), useCompression=True)
            verify_written_nifti(tmp)  # ITK does not raise on a full disk: check before the rename
    return targets
