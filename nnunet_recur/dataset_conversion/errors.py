"""Exceptions that carry a patient-exclusion cause.

The quality checks exclude a patient with one of a fixed vocabulary of causes (the paper's III.A
exclusions plus our own); every reader raises `ConversionError` with such a cause so that the cohort
converter can write `exclusions.csv` without guessing from message text.
"""

from __future__ import annotations

# The paper's exclusion causes (shared with the synthetic generator's --defects vocabulary) ...
PET_MISSING = "pet_missing"
RELAPSE_MISSING = "relapse_missing"
PET_CORRUPT = "pet_corrupt"
UNEVEN_SPACING = "uneven_spacing"
MISSING_SLICE = "missing_slice"
# ... and the extra checks of the converter.
CT_MISSING = "ct_missing"
CT_CORRUPT = "ct_corrupt"
GTV_MISSING = "gtv_missing"
RTSTRUCT_MISSING = "rtstruct_missing"
FRAME_OF_REFERENCE_MISMATCH = "frame_of_reference_mismatch"
RELAPSE_OUTSIDE_IMAGE = "relapse_outside_image"
GTV_OUTSIDE_PET = "gtv_outside_pet"
OBLIQUE_SERIES = "oblique_series"
SUV_NOT_COMPUTABLE = "suv_not_computable"
UNREADABLE = "unreadable"
# ... and the checks added for hostile exports and storage faults (docs/conversion.md, "Causes").
PET_NOT_CORRECTED = "pet_not_corrected"  # only non-attenuation/decay-corrected PET (CorrectedImage)
PET_SERIES_AMBIGUOUS = "pet_series_ambiguous"  # several corrected PET series, none chosen
CT_SERIES_AMBIGUOUS = "ct_series_ambiguous"  # several CT series, the RTSTRUCT references none
SUV_IMPLAUSIBLE = "suv_implausible"  # PatientWeight or RescaleSlope outside plausible bounds
NON_FINITE_VALUES = "non_finite_values"  # NaN or Inf voxels (SimpleITK would read them as 0)
IMAGE_TOO_LARGE = "image_too_large"  # header claims more voxels than the configured limit
INVALID_SPACING = "invalid_spacing"  # zero, negative or non-finite voxel spacing (pixdim 0)
UNSUPPORTED_IMAGE = "unsupported_image"  # 4-D (or higher) image where one 3-D volume is expected
CONTOUR_INVALID = "contour_invalid"  # a used ROI has non-finite contour coordinates
NOT_A_FILE = "not_a_file"  # dangling symlink, symlink loop, FIFO/socket/device in the patient folder
# ... and the checks of the planned dose (RTDOSE/RTPLAN, docs/conversion.md "Planned dose").
DOSE_INVALID = (
    "dose_invalid"  # RELATIVE units, bad GridFrameOffsetVector/DoseGridScaling, negative, truncated
)
DOSE_AMBIGUOUS = "dose_ambiguous"  # PLAN doses of several plans, none chosen with --dose-plan
DOSE_NOT_COVERING_GTV = "dose_not_covering_gtv"  # the dose grid leaves part of the GTV uncovered
DOSE_MISSING = "dose_missing"  # no RTDOSE (an exclusion only with --require-dose)
# Failures that say nothing about the patient's data (a non-zero exit when any occurs).
WRITE_FAILED = "write_failed"  # disk full or another storage error while writing the case
WORKER_KILLED = "oom/killed"  # the worker process died (out-of-memory killer, kill -9)

CAUSES = (
    PET_MISSING,
    RELAPSE_MISSING,
    PET_CORRUPT,
    UNEVEN_SPACING,
    MISSING_SLICE,
    CT_MISSING,
    CT_CORRUPT,
    GTV_MISSING,
    RTSTRUCT_MISSING,
    FRAME_OF_REFERENCE_MISMATCH,
    RELAPSE_OUTSIDE_IMAGE,
    GTV_OUTSIDE_PET,
    OBLIQUE_SERIES,
    SUV_NOT_COMPUTABLE,
    UNREADABLE,
    PET_NOT_CORRECTED,
    PET_SERIES_AMBIGUOUS,
    CT_SERIES_AMBIGUOUS,
    SUV_IMPLAUSIBLE,
    NON_FINITE_VALUES,
    IMAGE_TOO_LARGE,
    INVALID_SPACING,
    UNSUPPORTED_IMAGE,
    CONTOUR_INVALID,
    NOT_A_FILE,
    DOSE_INVALID,
    DOSE_AMBIGUOUS,
    DOSE_NOT_COVERING_GTV,
    DOSE_MISSING,
    WRITE_FAILED,
    WORKER_KILLED,
)

# Causes that are not about the input data: the run exits non-zero when a case fails with one of them.
NON_DATA_CAUSES = (WRITE_FAILED, WORKER_KILLED)


class ConversionError(Exception):
    """A problem with one input that excludes the patient; `cause` is one of CAUSES.

    The message names the file (or folder) and the problem, so the user knows what to fix.
    """

    def __init__(self, cause: str, message: str, path: str | None = None):
        if cause not in CAUSES:
            raise ValueError(f"unknown exclusion cause {cause!r}")
        self.cause = cause
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
