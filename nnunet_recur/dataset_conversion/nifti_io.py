"""Read a NIfTI file, refusing truncated ones.

ITK's NIfTI reader fills a truncated .nii.gz with zeros without any error (measured with SimpleITK 2.5),
so a PET cut short in transfer would enter the dataset as a PET with no uptake in its lower half. Before
reading we therefore compare the voxel bytes the header promises with what the file holds: the gzip
trailer's ISIZE (uncompressed size mod 2**32) for .nii.gz, the file size for .nii. Cheap: only the
header and the last four bytes are read.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import ConversionError


def expected_nifti_bytes(header: bytes) -> int:
    """vox_offset + voxel count x bytes per voxel, from a NIfTI-1 or NIfTI-2 header."""
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            (bitpix,) = struct.unpack(endian + "h", header[72:74])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
            break
        if sizeof_hdr == 540:
            (bitpix,) = struct.unpack(endian + "h", header[14:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
            break
    else:
        raise ValueError("not a NIfTI header")
    n_dims = max(1, min(int(dims[0]), 7))
    voxels = 1
    for d in dims[1 : n_dims + 1]:
        voxels *= max(int(d), 1)
    offset = int(vox_offset) if vox_offset else (352 if sizeof_hdr == 348 else 544)
    return offset + voxels * max(int(bitpix), 8) // 8


def check_nifti_complete(path: Path) -> None:
    """ValueError when the file holds fewer voxel bytes than its header announces."""
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            header = fh.read(544)
        expected = expected_nifti_bytes(header)
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            (isize,) = struct.unpack("<I", fh.read(4))
        if isize != expected % 2**32:
            raise ValueError(
                f"compressed data incomplete (holds {isize} of {expected} bytes): file truncated?"
            )
    else:
        with open(path, "rb") as fh:
            header = fh.read(544)
        expected = expected_nifti_bytes(header)
        actual = path.stat().st_size
        if actual < expected:
            raise ValueError(f"file holds {actual} of {expected} bytes: truncated")


def read_nifti(path: str | Path, cause: str) -> sitk.Image:
    """The image at `path`; ConversionError(cause) when it is truncated or unreadable."""
    path = Path(path)
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            check_nifti_complete(path)
        return sitk.ReadImage(str(path))
    except (OSError, EOFError, ValueError, struct.error, RuntimeError) as exc:
        lines = str(exc).strip().splitlines()
        raise ConversionError(
            cause, f"cannot read image ({lines[0] if lines else type(exc).__name__})", str(path)
        ) from exc
