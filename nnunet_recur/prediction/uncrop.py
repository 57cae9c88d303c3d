"""Put a map predicted on the crop back onto the full planning-CT grid (outside the crop = 0).

The crop box kept physical coordinates and the CT's spacing and direction, so the crop is a sub-grid of
the planning CT shifted by a whole number of voxels: a plain array paste is exact. Only when that does not
hold (a grid nobody expected) does the map go through `sitk.Resample` (linear, 0 outside).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

GRID_TOL = 1e-4  # relative spacing / direction agreement, and index offset in voxels


def integer_offset(crop: sitk.Image, full: sitk.Image) -> tuple[int, int, int] | None:
    """Voxel index in `full` of the crop's first voxel, when the crop is a shifted sub-grid of `full`."""
    if not np.allclose(crop.GetSpacing(), full.GetSpacing(), rtol=GRID_TOL, atol=0):
        return None
    if not np.allclose(crop.GetDirection(), full.GetDirection(), atol=GRID_TOL):
        return None
    index = np.asarray(full.TransformPhysicalPointToContinuousIndex(crop.GetOrigin()))
    rounded = np.round(index)
    if np.max(np.abs(index - rounded)) > 1e-3:
        return None
    return tuple(int(v) for v in rounded)  # type: ignore[return-value]


def uncrop(array: np.ndarray, crop: sitk.Image, full: sitk.Image) -> sitk.Image:
    """float32 image on `full`'s grid holding `array` (z, y, x on `crop`'s grid) and 0 elsewhere."""
    if array.shape != tuple(reversed(crop.GetSize())):
        raise ValueError(f"map shape {array.shape} does not match the crop {tuple(reversed(crop.GetSize()))}")
    offset = integer_offset(crop, full)
    if offset is None:
        moving = sitk.GetImageFromArray(array.astype(np.float32))
        moving.CopyInformation(crop)
        return sitk.Resample(moving, full, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    out = np.zeros(tuple(reversed(full.GetSize())), dtype=np.float32)
    src_lo, dst_lo, dst_hi = [], [], []
    for axis in range(3):  # x, y, z
        start, n, size = offset[axis], crop.GetSize()[axis], full.GetSize()[axis]
        lo, hi = max(0, start), min(size, start + n)
        if lo >= hi:
            image = sitk.GetImageFromArray(out)
            image.CopyInformation(full)
            return image
        src_lo.append(lo - start)
        dst_lo.append(lo)
        dst_hi.append(hi)
    ext = [h - lo for h, lo in zip(dst_hi, dst_lo, strict=True)]
    out[dst_lo[2] : dst_hi[2], dst_lo[1] : dst_hi[1], dst_lo[0] : dst_hi[0]] = array[
        src_lo[2] : src_lo[2] + ext[2], src_lo[1] : src_lo[1] + ext[1], src_lo[0] : src_lo[0] + ext[0]
    ]
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(full)
    return image
