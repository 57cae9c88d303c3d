"""A patient folder's cheap checks, run before the model loads: a bad folder fails in about a second with its
one-line reason instead of after the model has loaded.

Only what is decided from file names and DICOM headers: a CT, a PET, an RTSTRUCT with a GTV ROI that has
contours (DICOM), or ct/pet/gtv files (NIfTI layout). The full preparation (`prepare_new_patient_input`)
still runs every check later; this is an early exit, not a second validator.
"""

from __future__ import annotations

import re
from pathlib import Path


def check_patient_folder(folder: Path, roi_gtv: str | None = None) -> tuple[str, str] | None:
    """(cause, one-line message) for a folder that cannot be predicted, None when it may be."""
    from nnunet_recur.dataset_conversion import errors
    from nnunet_recur.dataset_conversion.inhouse import find_nifti

    folder = Path(folder)
    if not folder.is_dir():
        return errors.UNREADABLE, f"{folder}: not a folder"
    if find_nifti(folder, "ct") is not None:
        for stem, cause in (("pet", errors.PET_MISSING), ("gtv", errors.GTV_MISSING)):
            if find_nifti(folder, stem) is None:
                return cause, f"{folder}: no {stem}.nii.gz"
        return None
    try:
        return _check_dicom(folder, roi_gtv)
    except errors.ConversionError as exc:  # a damaged file: the reader's own one-line reason
        return exc.cause, str(exc)


def _check_dicom(folder: Path, roi_gtv: str | None) -> tuple[str, str] | None:
    from nnunet_recur.dataset_conversion import errors
    from nnunet_recur.dataset_conversion.dicom_series import scan_folder
    from nnunet_recur.dataset_conversion.inhouse import DEFAULT_ROI_GTV, DEFAULT_ROI_RELAPSE
    from nnunet_recur.dataset_conversion.rtstruct import read_rtstruct

    found = scan_folder(folder)
    modalities = {s.modality for s in found}
    if "CT" not in modalities:
        return errors.CT_MISSING, f"{folder}: no CT series found"
    if "PT" not in modalities:
        return errors.PET_MISSING, f"{folder}: no PET series found"
    structures = [path for s in found if s.modality == "RTSTRUCT" for path in s.files]
    if not structures:
        return errors.RTSTRUCT_MISSING, f"{folder}: no RTSTRUCT found (GTV contours)"
    try:
        gtv_re = re.compile(roi_gtv or DEFAULT_ROI_GTV)
    except re.error as exc:
        return "options", f"--roi-gtv: invalid regular expression {roi_gtv!r}: {exc}"
    relapse_re = re.compile(DEFAULT_ROI_RELAPSE)
    names = []
    for path in structures:
        for roi in read_rtstruct(path).rois:
            names.append(roi.name)
            if gtv_re.search(roi.name) and not relapse_re.search(roi.name) and roi.contours:
                return None
    listing = ", ".join(sorted(set(names))) or "none"
    return (
        errors.GTV_MISSING,
        f"{folder}: no GTV ROI with contours matches {gtv_re.pattern!r} (ROIs: {listing})",
    )


def split_jobs(jobs: list[tuple[Path, Path]], roi_gtv: str | None):
    """(jobs that pass, PatientResult of each that fails), before any model is loaded."""
    from nnunet_recur.prediction.pipeline import PatientResult

    passing, failed = [], []
    for folder, out in jobs:
        problem = check_patient_folder(folder, roi_gtv)
        if problem is None:
            passing.append((folder, out))
        else:
            failed.append(PatientResult(folder.name, str(out), False, problem[0], problem[1]))
    return passing, failed
