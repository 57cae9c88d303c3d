"""Refuse a NIfTI-1 file whose qform and sform both claim to place the image and disagree.

A NIfTI header can carry two transforms to patient space: the quaternion form (qform) and the affine
(sform), each with a code saying whether it is set. ITK picks one of them silently; when both are set
and differ (a tool updated one and not the other), a 30 mm disagreement moves the PET 30 mm against the
CT with no word. When both codes are non-zero and the two transforms differ by more than
MAX_OFFSET_MM in origin, MAX_ANGLE_DEG in direction or MAX_SPACING_REL in voxel size, the image is
refused (`orientation_conflict`) with both transforms in the message; the user fixes the file.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from nnunet_recur.dataset_conversion.errors import ORIENTATION_CONFLICT, ConversionError

MAX_OFFSET_MM = 0.1
MAX_ANGLE_DEG = 0.1
MAX_SPACING_REL = 1e-3


def qform_sform(header: bytes) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """(qform_code, sform_code, qform 4x4, sform 4x4) of a NIfTI-1 header (RAS, mm); None for NIfTI-2 or a
    header too short (the guard in nifti_io refuses those)."""
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return None
    pixdim = struct.unpack(endian + "8f", header[76:108])
    qcode, scode = struct.unpack(endian + "2h", header[252:256])
    b, c, d, qx, qy, qz = struct.unpack(endian + "6f", header[256:280])
    srows = struct.unpack(endian + "12f", header[280:328])
    a = math.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rotation = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
        ]
    )
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    qform = np.eye(4)
    qform[:3, :3] = rotation @ np.diag([pixdim[1], pixdim[2], qfac * pixdim[3]])
    qform[:3, 3] = (qx, qy, qz)
    sform = np.eye(4)
    sform[:3, :] = np.asarray(srows, dtype=float).reshape(3, 4)
    return int(qcode), int(scode), qform, sform


def disagreement(qform: np.ndarray, sform: np.ndarray) -> tuple[float, float, float]:
    """(origin distance mm, largest angle between matching axes in degrees, largest relative voxel-size
    difference) between two affines."""
    offset = float(np.linalg.norm(qform[:3, 3] - sform[:3, 3]))
    q_sizes = np.linalg.norm(qform[:3, :3], axis=0)
    s_sizes = np.linalg.norm(sform[:3, :3], axis=0)
    if np.any(q_sizes <= 0) or np.any(s_sizes <= 0):
        return offset, 180.0, 1.0
    cosines = np.sum(qform[:3, :3] / q_sizes * (sform[:3, :3] / s_sizes), axis=0)
    angle = float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())
    spacing = float(np.max(np.abs(q_sizes - s_sizes) / s_sizes))
    return offset, angle, spacing


def check_qform_sform(header: bytes, path: str | Path) -> None:
    """ConversionError(orientation_conflict) when qform and sform are both set and disagree."""
    forms = qform_sform(header)
    if forms is None:
        return
    qcode, scode, qform, sform = forms
    if qcode <= 0 or scode <= 0:
        return
    offset, angle, spacing = disagreement(qform, sform)
    if offset > MAX_OFFSET_MM or angle > MAX_ANGLE_DEG or spacing > MAX_SPACING_REL:
        raise ConversionError(
            ORIENTATION_CONFLICT,
            f"qform (code {qcode}) and sform (code {scode}) disagree: origins {offset:.2f} mm apart, axes "
            f"up to {angle:.2f} degrees apart, voxel sizes {100 * spacing:.2f} % apart (limits "
            f"{MAX_OFFSET_MM} mm, {MAX_ANGLE_DEG} degrees); which one is right is unknown, so the image "
            "is refused: fix the header (e.g. set qform_code 0 or make both equal)",
            str(path),
        )
