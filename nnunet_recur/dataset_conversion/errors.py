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
)


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
