"""Find DICOM series by reading headers, and read an image series into a SimpleITK image.

Why not SimpleITK's own series reader: patient exports nest folders arbitrarily, name files anything,
mix CT, PET and RTSTRUCT, and contain damaged files. We group files by SeriesInstanceUID from the
headers, sort slices by ImagePositionPatient projected on the slice normal (never by name or
InstanceNumber), check the geometry that the paper's quality checks need (uneven in-plane spacing,
missing slices, oblique stacks) and apply RescaleSlope/Intercept per slice (PET slopes differ from
slice to slice). Every refusal is a `ConversionError` whose cause the cohort converter can report.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from nnunet_recur.dataset_conversion.errors import (
    CT_CORRUPT,
    CT_MISSING,
    MISSING_SLICE,
    OBLIQUE_SERIES,
    PET_CORRUPT,
    PET_MISSING,
    UNEVEN_SPACING,
    UNREADABLE,
    ConversionError,
)

# Modalities read as image volumes.
IMAGE_MODALITIES = ("CT", "PT", "MR")

# Tolerances of the geometry checks (one place, named for what they guard).
PIXEL_SPACING_REL_TOL = 1e-3  # row vs column spacing, and slice vs slice
AXIAL_MAX_ANGLE_DEG = 0.5  # slice normal vs patient z axis
IN_PLANE_SHIFT_TOL_MM = 0.05  # IPP drift perpendicular to the normal (sheared / tilted stack)
Z_STEP_REL_TOL = 0.1  # a step more than 10 % off the median step is "non-uniform"
ORIENTATION_TOL = 1e-4  # IOP differences between slices of one series


@dataclass
class DicomSeries:
    """One series found by `scan_folder`: header-only datasets, image slices sorted along the normal."""

    modality: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None
    files: list[Path]
    sop_instance_uids: list[str]
    headers: list[Dataset] = field(repr=False)
    series_description: str = ""

    @property
    def first(self) -> Dataset:
        """Header of the first file (lowest slice for image series): the tags SUV needs live here."""
        return self.headers[0]

    @property
    def folder(self) -> Path:
        return self.files[0].parent

    def __len__(self) -> int:
        return len(self.files)

    @property
    def is_image(self) -> bool:
        return self.modality in IMAGE_MODALITIES


@dataclass(frozen=True)
class UnreadableFile:
    """A file that looks like DICOM (DICM preamble) but whose header is truncated or broken.

    `modality` is whatever could be recovered (often it can), so the caller can report a damaged PET
    file as pet_corrupt rather than as a missing PET.
    """

    path: Path
    reason: str
    modality: str | None = None
    series_instance_uid: str | None = None
    not_a_file: bool = False  # dangling symlink, symlink loop, FIFO, socket, device
    sop_class_uid: str | None = None  # what group 0008 still tells (dicom_crosscheck uses it)
    sop_instance_uid: str | None = None


class SeriesList(list):
    """The series of a folder (a plain list) plus the files that could not be parsed (`unreadable`)."""

    def __init__(self, series: Iterable[DicomSeries] = (), unreadable: Iterable[UnreadableFile] = ()):
        super().__init__(series)
        self.unreadable: list[UnreadableFile] = list(unreadable)

    def of_modality(self, modality: str) -> list[DicomSeries]:
        return [s for s in self if s.modality == modality]


def _iter_files(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def _not_a_regular_file(path: Path) -> str | None:
    """Why `path` must not be opened (None for a regular file): opening a FIFO blocks forever, a
    symlink loop or a dangling symlink raises; each is reported instead of hanging or crashing the run."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            what = "symlink loop" if exc.errno == errno.ELOOP else "dangling symlink"
            return f"{what} ({os.strerror(exc.errno) if exc.errno else exc})"
        return f"cannot stat ({exc.strerror or exc})"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = (
        "FIFO (named pipe)"
        if stat.S_ISFIFO(info.st_mode)
        else "socket"
        if stat.S_ISSOCK(info.st_mode)
        else "device file"
        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "not a regular file"
    )
    return f"{kind}, not a regular file"


# Explicit-VR little-endian element headers of the two tags a truncated header is recognised by.
_SERIES_UID_RE = re.compile(rb"\x20\x00\x0e\x00(?:UI(..)|(....))", re.DOTALL)
_MODALITY_RE = re.compile(rb"\x08\x00\x60\x00(?:CS(..)|(....))", re.DOTALL)


def _recover_element(data: bytes, pattern: re.Pattern) -> str | None:
    for match in pattern.finditer(data):
        raw = match.group(1) or match.group(2)
        length = int.from_bytes(raw, "little")
        start = match.end()
        if 0 < length <= 64 and start + length <= len(data):
            value = data[start : start + length].strip(b"\x00 ")
            if value and all(32 <= b < 127 for b in value):
                return value.decode("ascii")
    return None


def _recover_identity(path: Path) -> tuple[str | None, str | None]:
    """(Modality, SeriesInstanceUID) read from the raw bytes of a file whose header cannot be parsed,
    so that a truncated slice still marks its series as corrupt instead of silently vanishing."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 16)
    except OSError:
        return None, None
    return _recover_element(data, _MODALITY_RE), _recover_element(data, _SERIES_UID_RE)


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# Values above this size (the pixel data) are not loaded by the scan; their file offset is kept so that
# `read_image_series` can read the pixel bytes directly without parsing the header a second time.
_DEFER_BYTES = 4096
_PIXEL_DATA_TAG = 0x7FE00010
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, _PIXEL_DATA_TAG)  # float, double float, integer pixel data
_NATIVE_LE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _read_header(path: Path) -> tuple[Dataset | None, UnreadableFile | None]:
    """Header of one file, or (None, None) for a non-DICOM file, or (None, UnreadableFile)."""
    preamble = _has_dicm_preamble(path)
    try:
        with warnings.catch_warnings():  # pydicom's VR-mismatch chatter on real exports
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES, force=not preamble)
    except Exception as exc:  # pydicom raises many types on garbage
        if preamble:
            modality, uid = _recover_identity(path)
            return None, UnreadableFile(
                path,
                f"header cannot be parsed ({type(exc).__name__}: {exc})",
                modality=modality,
                series_instance_uid=uid,
            )
        return None, None
    uid = ds.get("SeriesInstanceUID")
    modality = ds.get("Modality")
    if not uid or not modality or not ds.get("SOPInstanceUID"):
        sop_class, sop_instance = _uid_or_none(ds, "SOPClassUID"), _uid_or_none(ds, "SOPInstanceUID")
        if preamble or sop_class or sop_instance:  # a DICM preamble, or a parseable group 0008
            return None, UnreadableFile(
                path,
                "header truncated or incomplete (no SeriesInstanceUID/Modality/SOPInstanceUID)",
                modality=str(modality) if modality else None,
                series_instance_uid=str(uid) if uid else None,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
            )
        return None, None  # force-parsed junk: not DICOM
    if preamble and str(modality) in IMAGE_MODALITIES and not any(tag in ds for tag in _PIXEL_TAGS):
        # pydicom stops quietly at a header cut mid-element: the slice would vanish from its series
        return None, UnreadableFile(
            path,
            "header truncated (the file ends before the pixel data)",
            modality=str(modality),
            series_instance_uid=str(uid),
        )
    return ds, None


_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def _uid_or_none(ds: Dataset, keyword: str) -> str | None:
    try:
        value = str(ds.get(keyword, "") or "").strip("\x00 ")
    except Exception:  # a value pydicom cannot decode: not a UID
        return None
    return value if _UID_RE.match(value) and len(value) <= 64 else None


def _normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    return np.cross(iop[:3], iop[3:])


def _position_along_normal(ds: Dataset, normal: np.ndarray) -> float:
    return float(np.dot(np.asarray([float(v) for v in ds.ImagePositionPatient]), normal))


def scan_folder(folder: str | os.PathLike) -> SeriesList:
    """Every DICOM series under `folder` (any nesting, any file names), grouped by SeriesInstanceUID.

    Only headers are read (`stop_before_pixels=True`). Non-DICOM files are skipped silently; files
    with a DICOM preamble whose header cannot be parsed end up in `result.unreadable`. Image series
    are sorted by position along the slice normal when every slice has IOP/IPP, otherwise by file path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder does not exist")
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    unreadable: list[UnreadableFile] = []
    for path in _iter_files(folder):
        why_not = _not_a_regular_file(path)
        if why_not is not None:
            unreadable.append(UnreadableFile(path, why_not, not_a_file=True))
            continue
        ds, bad = _read_header(path)
        if bad is not None:
            unreadable.append(bad)
        if ds is None:
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))

    result = SeriesList(unreadable=unreadable)
    for uid, members in groups.items():
        first = members[0][1]
        modality = str(first.Modality)
        if modality in IMAGE_MODALITIES and all(
            "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds for _, ds in members
        ):
            normal = _normal(first)
            members.sort(key=lambda m: (_position_along_normal(m[1], normal), str(m[0])))
        result.append(
            DicomSeries(
                modality=modality,
                series_instance_uid=uid,
                study_instance_uid=str(first.get("StudyInstanceUID", "")),
                frame_of_reference_uid=str(first.FrameOfReferenceUID)
                if "FrameOfReferenceUID" in first
                else None,
                files=[p for p, _ in members],
                sop_instance_uids=[str(ds.SOPInstanceUID) for _, ds in members],
                headers=[ds for _, ds in members],
                series_description=str(first.get("SeriesDescription", "")),
            )
        )
    result.sort(key=lambda s: (s.modality, str(s.files[0])))
    return result


def load_series(files: Iterable[str | os.PathLike]) -> DicomSeries:
    """A `DicomSeries` from an explicit list of files (must all belong to one series)."""
    paths = [Path(f) for f in files]
    found = SeriesList()
    headers = []
    for p in paths:
        ds, bad = _read_header(p)
        if ds is None:
            raise ConversionError(UNREADABLE, bad.reason if bad else "not a DICOM file", str(p))
        headers.append((p, ds))
    uids = {str(ds.SeriesInstanceUID) for _, ds in headers}
    if len(uids) != 1:
        raise ConversionError(UNREADABLE, f"files belong to {len(uids)} series, expected one", str(paths[0]))
    # Reuse the grouping/sorting logic on an in-memory set.
    first = headers[0][1]
    if str(first.Modality) in IMAGE_MODALITIES:
        normal = _normal(first)
        headers.sort(key=lambda m: (_position_along_normal(m[1], normal), str(m[0])))
    found.append(
        DicomSeries(
            modality=str(first.Modality),
            series_instance_uid=uids.pop(),
            study_instance_uid=str(first.get("StudyInstanceUID", "")),
            frame_of_reference_uid=str(first.FrameOfReferenceUID) if "FrameOfReferenceUID" in first else None,
            files=[p for p, _ in headers],
            sop_instance_uids=[str(ds.SOPInstanceUID) for _, ds in headers],
            headers=[ds for _, ds in headers],
            series_description=str(first.get("SeriesDescription", "")),
        )
    )
    return found[0]


# --------------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class SeriesGeometry:
    """Checked geometry of an image series, in SimpleITK conventions (x = column index)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, columns are the x, y, z axes
    size: tuple[int, int, int]
    slice_positions: tuple[float, ...]  # along the normal, ascending


def _corrupt_cause(modality: str) -> str:
    return PET_CORRUPT if modality == "PT" else CT_CORRUPT


def _floats(ds: Dataset, keyword: str, path: Path, modality: str) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise ConversionError(_corrupt_cause(modality), f"missing {keyword}", str(path))
    try:
        return np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConversionError(_corrupt_cause(modality), f"unreadable {keyword} {value!r}", str(path)) from exc


def series_geometry(series: DicomSeries) -> SeriesGeometry:
    """Check and return the geometry of an image series (headers only, no pixel data).

    Raises ConversionError: uneven_spacing (row != column spacing, or spacing/size differing between
    slices), missing_slice (non-uniform steps along the normal, duplicate positions), oblique_series
    (normal not along the patient z axis, or a sheared/tilted stack).
    """
    modality = series.modality
    headers, files = series.headers, series.files
    first, first_path = headers[0], files[0]

    iop = _floats(first, "ImageOrientationPatient", first_path, modality)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ConversionError(
            _corrupt_cause(modality), f"degenerate ImageOrientationPatient {iop}", str(first_path)
        )
    normal = normal / norm
    angle = np.degrees(np.arccos(min(1.0, abs(normal[2]))))
    if angle > AXIAL_MAX_ANGLE_DEG:
        raise ConversionError(
            OBLIQUE_SERIES,
            f"series is not axial: slice normal is {angle:.2f} degrees from the patient z axis "
            f"(ImageOrientationPatient {list(np.round(iop, 4))}); oblique series are not supported",
            str(first_path),
        )

    ps0 = _floats(first, "PixelSpacing", first_path, modality)
    rows, cols = int(first.Rows), int(first.Columns)
    positions = []
    ipps = []
    for ds, path in zip(headers, files, strict=True):
        iop_i = _floats(ds, "ImageOrientationPatient", path, modality)
        if np.max(np.abs(iop_i - iop)) > ORIENTATION_TOL:
            raise ConversionError(
                OBLIQUE_SERIES, "slices of one series have different ImageOrientationPatient", str(path)
            )
        ps = _floats(ds, "PixelSpacing", path, modality)
        if abs(ps[0] - ps[1]) > PIXEL_SPACING_REL_TOL * max(ps):
            raise ConversionError(
                UNEVEN_SPACING,
                f"uneven in-plane spacing: PixelSpacing row {ps[0]:g} mm != column {ps[1]:g} mm",
                str(path),
            )
        if np.max(np.abs(ps - ps0)) > PIXEL_SPACING_REL_TOL * max(ps0):
            raise ConversionError(
                UNEVEN_SPACING,
                f"PixelSpacing {list(ps)} differs from the first slice's {list(ps0)} ({first_path.name})",
                str(path),
            )
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise ConversionError(
                UNEVEN_SPACING,
                f"slice size {ds.Rows}x{ds.Columns} differs from the first slice's {rows}x{cols}",
                str(path),
            )
        ipp = _floats(ds, "ImagePositionPatient", path, modality)
        ipps.append(ipp)
        positions.append(float(np.dot(ipp, normal)))

    ipps_arr = np.asarray(ipps)
    positions_arr = np.asarray(positions)
    order = np.argsort(positions_arr, kind="stable")
    if np.any(np.diff(order) < 0):  # scan_folder sorts; be safe for hand-made series
        raise ConversionError(
            MISSING_SLICE, "series files are not sorted along the slice normal", str(first_path)
        )
    # Sheared stack (gantry tilt): IPP drifts perpendicular to the normal.
    in_plane = ipps_arr - np.outer(positions_arr, normal)
    drift = np.max(np.linalg.norm(in_plane - in_plane[0], axis=1)) if len(in_plane) > 1 else 0.0
    if drift > IN_PLANE_SHIFT_TOL_MM:
        raise ConversionError(
            OBLIQUE_SERIES,
            f"slice origins drift {drift:.2f} mm in-plane along the stack (gantry tilt / sheared series)",
            str(first_path),
        )

    if len(positions_arr) > 1:
        steps = np.diff(positions_arr)
        median = float(np.median(steps))
        dup = np.flatnonzero(steps < 1e-3 * max(median, 1e-3))
        if median <= 1e-6 or dup.size:
            i = int(dup[0]) if dup.size else 0
            raise ConversionError(
                MISSING_SLICE,
                f"duplicate slice position {positions_arr[i]:.3f} mm "
                f"({files[i].name} and {files[i + 1].name})",
                str(files[i + 1]),
            )
        bad = np.flatnonzero(np.abs(steps - median) > Z_STEP_REL_TOL * median)
        if bad.size:
            i = int(bad[0])
            ratio = steps[i] / median
            what = f"about {round(ratio) - 1} slice(s) missing" if ratio > 1.5 else "non-uniform slice step"
            raise ConversionError(
                MISSING_SLICE,
                f"{what}: step {steps[i]:.3f} mm between {files[i].name} and {files[i + 1].name} "
                f"(median step {median:.3f} mm)",
                str(files[i + 1]),
            )
        z_spacing = float((positions_arr[-1] - positions_arr[0]) / (len(positions_arr) - 1))
    else:
        z_spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        z_spacing = abs(z_spacing) or 1.0

    direction = np.column_stack([row_cos, col_cos, normal])
    return SeriesGeometry(
        origin=tuple(float(v) for v in ipps_arr[0]),
        spacing=(float(ps0[1]), float(ps0[0]), z_spacing),
        direction=tuple(float(v) for v in direction.ravel()),
        size=(cols, rows, len(files)),
        slice_positions=tuple(float(v) for v in positions_arr),
    )


# --------------------------------------------------------------------------------------------------
# Pixel data


def _native_pixels(header: Dataset | None, path: Path, modality: str) -> np.ndarray | None:
    """Pixel array read straight from the file offset recorded by the scan, for uncompressed
    little-endian single-frame data; None when that fast path does not apply."""
    if header is None or _PIXEL_DATA_TAG not in header:
        return None
    meta = getattr(header, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    try:
        raw = header.get_item(_PIXEL_DATA_TAG, keep_deferred=True)  # pydicom >= 3
    except TypeError:
        return None
    if not hasattr(raw, "value_tell"):
        return None
    if (
        syntax not in _NATIVE_LE_SYNTAXES
        or getattr(raw, "value", b"") is not None  # not deferred (small, or already loaded)
        or int(header.get("SamplesPerPixel", 1)) != 1
        or int(header.get("NumberOfFrames", 1) or 1) != 1
        or int(header.get("BitsAllocated", 0)) not in (8, 16, 32)
    ):
        return None
    bits = int(header.BitsAllocated)
    signed = int(header.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    rows, cols = int(header.Rows), int(header.Columns)
    expected = rows * cols * dtype.itemsize
    if raw.length < expected:
        raise ConversionError(
            _corrupt_cause(modality),
            f"pixel data element holds {raw.length} bytes, {rows}x{cols}x{bits} bits need {expected}",
            str(path),
        )
    with open(path, "rb") as fh:
        fh.seek(raw.value_tell)
        data = fh.read(expected)
    if len(data) < expected:
        raise ConversionError(
            _corrupt_cause(modality),
            f"pixel data truncated: file ends after {len(data)} of {expected} bytes",
            str(path),
        )
    values = np.frombuffer(data, dtype=dtype).reshape(rows, cols)
    bits_stored = int(header.get("BitsStored", bits) or bits)
    if bits_stored < bits:  # mask unused high bits, sign-extend when signed
        unsigned = values.astype(np.int64) & ((1 << bits_stored) - 1)
        if signed:
            unsigned = np.where(unsigned >= 1 << (bits_stored - 1), unsigned - (1 << bits_stored), unsigned)
        values = unsigned.astype(dtype)
    return values


def _rescaled_slice(path: Path, modality: str, header: Dataset | None = None) -> tuple[np.ndarray, bool]:
    """(values, is_integer_valued) of one slice with its own RescaleSlope/Intercept applied."""
    raw = _native_pixels(header, path, modality)
    if raw is not None:
        ds = header
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
        except Exception as exc:
            raise ConversionError(
                _corrupt_cause(modality), f"file cannot be read ({type(exc).__name__}: {exc})", str(path)
            ) from exc
        try:
            raw = ds.pixel_array
        except AttributeError as exc:
            raise ConversionError(
                _corrupt_cause(modality), "no pixel data (file truncated before the image)", str(path)
            ) from exc
        except ValueError as exc:
            raise ConversionError(
                _corrupt_cause(modality), f"pixel data truncated or corrupt: {exc}", str(path)
            ) from exc
        except Exception as exc:  # missing decoder for a compressed transfer syntax, for example
            raw = _pixels_via_simpleitk(path, modality, exc)
            return raw, False
    if raw.ndim != 2:
        raise ConversionError(
            _corrupt_cause(modality),
            f"expected one 2D frame per file, got pixel array of shape {raw.shape} "
            "(multi-frame files are not supported)",
            str(path),
        )
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope > 0):
        raise ConversionError(
            _corrupt_cause(modality),
            f"RescaleSlope {slope!r} / RescaleIntercept {intercept!r}: the slope must be a finite positive "
            "number and the intercept finite",
            str(path),
        )
    integer = slope == int(slope) and intercept == int(intercept) and raw.dtype.kind in "iu"
    if slope == 1.0 and intercept == 0.0:
        return raw, integer
    return raw.astype(np.float64) * slope + intercept, integer


def _pixels_via_simpleitk(path: Path, modality: str, original: Exception) -> np.ndarray:
    """Fallback decoder (GDCM inside SimpleITK) for transfer syntaxes pydicom cannot decode here.

    SimpleITK applies RescaleSlope/Intercept of the file itself, so the result is already rescaled.
    """
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path), sitk.sitkFloat64)
    except RuntimeError as exc:
        raise ConversionError(
            _corrupt_cause(modality), f"pixel data cannot be decoded ({original}; GDCM: {exc})", str(path)
        ) from exc
    arr = sitk.GetArrayFromImage(img)
    return arr.reshape(arr.shape[-2:])


def read_series_array(series: DicomSeries, geometry: SeriesGeometry | None = None) -> tuple[np.ndarray, bool]:
    """(z, y, x) float64-or-int array of rescaled values, and whether every value is an integer."""
    geometry = geometry or series_geometry(series)
    nx, ny, nz = geometry.size
    slices = []
    all_integer = True
    for path, header in zip(series.files, series.headers, strict=True):
        values, integer = _rescaled_slice(path, series.modality, header)
        if values.shape != (ny, nx):
            raise ConversionError(
                _corrupt_cause(series.modality),
                f"pixel array {values.shape} != Rows x Columns {(ny, nx)}",
                str(path),
            )
        all_integer &= integer
        slices.append(values)
    return np.stack(slices), all_integer


def check_voxel_limit(size: tuple[int, int, int], series: DicomSeries) -> None:
    """Refuse a series whose Rows x Columns x slices exceeds the configured limit, before allocating."""
    from nnunet_recur.dataset_conversion.errors import IMAGE_TOO_LARGE
    from nnunet_recur.dataset_conversion.nifti_io import MAX_VOXELS_ENV, max_voxels

    n_voxels = int(np.prod([int(v) for v in size], dtype=np.int64))
    limit = max_voxels()
    if n_voxels > limit:
        raise ConversionError(
            IMAGE_TOO_LARGE,
            f"{series.modality} series claims {' x '.join(str(v) for v in size)} = {n_voxels:,} voxels, more "
            f"than the limit of {limit:,} (set {MAX_VOXELS_ENV} to raise it); refused before allocating",
            str(series.files[0]),
        )


def read_image_series(series: DicomSeries):
    """The series as a SimpleITK image: PET float32 (activity in the stored Units, rescaled per slice),
    CT int16 HU when the rescaled values fit, otherwise float32.

    Raises ConversionError (uneven_spacing, missing_slice, oblique_series, pet_corrupt/ct_corrupt).
    """
    import SimpleITK as sitk

    if series.modality not in IMAGE_MODALITIES:
        raise ConversionError(UNREADABLE, f"{series.modality} is not an image series", str(series.files[0]))
    geometry = series_geometry(series)
    check_voxel_limit(geometry.size, series)
    volume, integer = read_series_array(series, geometry)
    if series.modality != "PT" and integer and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)
    else:
        volume = volume.astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(geometry.direction)
    return image


def image_series_in(folder: str | os.PathLike, modality: str | None = None) -> DicomSeries:
    """The single image series in `folder` (of `modality` if given); clear error when none or several."""
    found = scan_folder(folder)
    candidates = [s for s in found if s.is_image and (modality is None or s.modality == modality)]
    if len(candidates) == 1:
        return candidates[0]
    what = f"{modality} " if modality else "image "
    if not candidates:
        damaged = [u for u in found.unreadable if modality is None or u.modality in (modality, None)]
        missing_cause = {"PT": PET_MISSING, "CT": CT_MISSING}.get(modality or "", UNREADABLE)
        cause = _corrupt_cause(modality or "") if damaged and modality in ("PT", "CT") else missing_cause
        detail = f"; {len(damaged)} unreadable DICOM file(s), e.g. {damaged[0].path}" if damaged else ""
        raise ConversionError(cause, f"no {what}series found{detail}", str(folder))
    listing = ", ".join(f"{s.modality} {s.series_description!r} ({len(s)} files)" for s in candidates)
    raise ConversionError(
        UNREADABLE, f"{len(candidates)} {what}series found, expected one: {listing}", str(folder)
    )
