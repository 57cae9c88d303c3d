"""A dose-painting prescription as a DICOM RT Dose on the planning CT's frame of reference (pydicom).

Planning systems import prescription maps as RT Dose (highdicom does not write one). The grid is the
planning CT's: same ImagePositionPatient of the first slice, ImageOrientationPatient, PixelSpacing and one
frame per CT slice, with a *relative* GridFrameOffsetVector (first element 0). Patient and study identity
and the FrameOfReferenceUID are copied from the CT; series and instance UIDs are new.

Dose = stored value x DoseGridScaling (unsigned 16 bit; 32 bit when 16 cannot hold the range at the
promised precision). DoseGridScaling is chosen so that the quantisation error is <= MAX_ERROR_GY, checked
on write. DoseComment and SeriesDescription say it is a PRESCRIPTION, not a calculated dose, with the
research-tool statement. DoseSummationType PLAN: the prescription is for the whole course.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT, rt_object_header

RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"
MAX_ERROR_GY = 0.01
DOSE_COMMENT = f"PRESCRIBED, NOT CALCULATED. {RESEARCH_STATEMENT}"  # LO: at most 64 characters
IMAGE_COMMENT = (
    "Dose painting by numbers: a voxel dose PRESCRIPTION derived from predicted relapse probability by "
    f"nnunet-recur. It is NOT a dose calculated by a planning system. {RESEARCH_STATEMENT}."
)


def choose_scaling(max_dose: float) -> tuple[float, int]:
    """(DoseGridScaling, BitsAllocated): a DS-exact scaling whose half (the error) is <= MAX_ERROR_GY."""
    for bits in (16, 32):
        top = 2**bits - 1
        scaling = max(max_dose, 1e-6) / top
        exponent = math.floor(math.log10(scaling))
        mantissa = math.ceil(scaling / 10**exponent * 1e4) / 1e4  # round UP: the maximum still fits
        value = float(f"{mantissa:.4f}e{exponent}")
        if value / 2 <= MAX_ERROR_GY and round(max_dose / value) <= top:
            return value, bits
    raise ValueError(f"a dose of {max_dose} Gy cannot be stored with {MAX_ERROR_GY} Gy precision")


def frame_offsets(ct_headers: list[Dataset]) -> list[float]:
    """Distance of each CT slice from the first along the slice normal (mm): the relative offset vector."""
    orientation = np.asarray([float(v) for v in ct_headers[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    first = np.asarray([float(v) for v in ct_headers[0].ImagePositionPatient])
    return [
        float(np.dot(np.asarray([float(v) for v in h.ImagePositionPatient]) - first, normal))
        for h in ct_headers
    ]


def build_rtdose(
    ct_headers: list[Dataset],
    dose_gy: np.ndarray,
    *,
    software_version: str,
    plan_reference: Sequence,
    description: str = "",
) -> Dataset:
    """RT Dose dataset for `dose_gy` (z, y, x on the CT slices `ct_headers`, sorted like the array's z);
    `plan_reference` is the ReferencedRTPlanSequence (rtplan_writer.plan_reference)."""
    dose_gy = np.asarray(dose_gy, dtype=np.float64)
    first = ct_headers[0]
    if dose_gy.shape != (len(ct_headers), int(first.Rows), int(first.Columns)):
        raise ValueError(
            f"dose grid {dose_gy.shape} does not match the CT "
            f"({len(ct_headers)}, {first.Rows}, {first.Columns})"
        )
    if not np.all(np.isfinite(dose_gy)) or dose_gy.min() < 0:
        raise ValueError("the dose map has a negative or non-finite value")
    if len(ct_headers) < 2:  # GridFrameOffsetVector needs 2 or more values (a single-slice CT has no volume)
        raise ValueError("an RT Dose needs a planning CT of at least 2 slices")
    scaling, bits = choose_scaling(float(dose_gy.max()))
    stored = np.round(dose_gy / scaling).astype(np.uint16 if bits == 16 else np.uint32)
    error = float(np.abs(stored * scaling - dose_gy).max())
    if error > MAX_ERROR_GY:  # validated on write: the promise in the header holds
        raise ValueError(f"RT Dose quantisation error {error:.4g} Gy exceeds {MAX_ERROR_GY} Gy")
    offsets = frame_offsets(ct_headers)
    if any(b <= a for a, b in zip(offsets, offsets[1:], strict=False)):
        raise ValueError("the CT slices are not in increasing order along the slice normal")

    ds, date, time = rt_object_header(
        RTDOSE_SOP_CLASS,
        "RTDOSE",
        9004,
        f"recur dose prescription - {RESEARCH_STATEMENT}",
        first,
        software_version,
    )
    # General Image, Image Plane
    ds.ContentDate, ds.ContentTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ImagePositionPatient = list(first.ImagePositionPatient)
    ds.ImageOrientationPatient = list(first.ImageOrientationPatient)
    ds.PixelSpacing = list(first.PixelSpacing)
    ds.SliceThickness = first.get("SliceThickness", "")
    # Image Pixel, Multi-frame
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(ct_headers)
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)
    ds.Rows, ds.Columns = int(first.Rows), int(first.Columns)
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseComment = DOSE_COMMENT
    ds.GridFrameOffsetVector = [_ds(v) for v in offsets]
    ds.DoseGridScaling = f"{scaling:.4e}"
    ds.TissueHeterogeneityCorrection = "IMAGE"
    ds.ReferencedRTPlanSequence = plan_reference
    ds.ImageComments = f"{IMAGE_COMMENT} {description}".strip()[:10240]
    ds.PixelData = stored.tobytes()
    return ds


def _ds(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
