"""One RT Dose file -> a SimpleITK float32 image in Gy plus what the dose belongs to.

Why a reader of our own (not SimpleITK's GDCM): the dose's z positions live in GridFrameOffsetVector,
which exporters write in two forms (relative to the first frame, or absolute z), sometimes descending and
sometimes non-uniform; the stored values only mean Gy after DoseGridScaling and with DoseUnits GY. Each of
these is decided here, and every problem is an `RTDoseError` whose message is one line naming the file.

- Offsets form: decided by the first element. 0 -> relative (frame k at IPP + offset[k] along the slice
  normal); equal to ImagePositionPatient z (axial orientation only, as the standard allows) -> absolute;
  anything else is refused.
- Descending offsets: frames are re-ordered so that z ascends (the image's direction stays the plane's).
- Non-uniform offsets: the frames are interpolated linearly along z onto a uniform step equal to the
  smallest step, so no plane is lost; `uniform_resampled` says so. Duplicate offsets are refused.
- Units: GY only. RELATIVE is refused unless the caller asks for it (`allow_relative=True`, for inspection;
  the values are then the scaled stored values, with no absolute meaning).
- Values: unsigned integers times DoseGridScaling (> 0, finite). Negative doses are refused (signed pixels
  belong to DoseType ERROR, which is not a dose to analyse).

Research tool, not a medical device.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.dataset_conversion.errors import DOSE_INVALID, ConversionError

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
OFFSET_FORM_TOL_MM = 1e-3  # first offset vs 0 / vs IPP z when telling the two forms apart
UNIFORM_STEP_REL_TOL = 0.01  # a step more than 1 % off the median step makes the offsets non-uniform
AXIAL_TOL = 1e-4  # IOP vs 1\0\0\0\1\0 for the absolute form


class RTDoseError(ConversionError):
    """A refused RT Dose file; the message is one line: ``<file>: <problem>``."""

    def __init__(self, message: str, path: str | Path, cause: str = DOSE_INVALID):
        super().__init__(cause, message, str(path))


@dataclass(frozen=True)
class RTDose:
    """A dose grid in Gy (float32 SimpleITK image, z ascending) and the header facts that say what it is."""

    image: object  # SimpleITK.Image, float32, Gy
    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str | None
    dose_units: str  # GY (RELATIVE only with allow_relative=True)
    dose_type: str  # PHYSICAL / EFFECTIVE
    dose_summation_type: str  # PLAN, BEAM, FRACTION, ...
    referenced_plan_uid: str | None
    referenced_fraction_group: int | None
    referenced_beam_numbers: tuple[int, ...]
    dose_grid_scaling: float
    offsets_form: str  # "relative" or "absolute"
    offsets_descending: bool
    uniform_resampled: bool  # non-uniform offsets were interpolated onto a uniform step
    max_gy: float

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.image.GetSpacing())


def _fail(path, message: str):
    raise RTDoseError(message, path)


def _values(value) -> list:
    """A DICOM value as a list (one value or a multi-value)."""
    return [value] if isinstance(value, str | float | int) else list(value)


def _floats(ds, keyword: str, path, count: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or value == "":
        _fail(path, f"missing {keyword}")
    try:
        values = np.asarray([float(v) for v in _values(value)], dtype=float)
    except (TypeError, ValueError):
        _fail(path, f"unreadable {keyword} {str(value)[:60]!r}")
    if values.size != count:
        _fail(path, f"{keyword} has {values.size} values, expected {count}")
    if not np.all(np.isfinite(values)):
        _fail(path, f"non-finite {keyword}")
    return values


def _offsets(ds, path, n_frames: int, ipp: np.ndarray, iop: np.ndarray) -> tuple[np.ndarray, str]:
    """Offsets of the frames along the slice normal, relative to IPP, and the form they were written in."""
    if "GridFrameOffsetVector" not in ds or ds.GridFrameOffsetVector in (None, ""):
        _fail(path, "missing GridFrameOffsetVector (frame z positions unknown)")
    try:
        gfov = np.asarray([float(v) for v in _values(ds.GridFrameOffsetVector)], dtype=float)
    except (TypeError, ValueError):
        _fail(path, f"unreadable GridFrameOffsetVector {str(ds.GridFrameOffsetVector)[:60]!r}")
    if not np.all(np.isfinite(gfov)):
        _fail(path, "non-finite GridFrameOffsetVector")
    if gfov.size != n_frames:
        _fail(path, f"GridFrameOffsetVector has {gfov.size} values for {n_frames} frames")
    if abs(gfov[0]) <= OFFSET_FORM_TOL_MM:
        return gfov - gfov[0], "relative"
    axial = np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=AXIAL_TOL)
    if abs(gfov[0] - ipp[2]) <= OFFSET_FORM_TOL_MM and axial:
        return gfov - gfov[0], "absolute"
    what = "" if axial else " (the absolute form needs axial orientation)"
    _fail(
        path,
        f"GridFrameOffsetVector starts at {gfov[0]:g}, neither 0 (relative) nor the ImagePositionPatient "
        f"z {ipp[2]:g} (absolute){what}",
    )
    raise AssertionError  # unreachable


def _pixels(ds, path, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """Stored values as (frames, rows, cols) int64, with truncation caught before pydicom's decoder."""
    if "PixelData" not in ds:
        _fail(path, "no PixelData (file truncated or not a dose grid)")
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (16, 32):
        _fail(path, f"BitsAllocated {bits} (a dose grid has 16 or 32)")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        _fail(path, "SamplesPerPixel is not 1")
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    compressed = syntax not in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    expected = n_frames * rows * cols * bits // 8
    if not compressed and len(ds.PixelData) < expected:
        _fail(path, f"pixel data truncated: {len(ds.PixelData)} of {expected} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types on damaged pixel data
        _fail(path, f"pixel data unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return arr.reshape(n_frames, rows, cols).astype(np.int64)


def _references(ds) -> tuple[str | None, int | None, tuple[int, ...]]:
    plan_uid, group, beams = None, None, []
    plans = ds.get("ReferencedRTPlanSequence") or []
    if plans:
        plan = plans[0]
        plan_uid = str(plan.get("ReferencedSOPInstanceUID", "")) or None
        groups = plan.get("ReferencedFractionGroupSequence") or []
        if groups:
            number = groups[0].get("ReferencedFractionGroupNumber")
            group = int(number) if number not in (None, "") else None
            for beam in groups[0].get("ReferencedBeamSequence") or []:
                if beam.get("ReferencedBeamNumber") not in (None, ""):
                    beams.append(int(beam.ReferencedBeamNumber))
    return plan_uid, group, tuple(beams)


def _uniform_along_z(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, float]:
    """Linear interpolation of (frames, rows, cols) at ascending `offsets` onto a uniform step (smallest)."""
    step = float(np.min(np.diff(offsets)))
    count = int(math.floor((offsets[-1] - offsets[0]) / step + 1e-6)) + 1
    targets = offsets[0] + step * np.arange(count)
    upper = np.clip(np.searchsorted(offsets, targets, side="right"), 1, len(offsets) - 1)
    lower = upper - 1
    weight = ((targets - offsets[lower]) / (offsets[upper] - offsets[lower])).astype(np.float32)
    weight = np.clip(weight, 0.0, 1.0)[:, None, None]
    return values[lower] * (1 - weight) + values[upper] * weight, step


def read_rtdose(path: str | Path, *, allow_relative: bool = False) -> RTDose:
    """Read one RT Dose file into an `RTDose` (Gy); raise `RTDoseError` with a one-line reason."""
    import pydicom
    import SimpleITK as sitk

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
    except Exception as exc:  # truncated header, not DICOM
        _fail(path, f"not a readable DICOM file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    if str(ds.get("Modality", "")) != "RTDOSE" and str(ds.get("SOPClassUID", "")) != RT_DOSE_STORAGE:
        _fail(path, f"not an RT Dose (Modality {ds.get('Modality', '')!r})")

    units = str(ds.get("DoseUnits", "") or "").upper()
    if units == "RELATIVE" and not allow_relative:
        _fail(path, "DoseUnits RELATIVE (no absolute dose without the plan's normalisation; export in GY)")
    if units not in ("GY", "RELATIVE"):
        _fail(path, f"DoseUnits {units or 'missing'} (expected GY)")
    dose_type = str(ds.get("DoseType", "") or "").upper()
    if dose_type == "ERROR":
        _fail(path, "DoseType ERROR (a dose difference, not a dose)")
    scaling_raw = ds.get("DoseGridScaling")
    try:
        scaling = float(scaling_raw) if scaling_raw not in (None, "") else None
    except (TypeError, ValueError):
        scaling = None
    if scaling is None:
        _fail(path, "missing or unreadable DoseGridScaling")
    if not math.isfinite(scaling) or scaling <= 0:
        _fail(path, f"DoseGridScaling {scaling:g} (must be a finite number > 0)")

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or cols <= 0 or n_frames <= 0:
        _fail(path, f"empty dose grid ({n_frames} frames of {rows}x{cols})")
    ipp = _floats(ds, "ImagePositionPatient", path, 3)
    iop = _floats(ds, "ImageOrientationPatient", path, 6)
    spacing = _floats(ds, "PixelSpacing", path, 2)
    if np.any(spacing <= 0):
        _fail(path, f"PixelSpacing {spacing.tolist()} (must be > 0)")
    row_dir, col_dir = iop[:3], iop[3:]
    if abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3:
        _fail(path, "ImageOrientationPatient is not two unit vectors")
    normal = np.cross(row_dir, col_dir)
    offsets, form = _offsets(ds, path, n_frames, ipp, iop)

    stored = _pixels(ds, path, n_frames, rows, cols)
    if stored.size and stored.min() < 0:
        _fail(path, f"negative doses (lowest stored value {int(stored.min())})")
    values = (stored * scaling).astype(np.float32)
    if not np.all(np.isfinite(values)):
        _fail(path, "non-finite dose values")

    raw_steps = np.diff(offsets)
    if np.any(np.abs(raw_steps) <= 1e-6):
        _fail(path, "GridFrameOffsetVector repeats a frame position (inconsistent offsets)")
    if np.any(raw_steps > 0) and np.any(raw_steps < 0):
        _fail(path, "GridFrameOffsetVector neither ascends nor descends (inconsistent offsets)")
    descending = bool(n_frames > 1 and offsets[-1] < offsets[0])
    order = np.argsort(offsets, kind="stable")
    offsets, values = offsets[order], values[order]
    steps = np.diff(offsets)
    resampled = False
    if steps.size == 0:
        dz = float(spacing[0])  # one plane: any thickness; the pixel spacing is a neutral choice
    elif np.max(np.abs(steps - np.median(steps))) > UNIFORM_STEP_REL_TOL * np.median(steps):
        values, dz = _uniform_along_z(values, offsets)
        values = values.astype(np.float32)
        resampled = True
    else:
        dz = float(np.mean(steps))

    image = sitk.GetImageFromArray(values)
    image.SetSpacing((float(spacing[1]), float(spacing[0]), dz))  # PixelSpacing is [row step, column step]
    image.SetOrigin(tuple(float(v) for v in ipp + offsets[0] * normal))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row_dir, col_dir, normal]).ravel()))
    plan_uid, group, beams = _references(ds)
    frame = ds.get("FrameOfReferenceUID")
    return RTDose(
        image=image,
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(frame) if frame else None,
        dose_units=units,
        dose_type=dose_type,
        dose_summation_type=str(ds.get("DoseSummationType", "") or "").upper(),
        referenced_plan_uid=plan_uid,
        referenced_fraction_group=group,
        referenced_beam_numbers=beams,
        dose_grid_scaling=scaling,
        offsets_form=form,
        offsets_descending=descending,
        uniform_resampled=resampled,
        max_gy=float(values.max()) if values.size else 0.0,
    )
