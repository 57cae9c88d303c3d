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

The header parser, the completeness check and the NaN/Inf scan live in the neutral
`nnunet_recur/nifti_header.py`, which `recur-eval` uses too (without importing the converter); this module
adds the converter's limits, exclusion causes and its own written-file check (`verify_written_nifti`,
the disk-full check).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
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

# The header parser and the guards live in the neutral nnunet_recur/nifti_header.py (the evaluation
# uses them too, without importing the converter); re-exported here for the converter's callers.
from nnunet_recur.nifti_header import (  # noqa: F401 - re-exports
    CHUNK_BYTES,
    DEFAULT_MAX_VOXELS,
    MAX_VOXELS_ENV,
    NiftiCheckError,
    NiftiHeader,
    check_header,
    check_nifti_complete,
    count_nonfinite,
    inspect_nifti,
    max_voxels,
    nonfinite_message,
    open_voxel_stream,
    parse_nifti_header,
    read_plain_float_voxels,
)

AXIAL_MAX_ANGLE_DEG = 0.5  # same bound as the DICOM series reader (dicom_series.AXIAL_MAX_ANGLE_DEG)

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


def expected_nifti_bytes(header: bytes) -> int:
    """vox_offset + voxel count x bytes per voxel, from a NIfTI-1 or NIfTI-2 header."""
    return parse_nifti_header(header).expected_bytes


def _stream_finite(path: Path, header: NiftiHeader) -> None:
    """Read the voxel bytes in chunks; NaN/Inf or a short stream is an error (gzip also checks its CRC)."""
    bad = count_nonfinite(path, header)
    if bad:
        raise NiftiCheckError("non_finite", nonfinite_message(bad))


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
        limit = limit if limit is not None else max_voxels()
        header = inspect_nifti(path, lambda h: check_header(h, limit, allow_nifti2=not itk_readable))
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
                while fh.read(CHUNK_BYTES):
                    pass
        elif path.stat().st_size < header.expected_bytes:
            raise NiftiCheckError("truncated", "file shorter than its header announces")
    except (NiftiCheckError, OSError, EOFError, zlib.error) as exc:
        raise OSError(f"{path}: written file is incomplete or damaged ({exc}); disk full?") from exc


def _read_float_once(path: Path, header: NiftiHeader) -> sitk.Image | None:
    """A 3-D float32/float64 NIfTI read with one decompression: the voxels through our own stream (checked
    for NaN/Inf on the way), the geometry from ITK's header-only read, so the finite check does not cost
    a second decompression. None when the file is outside this simple case (then ITK reads it)."""
    if not header.plain_float or len(header.dims) < 3:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    nx, ny, nz = header.dims[:3]
    if reader.GetDimension() != 3 or tuple(reader.GetSize()) != (nx, ny, nz):
        return None
    try:
        values = read_plain_float_voxels(path, header)
    except (OSError, EOFError, zlib.error) as exc:
        raise NiftiCheckError(
            "truncated", f"cannot read the voxel data ({type(exc).__name__}: {exc})"
        ) from exc
    values = values.reshape(nz, ny, nx)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NiftiCheckError("non_finite", nonfinite_message(bad))
    image = sitk.GetImageFromArray(values)
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image


def _header_bytes(path: Path) -> bytes:
    """The first 544 uncompressed bytes (a NIfTI-1 or -2 header) for the qform/sform check."""
    with open_voxel_stream(path) as fh:
        return fh.read(544)


def read_nifti(path: str | Path, cause: str) -> sitk.Image:
    """The image at `path`; ConversionError when it fails `check_nifti_file` (the kind's own cause, or
    `cause` for truncated/unreadable files) or ITK cannot read it."""
    path = Path(path)
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            header = check_nifti_file(path, check_finite=False)
            check_qform_sform(_header_bytes(path), path)
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
