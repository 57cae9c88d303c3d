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
    CONTOUR_INVALID,
    CT_CORRUPT,
    CT_MISSING,
    CT_SERIES_AMBIGUOUS,
    FRAME_OF_REFERENCE_MISMATCH,
    GTV_MISSING,
    NOT_A_FILE,
    PET_CORRUPT,
    PET_MISSING,
    PET_NOT_CORRECTED,
    PET_SERIES_AMBIGUOUS,
    RELAPSE_MISSING,
    RELAPSE_OUTSIDE_IMAGE,
    RTSTRUCT_MISSING,
    UNREADABLE,
    ConversionError,
)
from nnunet_recur.dataset_conversion.label_values import (
    DEFAULT_LABEL_THRESHOLD,
    binarise_label,
    check_threshold,
)
from nnunet_recur.dataset_conversion.nifti_io import check_axial, read_nifti
from nnunet_recur.dataset_conversion.prepare import PreparedCase, assemble_case, binary_uint8
from nnunet_recur.dataset_conversion.quality import check_ct_slices, check_in_plane_spacing
from nnunet_recur.dataset_conversion.suv import check_suv_floor

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
    pet_series: str | None = None  # SeriesInstanceUID or SeriesDescription regex; overrides the choice
    ct_series: str | None = None  # same, for the CT when the RTSTRUCT references none
    rx: tuple[float, ...] | None = None  # prescriptions (Gy) where the RT Plan gives none (--rx)
    dose_plan: str | None = None  # RT Plan SOPInstanceUID whose dose to use (--dose-plan)
    require_dose: bool = False  # a patient without RT Dose is excluded (dose_missing)
    label_threshold: float = DEFAULT_LABEL_THRESHOLD  # NIfTI soft labels: cut as a fraction of the scale

    def validate(self) -> None:
        patterns = (
            ("--roi-gtv", self.roi_gtv),
            ("--roi-relapse", self.roi_relapse),
            ("--roi-brain", self.roi_brain),
            ("--pet-series", self.pet_series or ""),
            ("--ct-series", self.ct_series or ""),
        )
        for label, pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{label}: invalid regular expression {pattern!r}: {exc}") from exc
        check_threshold(self.label_threshold)


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
    check_ct_slices(ct, str(ct_path))
    check_axial(ct, str(ct_path))
    pet_path = find_nifti(folder, "pet")
    if pet_path is None:
        raise ConversionError(PET_MISSING, "no pet.nii.gz", str(folder))
    pet = read_nifti(pet_path, PET_CORRUPT)
    check_axial(pet, str(pet_path))
    check_suv_floor(float(np.max(sitk.GetArrayViewFromImage(pet))), str(pet_path))
    check_in_plane_spacing(ct, "CT", str(ct_path))
    check_in_plane_spacing(pet, "PET", str(pet_path))
    gtv_path = find_nifti(folder, "gtv")
    if gtv_path is None:
        raise ConversionError(GTV_MISSING, "no gtv.nii.gz", str(folder))
    relapse_path = find_nifti(folder, "relapse")
    if relapse_path is None and options.require_relapse:
        raise ConversionError(RELAPSE_MISSING, "no relapse.nii.gz", str(folder))
    label_notes: list[str] = []

    def read_label(path: Path, cause: str) -> sitk.Image:
        mask, note = binarise_label(read_nifti(path, cause), options.label_threshold, path.name)
        label_notes.extend([note] if note else [])
        return mask

    gtv = read_label(gtv_path, GTV_MISSING)
    if relapse_path is not None:
        relapse = read_label(relapse_path, RELAPSE_MISSING)
    else:
        relapse = sitk.Image(gtv.GetSize(), sitk.sitkUInt8)
        relapse.CopyInformation(gtv)
    brain_path = find_nifti(folder, "brain")
    brain = binary_uint8(read_nifti(brain_path, UNREADABLE)) if brain_path else None
    case = _assemble(ct, pet, relapse, gtv, brain, folder, options)
    case.notes[:0] = label_notes
    return _with_brain(case, options, "brain.nii.gz" if brain is not None else None)


def _assemble(ct, pet, relapse, gtv, brain, folder: Path, options: InhouseOptions) -> PreparedCase:
    """Both layouts end here: the one shared check (assemble_case) with the relapse as the label, and the
    planning CT kept as read (the dose step and the put-back of predictions use it)."""
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
    return case


# -- DICOM layout ----------------------------------------------------------------------------------------
def _load_dicom_patient(folder: Path, options: InhouseOptions) -> PreparedCase:
    from nnunet_recur.dataset_conversion.dicom_crosscheck import check_unassigned_files
    from nnunet_recur.dataset_conversion.dicom_series import read_image_series, scan_folder
    from nnunet_recur.dataset_conversion.rtstruct import (
        RoiPlacement,
        check_placement,
        rasterise_roi,
        read_rtstruct,
    )
    from nnunet_recur.dataset_conversion.suv import pet_series_to_suv

    found = scan_folder(folder)
    not_files = [u for u in found.unreadable if u.not_a_file]
    if not_files:  # a dangling symlink may be the missing slice: never convert around it
        raise ConversionError(NOT_A_FILE, not_files[0].reason, str(not_files[0].path))
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
    ct_series = _pick_ct(cts, structure_sets, options.ct_series, folder)
    pet_series = pick_pet(pets, options.pet_series, folder)
    for chosen in (ct_series, pet_series):
        damaged = [u for u in unreadable if u.series_instance_uid == chosen.series_instance_uid]
        if damaged:
            cause = PET_CORRUPT if chosen.modality == "PT" else CT_CORRUPT
            raise ConversionError(
                cause,
                f"file of the chosen {chosen.modality} series cannot be read: {damaged[0].reason}",
                str(damaged[0].path),
            )
    crosscheck_notes = check_unassigned_files(found, ct_series, structure_sets, folder)
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
    check_ct_slices(ct, str(ct_series.files[0]))
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
        for structure, roi in rois:
            if roi.invalid:
                raise ConversionError(
                    CONTOUR_INVALID, f"{what} ROI {roi.name!r}: {roi.invalid[0]}", str(structure.path)
                )
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
        for structure, roi in with_contours:
            roi_notes: list[str] = []
            placement = RoiPlacement(n_contours=len(roi.skipped), n_failed=len(roi.skipped))
            mask = rasterise_roi(roi.contours, ct, roi_notes, roi.name, placement)
            notes.extend(f"{structure.path.name}: {note}" for note in roi_notes)
            check_placement(placement, f"{what} ROI {roi.name!r}", str(structure.path))
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
    case = _assemble(ct, pet, relapse, gtv, brain, folder, options)
    case.notes[:0] = (
        [
            f"GTV = {gtv_names}",
            f"relapse = {relapse_names}",
            f"CT series = {series_label(ct_series)}",
            f"PET series = {series_label(pet_series)}",
        ]
        + gtv_notes
        + relapse_notes
        + crosscheck_notes
    )
    case.series = {"ct": series_label(ct_series), "pet": series_label(pet_series)}
    case.planning_series = ct_series
    return _with_brain(case, options, brain_name)


def series_label(series) -> str:
    """How a chosen series is named in cases.csv: description and SeriesInstanceUID."""
    return f"{series.series_description or '(no description)'} [{series.series_instance_uid}]"


def _matching(series_list, selector: str):
    """Series whose SeriesInstanceUID equals `selector` or whose SeriesDescription matches it (regex)."""
    by_uid = [s for s in series_list if s.series_instance_uid == selector]
    if by_uid:
        return by_uid
    pattern = re.compile(selector)
    return [s for s in series_list if pattern.search(s.series_description or "")]


def _listing(series_list) -> str:
    return "; ".join(f"{series_label(s)} ({len(s)} files)" for s in series_list)


def is_corrected(series) -> bool:
    """CorrectedImage (0028,0051) lists both ATTN and DECY: the series is attenuation and decay corrected."""
    value = series.first.get("CorrectedImage")
    if value is None:
        return False
    values = [value] if isinstance(value, str) else list(value)
    corrections = {str(v).strip().upper() for v in values}
    return {"ATTN", "DECY"} <= corrections


def pick_pet(pets, selector: str | None, folder: Path):
    """The PET series to convert: the one `selector` names, else the single corrected (ATTN + DECY) one.

    Series length or path order never decide: a non-attenuation-corrected twin of the same length has
    a quarter of the uptake. Only NAC -> pet_not_corrected; several corrected -> pet_series_ambiguous.
    """
    if selector:
        chosen = _matching(pets, selector)
        if len(chosen) == 1:
            return chosen[0]
        cause = PET_MISSING if not chosen else PET_SERIES_AMBIGUOUS
        raise ConversionError(
            cause,
            f"--pet-series {selector!r} matches {len(chosen)} of the PET series: {_listing(pets)}",
            str(folder),
        )
    corrected = [p for p in pets if is_corrected(p)]
    if len(corrected) == 1:
        return corrected[0]
    if not corrected:
        raise ConversionError(
            PET_NOT_CORRECTED,
            f"no attenuation- and decay-corrected PET series (CorrectedImage with ATTN and DECY): "
            f"{_listing(pets)}",
            str(folder),
        )
    raise ConversionError(
        PET_SERIES_AMBIGUOUS,
        f"{len(corrected)} corrected PET series, choose one with --pet-series (UID or description regex): "
        f"{_listing(corrected)}",
        str(folder),
    )


def _pick_ct(cts, structure_sets, selector: str | None = None, folder: Path | None = None):
    """The CT series the RTSTRUCT references; else the one `selector` names; else the only one.

    Two CT series and no reference: ct_series_ambiguous (path order once picked a CT 500 HU off)."""
    referenced = {s.referenced_series_uid for s in structure_sets if s.referenced_series_uid}
    for ct in cts:
        if ct.series_instance_uid in referenced:
            return ct
    if selector:
        chosen = _matching(cts, selector)
        if len(chosen) == 1:
            return chosen[0]
        raise ConversionError(
            CT_MISSING if not chosen else CT_SERIES_AMBIGUOUS,
            f"--ct-series {selector!r} matches {len(chosen)} of the CT series: {_listing(cts)}",
            str(folder),
        )
    if len(cts) == 1:
        return cts[0]
    raise ConversionError(
        CT_SERIES_AMBIGUOUS,
        f"{len(cts)} CT series and the RTSTRUCT references none of them; choose one with --ct-series: "
        f"{_listing(cts)}",
        str(folder),
    )


def _with_brain(case: PreparedCase, options: InhouseOptions, roi_name: str | None) -> PreparedCase:
    if case.brain is not None and sitk.GetArrayViewFromImage(case.brain).any():
        case.notes.append(f"brain mask from {roi_name}")
        return case
    from nnunet_recur.dataset_conversion.brain_mask import automatic_brain_mask

    case.brain = automatic_brain_mask(case.ct, case.pet, case.gtv)
    found = bool(sitk.GetArrayViewFromImage(case.brain).any())
    case.notes.append("brain mask automatic (CT + PET)" if found else "brain mask automatic: no brain found")
    return case
