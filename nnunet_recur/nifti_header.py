"""The one NIfTI header parser and the guards built on it, shared by the converter and the evaluation.

ITK's NIfTI reader (SimpleITK 2.5) fills a truncated .nii.gz with zeros without any error, reads NaN and
Inf voxels as 0, and allocates whatever the header claims. Both sides of the pipeline therefore read the
header themselves first and refuse by the same rules (`dataset_conversion/nifti_io.py` adds the
converter's limits and exclusion causes, `evaluation/volumes.py` its NaN refusal). Neutral and light on
purpose (numpy and the standard library): the evaluation imports it without importing the converter.

`inspect_nifti` opens a file once: the header (the first bytes of the gzip stream) and the completeness
check (the gzip trailer's ISIZE, or the file size of a .nii) come from the same open file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_VOXELS_ENV = "RECUR_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 512 * 512 * 2048  # a 2048-slice 512 x 512 CT; 2 GiB as float32
CHUNK_BYTES = 1 << 24
#: deflate cannot expand more than ~1032:1: a header promising more voxel bytes than that is lying.
MAX_DEFLATE_RATIO = 1032
HEADER_BYTES = 544  # enough for a NIfTI-2 header (540) and its 4-byte extension flag

# NIfTI datatype codes -> numpy dtypes of the floating-point kinds that can hold NaN / Inf.
FLOAT_DTYPES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}
# Scalar integer datatype codes -> numpy dtypes.
INTEGER_DTYPES = {2: "u1", 4: "i2", 8: "i4", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}


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


@dataclass(frozen=True)
class NiftiHeader:
    """What the guards need from a NIfTI-1 or NIfTI-2 header."""

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
    def voxel_bytes(self) -> int:
        return self.n_voxels * max(self.bitpix, 8) // 8

    @property
    def expected_bytes(self) -> int:
        return self.vox_offset + self.voxel_bytes

    @property
    def float_dtype(self) -> np.dtype | None:
        """The numpy dtype of floating-point voxels (which can hold NaN / Inf); None for other types."""
        code = FLOAT_DTYPES.get(self.datatype)
        return np.dtype(self.endian + code) if code else None

    @property
    def scaled(self) -> bool:
        """The header asks readers to rescale the stored values (a non-finite slope or intercept counts
        as none, as nifti1_io and ITK treat it)."""
        slope = self.scl_slope if math.isfinite(self.scl_slope) else 0.0
        inter = self.scl_inter if math.isfinite(self.scl_inter) else 0.0
        return slope not in (0.0, 1.0) or inter != 0.0

    @property
    def plain_float(self) -> bool:
        """Real float32/float64 voxels stored as values: readable straight from the stream."""
        return self.datatype in (16, 64) and not self.scaled


def parse_nifti_header(header: bytes) -> NiftiHeader:
    """The header fields of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header; NiftiCheckError otherwise."""
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


def is_gzip(path: Path) -> bool:
    return Path(path).name.endswith(".gz")


def open_voxel_stream(path: Path):
    """A binary file object over the uncompressed bytes of a .nii or .nii.gz file."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _gzip_head(fh, size: int) -> bytes:
    """The first `size` uncompressed bytes of the gzip stream in `fh` (positioned at its start)."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)  # gzip wrapper
    out = b""
    while len(out) < size:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        out += inflater.decompress(chunk, size - len(out))
        while inflater.unconsumed_tail and len(out) < size:
            out += inflater.decompress(inflater.unconsumed_tail, size - len(out))
        if inflater.eof:
            break
    return out


def _check_size(path: Path, expected: int, fh) -> None:
    """Refuse a file with fewer voxel bytes than `expected` (the gzip ISIZE, or the .nii's size)."""
    if is_gzip(path):
        fh.seek(-4, 2)
        (isize,) = struct.unpack("<I", fh.read(4))
        if isize != expected % 2**32:
            raise NiftiCheckError(
                "truncated",
                f"gzip stream incomplete or damaged (its size field does not match the {expected} bytes "
                "the header announces): file truncated?",
            )
    else:
        actual = os.fstat(fh.fileno()).st_size
        if actual < expected:
            raise NiftiCheckError("truncated", f"file holds {actual} of {expected} bytes: truncated")


def inspect_nifti(path: Path, check: Callable[[NiftiHeader], None] | None = None) -> NiftiHeader:
    """The header of a .nii / .nii.gz file, refused when the file holds fewer bytes than it announces.

    One open of the file: header and completeness check read the same handle. `check` (e.g. the limits
    of `check_header`) runs on the header before the completeness check, so a lying header is named
    for what it claims. Raises NiftiCheckError, or OSError / EOFError / zlib.error / struct.error for a
    file that is not even a readable stream."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = _gzip_head(fh, HEADER_BYTES) if is_gzip(path) else fh.read(HEADER_BYTES)
        header = parse_nifti_header(head)
        if check is not None:
            check(header)
        _check_size(path, header.expected_bytes, fh)
    return header


def check_nifti_complete(path: Path) -> None:
    """NiftiCheckError (a ValueError) when the file holds fewer voxel bytes than its header announces."""
    inspect_nifti(path)


def check_header(header: NiftiHeader, limit: int, allow_nifti2: bool = False) -> None:
    """The readers' limits: NIfTI-1 (ITK cannot read NIfTI-2), voxel count, one 3-D volume, spacing."""
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


def check_allocation(path: Path, header: NiftiHeader) -> None:
    """Refuse a header promising more voxel bytes than the file can hold, before allocating them.

    The completeness check compares sizes modulo 2**32 (gzip's ISIZE), so a lying header could pass it."""
    on_disk = Path(path).stat().st_size
    if header.voxel_bytes > (MAX_DEFLATE_RATIO * on_disk if is_gzip(path) else on_disk):
        raise NiftiCheckError(
            "truncated", f"header promises {header.voxel_bytes} voxel bytes, more than the file can hold"
        )


def count_nonfinite(path: Path, header: NiftiHeader) -> int:
    """NaN / Inf voxels of a floating-point file, read in 16 MiB chunks to the end of the stream (gzip
    checks its CRC there); a stream ending before the header's voxel bytes is a NiftiCheckError."""
    dtype = header.float_dtype
    remaining = header.n_voxels * dtype.itemsize
    chunk = CHUNK_BYTES - CHUNK_BYTES % dtype.itemsize
    bad = 0
    with open_voxel_stream(path) as fh:
        fh.read(header.vox_offset)
        while remaining > 0:
            data = fh.read(min(chunk, remaining))
            if not data:
                break
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            remaining -= len(data)
        if is_gzip(path):
            fh.read()  # to the end: gzip verifies CRC and length at EOF
    if remaining > 0:
        raise NiftiCheckError("truncated", f"voxel data ends {remaining} bytes early: file truncated")
    return bad


def read_plain_float_voxels(path: Path, header: NiftiHeader) -> np.ndarray:
    """Every voxel of an unscaled float32/float64 file in one decompression (1-D, file order, native byte
    order, writable); the gzip CRC is verified. NiftiCheckError for a short stream."""
    check_allocation(path, header)
    dtype = header.float_dtype
    size = header.n_voxels * dtype.itemsize
    data = bytearray(size)
    view, filled = memoryview(data), 0
    with open_voxel_stream(path) as fh:
        fh.read(header.vox_offset)
        while filled < size and (got := fh.readinto(view[filled:])):
            filled += got
        if is_gzip(path) and filled == size:
            fh.read()  # to the end: gzip verifies CRC and length at EOF
    if filled != size:
        raise NiftiCheckError("truncated", f"voxel data truncated ({filled} of {size} bytes)")
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


def nonfinite_message(count: int) -> str:
    return f"{count} NaN/Inf voxel(s) (ITK would read them as 0); fix or re-export the image"
