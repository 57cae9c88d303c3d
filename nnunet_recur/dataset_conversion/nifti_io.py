"""Read a NIfTI file, refusing the files ITK would silently turn into wrong images.

ITK's NIfTI reader (SimpleITK 2.5) fills a truncated .nii.gz with zeros without any error, reads NaN
and Inf voxels as 0, and allocates whatever the header claims (a 78-byte file claiming 16384 x 16384 x
16 voxels took 8.5 GB). So before ITK sees a file, `check_nifti_file` reads the header and refuses:

- more voxels than the configured limit (`max_voxels()`: RECUR_MAX_VOXELS, default 512 x 512 x 2048),
  before anything is allocated;
- a 4-D (or higher) image where one 3-D volume is expected, with a plain message instead of ITK's;
- a zero, negative or non-finite voxel spacing (pixdim);
- fewer voxel bytes than the header announces: the gzip trailer's ISIZE for .nii.gz (only the header
  and the last four bytes are read), the file size for .nii;
- for floating-point data: NaN or Inf voxels. The voxel stream is read in chunks (never the whole
  volume at once), which also checks the gzip CRC. Integer data cannot hold NaN, so integer files
  (CT int16, masks uint8) pay only the header read.

The same guard serves `recur-eval` (non-finite predictions) and the converter's own written files
(`verify_written_nifti`, the disk-full check).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import (
    IMAGE_TOO_LARGE,
    INVALID_SPACING,
    NON_FINITE_VALUES,
    OBLIQUE_SERIES,
    UNSUPPORTED_IMAGE,
    ConversionError,
)
from nnunet_recur.dataset_conversion.nifti_orientation import check_qform_sform

MAX_VOXELS_ENV = "RECUR_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 512 * 512 * 2048  # a 2048-slice 512 x 512 CT; 2 GiB as float32
AXIAL_MAX_ANGLE_DEG = 0.5  # same bound as the DICOM series reader (dicom_series.AXIAL_MAX_ANGLE_DEG)
_CHUNK_BYTES = 1 << 24

# NIfTI datatype codes -> numpy dtypes of the floating-point kinds that can hold NaN / Inf.
_FLOAT_DTYPES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}


def max_voxels() -> int:
    """The voxel-count limit: $RECUR_MAX_VOXELS when set (a positive integer), else DEFAULT_MAX_VOXELS."""
    value = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if value:
        try:
            limit = int(float(value))
        except ValueError as exc:
            raise ValueError(f"{MAX_VOXELS_ENV}={value!r} is not a number") from exc
        if limit > 0:
            return limit
    return DEFAULT_MAX_VOXELS


class NiftiCheckError(ValueError):
    """A NIfTI file the readers refuse; `kind` says why (one of the KINDS), the message says it plainly."""

    KINDS = ("not_nifti", "truncated", "too_large", "four_d", "nifti2", "spacing", "non_finite")

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


# The exclusion cause of each kind; None: the caller's own cause (ct_corrupt, pet_corrupt, ...).
KIND_CAUSES = {
    "not_nifti": None,
    "truncated": None,
    "too_large": IMAGE_TOO_LARGE,
    "four_d": UNSUPPORTED_IMAGE,
    "nifti2": UNSUPPORTED_IMAGE,
    "spacing": INVALID_SPACING,
    "non_finite": NON_FINITE_VALUES,
}


@dataclass(frozen=True)
class NiftiHeader:
    """What the guard needs from a NIfTI-1 or NIfTI-2 header."""

    version: int
    endian: str
    dims: tuple[int, ...]  # dim[1..dim[0]]
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]  # pixdim[1..dim[0]]
    vox_offset: int
    scl_slope: float = 0.0
    scl_inter: float = 0.0

    @property
    def n_voxels(self) -> int:
        return math.prod(max(d, 1) for d in self.dims)

    @property
    def expected_bytes(self) -> int:
        return self.vox_offset + self.n_voxels * max(self.bitpix, 8) // 8

    @property
    def float_dtype(self) -> np.dtype | None:
        code = _FLOAT_DTYPES.get(self.datatype)
        return np.dtype(self.endian + code) if code else None


def parse_nifti_header(header: bytes) -> NiftiHeader:
    """The header fields of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header; ValueError otherwise."""
    if len(header) < 348:
        raise NiftiCheckError("not_nifti", f"not a NIfTI header ({len(header)} bytes)")
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            pixdim = struct.unpack(endian + "8f", header[76:108])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
            scl_slope, scl_inter = struct.unpack(endian + "2f", header[112:120])
            default_offset = 352
            break
        if sizeof_hdr == 540 and len(header) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            pixdim = struct.unpack(endian + "8d", header[104:168])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
            scl_slope, scl_inter = struct.unpack(endian + "2d", header[176:192])
            default_offset = 544
            break
    else:
        raise NiftiCheckError("not_nifti", "not a NIfTI header")
    n_dims = max(1, min(int(dims[0]), 7))
    offset = int(vox_offset) if vox_offset and math.isfinite(vox_offset) else default_offset
    return NiftiHeader(
        version=1 if sizeof_hdr == 348 else 2,
        endian=endian,
        dims=tuple(int(d) for d in dims[1 : n_dims + 1]),
        datatype=int(datatype),
        bitpix=int(bitpix),
        pixdim=tuple(float(p) for p in pixdim[1 : n_dims + 1]),
        vox_offset=offset,
        scl_slope=float(scl_slope),
        scl_inter=float(scl_inter),
    )


def expected_nifti_bytes(header: bytes) -> int:
    """vox_offset + voxel count x bytes per voxel, from a NIfTI-1 or NIfTI-2 header."""
    return parse_nifti_header(header).expected_bytes


def _read_header(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read(544)
    with open(path, "rb") as fh:
        return fh.read(544)


def check_nifti_complete(path: Path) -> None:
    """ValueError when the file holds fewer voxel bytes than its header announces."""
    path = Path(path)
    expected = expected_nifti_bytes(_read_header(path))
    _check_size(path, expected)


def _check_size(path: Path, expected: int) -> None:
    if path.name.endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            (isize,) = struct.unpack("<I", fh.read(4))
        if isize != expected % 2**32:
            raise NiftiCheckError(
                "truncated",
                f"gzip stream incomplete or damaged (its size field does not match the {expected} bytes "
                "the header announces): file truncated?",
            )
    else:
        actual = path.stat().st_size
        if actual < expected:
            raise NiftiCheckError("truncated", f"file holds {actual} of {expected} bytes: truncated")


def _check_header(header: NiftiHeader, limit: int, allow_nifti2: bool = False) -> None:
    if header.version == 2 and not allow_nifti2:
        raise NiftiCheckError(
            "nifti2",
            "NIfTI-2 file: SimpleITK cannot read NIfTI-2; save it as NIfTI-1 "
            "(e.g. nibabel.Nifti1Image(img.dataobj, img.affine)) and convert again",
        )
    n_voxels = header.n_voxels
    if n_voxels > limit:
        size = " x ".join(str(d) for d in header.dims)
        raise NiftiCheckError(
            "too_large",
            f"header claims {size} = {n_voxels:,} voxels, more than the limit of {limit:,} "
            f"(set {MAX_VOXELS_ENV} to raise it); refused before allocating",
        )
    extra = [d for d in header.dims[3:] if d > 1]
    if extra:
        size = " x ".join(str(d) for d in header.dims)
        raise NiftiCheckError(
            "four_d",
            f"{len(header.dims)}-D image ({size}): expected one 3-D volume; "
            "split it and pass one volume per file",
        )
    for axis, spacing in zip("xyz", header.pixdim[:3], strict=False):
        if not math.isfinite(spacing) or spacing == 0:
            raise NiftiCheckError(
                "spacing", f"voxel spacing (pixdim) along {axis} is {spacing!r}: must be a positive number"
            )


def _stream_finite(path: Path, header: NiftiHeader) -> None:
    """Read the voxel bytes in chunks; NaN/Inf or a short stream is an error (gzip also checks its CRC)."""
    dtype = header.float_dtype
    opener = gzip.open if path.name.endswith(".gz") else open
    remaining = header.n_voxels * dtype.itemsize
    chunk = _CHUNK_BYTES - _CHUNK_BYTES % dtype.itemsize
    bad = 0
    with opener(path, "rb") as fh:
        fh.read(header.vox_offset)
        while remaining > 0:
            data = fh.read(min(chunk, remaining))
            if not data:
                break
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            remaining -= len(data)
        if path.name.endswith(".gz"):
            fh.read()  # to the end: gzip verifies CRC and length at EOF
    if remaining > 0:
        raise NiftiCheckError("truncated", f"voxel data ends {remaining} bytes early: file truncated")
    if bad:
        raise NiftiCheckError(
            "non_finite", f"{bad} NaN/Inf voxel(s) (ITK would read them as 0); fix or re-export the image"
        )


def check_nifti_file(
    path: str | Path, *, check_finite: bool = True, limit: int | None = None, itk_readable: bool = True
) -> NiftiHeader:
    """Validate a NIfTI file before any reader allocates it; raises NiftiCheckError (`kind`, message).

    Checks, in order: a NIfTI-1 header (NIfTI-2 only when not `itk_readable`: ITK cannot read it), the
    voxel-count limit, 3-D, spacing, completeness, and (for floating-point data when `check_finite`) that
    every voxel is finite.
    """
    path = Path(path)
    try:
        header = parse_nifti_header(_read_header(path))
        _check_header(header, limit if limit is not None else max_voxels(), allow_nifti2=not itk_readable)
        _check_size(path, header.expected_bytes)
        if check_finite and header.float_dtype is not None:
            _stream_finite(path, header)
    except NiftiCheckError:
        raise
    except (OSError, EOFError, struct.error, zlib.error, gzip.BadGzipFile) as exc:
        raise NiftiCheckError("truncated", f"cannot read the file ({type(exc).__name__}: {exc})") from exc
    return header


def nifti_problem(
    path: str | Path, *, check_finite: bool = True, limit: int | None = None, itk_readable: bool = True
) -> str | None:
    """`check_nifti_file` as a value: None when the file is fine, else the one-line reason."""
    try:
        check_nifti_file(path, check_finite=check_finite, limit=limit, itk_readable=itk_readable)
    except NiftiCheckError as exc:
        return str(exc)
    return None


def verify_written_nifti(path: str | Path) -> None:
    """A file this program just wrote is whole: header, size, and the full gzip stream (CRC) decompress.

    SimpleITK's writer does not raise on a full disk ("NWAD: wrote only 0 of N bytes"), so every written
    file is checked before it is renamed into place, and again before a rerun skips it. Raises OSError.
    """
    path = Path(path)
    try:
        header = check_nifti_file(path, check_finite=False, limit=2**62)
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                while fh.read(_CHUNK_BYTES):
                    pass
        elif path.stat().st_size < header.expected_bytes:
            raise NiftiCheckError("truncated", "file shorter than its header announces")
    except (NiftiCheckError, OSError, EOFError, zlib.error) as exc:
        raise OSError(f"{path}: written file is incomplete or damaged ({exc}); disk full?") from exc


def _read_float_once(path: Path, header: NiftiHeader) -> sitk.Image | None:
    """A 3-D float32/float64 NIfTI read with one decompression: the voxels through our own stream (checked
    for NaN/Inf on the way), the geometry from ITK's header-only read, so the finite check does not cost
    a second decompression. None when the file is outside this simple case (then ITK reads it)."""
    scaled = header.scl_slope not in (0.0, 1.0) or header.scl_inter != 0.0
    if header.datatype not in (16, 64) or len(header.dims) < 3 or scaled:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    nx, ny, nz = header.dims[:3]
    if reader.GetDimension() != 3 or tuple(reader.GetSize()) != (nx, ny, nz):
        return None
    dtype = header.float_dtype
    needed = nx * ny * nz * dtype.itemsize
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            fh.read(header.vox_offset)
            data = fh.read(needed)
            if path.name.endswith(".gz"):
                fh.read()  # gzip verifies CRC and length at EOF
    except (OSError, EOFError, zlib.error) as exc:
        raise NiftiCheckError(
            "truncated", f"cannot read the voxel data ({type(exc).__name__}: {exc})"
        ) from exc
    if len(data) < needed:
        raise NiftiCheckError(
            "truncated", f"voxel data ends {needed - len(data)} bytes early: file truncated"
        )
    values = np.frombuffer(data, dtype=dtype).reshape(nz, ny, nx)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NiftiCheckError(
            "non_finite", f"{bad} NaN/Inf voxel(s) (ITK would read them as 0); fix or re-export the image"
        )
    image = sitk.GetImageFromArray(values.astype(dtype.newbyteorder("="), copy=False))
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image


def read_nifti(path: str | Path, cause: str) -> sitk.Image:
    """The image at `path`; ConversionError when it fails `check_nifti_file` (the kind's own cause, or
    `cause` for truncated/unreadable files) or ITK cannot read it."""
    path = Path(path)
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            header = check_nifti_file(path, check_finite=False)
            check_qform_sform(_read_header(path), path)
            if header.float_dtype is not None:
                image = _read_float_once(path, header)
                if image is not None:
                    return image
                _stream_finite(path, header)
        return sitk.ReadImage(str(path))
    except NiftiCheckError as exc:
        raise ConversionError(KIND_CAUSES.get(exc.kind) or cause, str(exc), str(path)) from exc
    except (OSError, EOFError, ValueError, struct.error, RuntimeError) as exc:
        lines = str(exc).strip().splitlines()
        raise ConversionError(
            cause, f"cannot read image ({lines[0] if lines else type(exc).__name__})", str(path)
        ) from exc


def check_axial(image: sitk.Image, path: str | None) -> None:
    """Refuse oblique volumes, as the DICOM reader does (one rule for both input kinds)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    normal = direction[:, 2] / (np.linalg.norm(direction[:, 2]) or 1.0)
    angle = float(np.degrees(np.arccos(min(1.0, abs(normal[2])))))
    in_plane_tilt = max(abs(direction[2, 0]), abs(direction[2, 1]))
    if angle > AXIAL_MAX_ANGLE_DEG or in_plane_tilt > math.sin(math.radians(AXIAL_MAX_ANGLE_DEG)):
        raise ConversionError(
            OBLIQUE_SERIES,
            f"image is not axial: slice normal is {angle:.2f} degrees from the patient z axis "
            "(NIfTI direction); oblique images are not supported, as for DICOM",
            path,
        )
