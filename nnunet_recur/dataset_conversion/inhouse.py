"""Load one in-house patient folder (DICOM export of a TPS, or the NIfTI layout) as a `PreparedCase`.

DICOM: series are found by reading headers (any file names, any nesting); CT series -> image (HU);
PET -> SUVbw; RTSTRUCT -> GTV (union of the ROIs matching the GTV pattern) and relapse (union of the
ROIs matching the relapse pattern) on the CT grid. NIfTI: ct, pet (SUV), gtv, relapse [, brain].
Every problem raises `ConversionError` with its exclusion cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import (
    CT_CORRUPT,
    CT_MISSING,
    FRAME_OF_REFERENCE_MISMATCH,
    GTV_MISSING,
    PET_CORRUPT,
    PET_MISSING,
    RELAPSE_MISSING,
    RELAPSE_OUTSIDE_IMAGE,
    RTSTRUCT_MISSING,
    UNREADABLE,
    ConversionError,
)
from nnunet_recur.dataset_conversion.nifti_io import read_nifti
from nnunet_recur.dataset_conversion.prepare import PreparedCase, assemble_case, binary_uint8
from nnunet_recur.dataset_conversion.quality import check_in_plane_spacing

# TPS naming defaults: GTV_T, GTV_N, GTVp, GTV-1 ...; Relapse Volume_T, recurrence, recidiv ...; Brain.
DEFAULT_ROI_GTV = r"(?i)^\s*gtv"
DEFAULT_ROI_RELAPSE = r"(?i)(relapse|recur|recidiv|rezidiv|residiv)"
DEFAULT_ROI_BRAIN = r"(?i)^\s*(brain|hjerne|cerebrum|encephalon)\s*$"

NIFTI_NAMES = {"ct": "ct", "pet": "pet", "gtv": "gtv", "relapse": "relapse", "brain": "brain"}


@dataclass(frozen=True)
class InhouseOptions:
    roi_gtv: str = DEFAULT_ROI_GTV
    roi_relapse: str = DEFAULT_ROI_RELAPSE
    roi_brain: str = DEFAULT_ROI_BRAIN
    require_relapse: bool = True  # False for a new patient at inference (no relapse yet)

    def validate(self) -> None:
        patterns = (
            ("--roi-gtv", self.roi_gtv),
            ("--roi-relapse", self.roi_relapse),
            ("--roi-brain", self.roi_brain),
        )
        for label, pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{label}: invalid regular expression {pattern!r}: {exc}") from exc


def find_nifti(folder: Path, stem: str) -> Path | None:
    for ending in (".nii.gz", ".nii"):
        path = folder / f"{stem}{ending}"
        if path.is_file():
            return path
    return None


def is_nifti_layout(folder: Path) -> bool:
    return find_nifti(folder, "ct") is not None


def load_inhouse_patient(folder: str | Path, options: InhouseOptions = InhouseOptions()) -> PreparedCase:
    """One patient folder -> PreparedCase on the CT grid (raises ConversionError with the cause)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(UNREADABLE, "not a folder", str(folder))
    if is_nifti_layout(folder):
        return _load_nifti_patient(folder, options)
    return _load_dicom_patient(folder, options)


# -- NIfTI layout ----------------------------------------------------------------------------------------
def _load_nifti_patient(folder: Path, options: InhouseOptions) -> PreparedCase:
    ct_path = find_nifti(folder, "ct")
    ct = read_nifti(ct_path, CT_CORRUPT)
    pet_path = find_nifti(folder, "pet")
    if pet_path is None:
        raise ConversionError(PET_MISSING, "no pet.nii.gz", str(folder))
    pet = read_nifti(pet_path, PET_CORRUPT)
    check_in_plane_spacing(ct, "CT", str(ct_path))
    check_in_plane_spacing(pet, "PET", str(pet_path))
    gtv_path = find_nifti(folder, "gtv")
    if gtv_path is None:
        raise ConversionError(GTV_MISSING, "no gtv.nii.gz", str(folder))
    relapse_path = find_nifti(folder, "relapse")
    if relapse_path is None and options.require_relapse:
        raise ConversionError(RELAPSE_MISSING, "no relapse.nii.gz", str(folder))
    gtv = binary_uint8(read_nifti(gtv_path, GTV_MISSING))
    if relapse_path is not None:
        relapse = binary_uint8(read_nifti(relapse_path, RELAPSE_MISSING))
    else:
        relapse = sitk.Image(gtv.GetSize(), sitk.sitkUInt8)
        relapse.CopyInformation(gtv)
    brain_path = find_nifti(folder, "brain")
    brain = binary_uint8(read_nifti(brain_path, UNREADABLE)) if brain_path else None
    case = assemble_case(
        ct,
        pet,
        relapse,
        gtv,
        brain,
        label_what="relapse",
        source=str(folder),
        require_label=options.require_relapse,
    )
    case.planning_ct = ct
    return _with_brain(case, options, "brain.nii.gz" if brain is not None else None)


# -- DICOM layout ----------------------------------------------------------------------------------------
def _load_dicom_patient(folder: Path, options: InhouseOptions) -> PreparedCase:
    from nnunet_recur.dataset_conversion.dicom_series import read_image_series, scan_folder
    from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct
    from nnunet_recur.dataset_conversion.suv import pet_series_to_suv

    found = scan_folder(folder)
    unreadable = list(getattr(found, "unreadable", []))
    cts = [s for s in found if s.modality == "CT"]
    pets = [s for s in found if s.modality == "PT"]
    structures = [s for s in found if s.modality == "RTSTRUCT"]
    damaged_pet = [u for u in unreadable if u.modality == "PT"]
    damaged_ct = [u for u in unreadable if u.modality == "CT"]
    if damaged_pet:
        raise ConversionError(
            PET_CORRUPT, f"damaged PET file: {damaged_pet[0].reason}", str(damaged_pet[0].path)
        )
    if not cts:
        if damaged_ct:
            raise ConversionError(
                CT_CORRUPT, f"damaged CT file: {damaged_ct[0].reason}", str(damaged_ct[0].path)
            )
        raise ConversionError(CT_MISSING, "no CT series found", str(folder))
    if not pets:
        if unreadable:  # a damaged file of unknown modality next to a missing PET: most likely the PET
            raise ConversionError(
                PET_CORRUPT, f"no readable PET series; {unreadable[0].reason}", str(unreadable[0].path)
            )
        raise ConversionError(PET_MISSING, "no PET series found", str(folder))
    if not structures:
        raise ConversionError(RTSTRUCT_MISSING, "no RTSTRUCT found (GTV and relapse contours)", str(folder))
    if damaged_ct:
        raise ConversionError(CT_CORRUPT, f"damaged CT file: {damaged_ct[0].reason}", str(damaged_ct[0].path))

    gtv_re, relapse_re, brain_re = (
        re.compile(p) for p in (options.roi_gtv, options.roi_relapse, options.roi_brain)
    )
    structure_sets = [read_rtstruct(path) for series in structures for path in series.files]
    ct_series = _pick_ct(cts, structure_sets)
    pet_series = max(pets, key=len)
    frame = ct_series.frame_of_reference_uid
    if frame and pet_series.frame_of_reference_uid and pet_series.frame_of_reference_uid != frame:
        raise ConversionError(
            FRAME_OF_REFERENCE_MISMATCH,
            f"PET FrameOfReferenceUID {pet_series.frame_of_reference_uid} differs from the CT's {frame}",
            str(pet_series.files[0]),
        )
    for structure in structure_sets:
        if frame and structure.frame_of_reference_uid and structure.frame_of_reference_uid != frame:
            raise ConversionError(
                FRAME_OF_REFERENCE_MISMATCH,
                f"RTSTRUCT FrameOfReferenceUID {structure.frame_of_reference_uid} differs from "
                f"the CT's {frame}",
                str(structure.path),
            )

    ct = read_image_series(ct_series)
    pet = pet_series_to_suv(pet_series)
    check_in_plane_spacing(pet, "PET", str(pet_series.files[0]))

    def union_of(pattern: re.Pattern, exclude: re.Pattern | None, what: str, missing_cause: str):
        rois = [
            (structure, roi)
            for structure in structure_sets
            for roi in structure.rois
            if pattern.search(roi.name) and not (exclude is not None and exclude.search(roi.name))
        ]
        names = ", ".join(sorted({roi.name for _, roi in rois}))
        with_contours = [(s, r) for s, r in rois if r.contours]
        if not with_contours:
            available = ", ".join(sorted({r.name for s in structure_sets for r in s.rois})) or "none"
            detail = f"ROIs {names} have no contours" if rois else f"no ROI matches {pattern.pattern!r}"
            raise ConversionError(
                missing_cause,
                f"{what}: {detail} (ROIs: {available})",
                str(rois[0][0].path if rois else structure_sets[0].path),
            )
        union = np.zeros(sitk.GetArrayViewFromImage(ct).shape, dtype=np.uint8)
        notes: list[str] = []
        for _, roi in with_contours:
            mask = rasterise_roi(roi.contours, ct, notes, roi_name=roi.name)
            union |= sitk.GetArrayViewFromImage(mask) > 0
        image = sitk.GetImageFromArray(union)
        image.CopyInformation(ct)
        return image, names, notes

    gtv, gtv_names, gtv_notes = union_of(gtv_re, relapse_re, "GTV", GTV_MISSING)
    if not sitk.GetArrayViewFromImage(gtv).any():
        raise ConversionError(
            GTV_MISSING, f"GTV ROIs {gtv_names} cover no voxel of the CT", str(structure_sets[0].path)
        )
    if options.require_relapse or any(relapse_re.search(r.name) for s in structure_sets for r in s.rois):
        relapse, relapse_names, relapse_notes = union_of(relapse_re, None, "relapse", RELAPSE_MISSING)
    else:
        relapse, relapse_names, relapse_notes = sitk.Image(ct.GetSize(), sitk.sitkUInt8), "none", []
        relapse.CopyInformation(ct)
    if options.require_relapse and not sitk.GetArrayViewFromImage(relapse).any():
        raise ConversionError(
            RELAPSE_OUTSIDE_IMAGE,
            f"relapse ROIs {relapse_names} have contours but none inside the CT image",
            str(structure_sets[0].path),
        )
    brain = None
    brain_name = None
    for structure in structure_sets:
        for roi in structure.rois:
            if brain is None and roi.contours and brain_re.search(roi.name):
                brain = rasterise_roi(roi.contours, ct, [], roi_name=roi.name)
                brain_name = roi.name
    case = assemble_case(
        ct,
        pet,
        relapse,
        gtv,
        brain,
        label_what="relapse",
        source=str(folder),
        require_label=options.require_relapse,
    )
    case.notes[:0] = [f"GTV = {gtv_names}", f"relapse = {relapse_names}"] + gtv_notes + relapse_notes
    case.planning_ct, case.planning_series = ct, ct_series
    return _with_brain(case, options, brain_name)


def _pick_ct(cts, structure_sets):
    """The CT series the RTSTRUCT references; else the one with the most slices."""
    referenced = {s.referenced_series_uid for s in structure_sets if s.referenced_series_uid}
    for ct in cts:
        if ct.series_instance_uid in referenced:
            return ct
    return max(cts, key=len)


def _with_brain(case: PreparedCase, options: InhouseOptions, roi_name: str | None) -> PreparedCase:
    if case.brain is not None and sitk.GetArrayViewFromImage(case.brain).any():
        case.notes.append(f"brain mask from {roi_name}")
        return case
    from nnunet_recur.dataset_conversion.brain_mask import automatic_brain_mask

    case.brain = automatic_brain_mask(case.ct, case.pet, case.gtv)
    found = bool(sitk.GetArrayViewFromImage(case.brain).any())
    case.notes.append("brain mask automatic (CT + PET)" if found else "brain mask automatic: no brain found")
    return case
