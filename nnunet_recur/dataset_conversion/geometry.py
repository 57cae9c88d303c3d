"""Grid geometry of the conversion: compare grids, resample PET onto CT, cut to the common axial range,
crop a box around the GTV centre.

Every function takes and returns SimpleITK images so that spacing, origin and direction travel with the
voxels; arrays appear only inside a function. "x, y, z" means SimpleITK index order (i, j, k), i.e. the
columns, rows and slices of an axial CT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# One tolerance for "the same grid" everywhere (mm for origin, relative for spacing, absolute for direction).
ORIGIN_TOLERANCE_MM = 1e-3
SPACING_RELATIVE_TOLERANCE = 1e-4
DIRECTION_TOLERANCE = 1e-5


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when both images have the same size, spacing, origin and direction (within the tolerances)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=SPACING_RELATIVE_TOLERANCE, atol=0)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=ORIGIN_TOLERANCE_MM, rtol=0)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=DIRECTION_TOLERANCE, rtol=0)
    )


def resample_onto(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    interpolator: str = "linear",
    default_value: float = 0.0,
    pixel_type: int | None = None,
) -> sitk.Image:
    """`image` resampled onto the grid of `reference` (identity transform: both in patient coordinates).

    PET uses linear interpolation (as the paper, SimpleITK's linear resampler), masks nearest neighbour.
    Points outside `image` get `default_value`.
    """
    interpolators = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolator not in interpolators:
        raise ValueError(f"interpolator must be one of {sorted(interpolators)}, got {interpolator!r}")
    out_type = image.GetPixelID() if pixel_type is None else pixel_type
    return sitk.Resample(
        image, reference, sitk.Transform(), interpolators[interpolator], float(default_value), out_type
    )


def slice_normal(image: sitk.Image) -> np.ndarray:
    """Unit vector along the slice (k) axis of `image` in patient coordinates."""
    return np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]


def slice_positions_mm(image: sitk.Image) -> np.ndarray:
    """Position of every slice centre along the image's own slice normal (mm)."""
    normal = slice_normal(image)
    start = float(np.dot(image.GetOrigin(), normal))
    return start + np.arange(image.GetSize()[2]) * image.GetSpacing()[2]


def extent_along_mm(image: sitk.Image, normal: np.ndarray) -> tuple[float, float]:
    """(min, max) of `image`'s voxel-centre box projected on `normal` (mm), from its 8 corner voxels."""
    size = image.GetSize()
    corners = [
        image.TransformIndexToPhysicalPoint((i, j, k))
        for i in (0, size[0] - 1)
        for j in (0, size[1] - 1)
        for k in (0, size[2] - 1)
    ]
    projected = np.asarray(corners, dtype=float) @ normal
    return float(projected.min()), float(projected.max())


@dataclass(frozen=True)
class AxialOverlap:
    """The CT slices [first, stop) that the PET covers; slices outside would get zero-filled PET."""

    first: int
    stop: int
    ct_slices: int

    @property
    def removed(self) -> int:
        return self.ct_slices - (self.stop - self.first)

    @property
    def empty(self) -> bool:
        return self.stop <= self.first


def axial_overlap(ct: sitk.Image, pet: sitk.Image) -> AxialOverlap:
    """Which CT slices lie inside the PET's axial extent.

    A CT slice is kept when its centre lies within half a PET slice of the PET's first/last slice centre:
    that is where SimpleITK's linear interpolator still has PET data (it treats the buffer as extending
    half a voxel beyond the outer centres), so no default-filled PET slice enters the dataset.
    """
    normal = slice_normal(ct)
    low, high = extent_along_mm(pet, normal)
    # Half a PET voxel along the CT normal, measured with PET's own spacing on the axis closest to it.
    pet_axis = int(np.argmax(np.abs(np.asarray(pet.GetDirection()).reshape(3, 3).T @ normal)))
    half = 0.5 * pet.GetSpacing()[pet_axis] * (1.0 - 1e-6)
    positions = slice_positions_mm(ct)
    inside = np.nonzero((positions >= low - half) & (positions <= high + half))[0]
    if inside.size == 0:
        return AxialOverlap(0, 0, ct.GetSize()[2])
    return AxialOverlap(int(inside[0]), int(inside[-1]) + 1, ct.GetSize()[2])


def take_slices(image: sitk.Image, first: int, stop: int) -> sitk.Image:
    """Slices [first, stop) of `image` (geometry kept: origin moves to slice `first`)."""
    if first == 0 and stop == image.GetSize()[2]:
        return image
    return image[:, :, first:stop]


def mask_centre_index(mask: sitk.Image) -> tuple[int, int, int]:
    """Voxel index (x, y, z) nearest to the centre of mass of a binary mask; ValueError when empty."""
    array = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(array > 0)
    if zyx.size == 0:
        raise ValueError("empty mask has no centre")
    centre = zyx.mean(axis=0)
    return tuple(int(math.floor(v + 0.5)) for v in centre[::-1])  # type: ignore[return-value]


def max_extent_from_centre_mm(
    mask: sitk.Image, centre_index: tuple[int, int, int]
) -> tuple[float, float, float]:
    """Per axis (x, y, z), the largest distance in mm from `centre_index` to a voxel of `mask`."""
    array = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(array > 0)
    if zyx.size == 0:
        return (0.0, 0.0, 0.0)
    xyz = zyx[:, ::-1]
    distance_vox = np.abs(xyz - np.asarray(centre_index)).max(axis=0)
    spacing = np.asarray(mask.GetSpacing())
    return tuple(float(v) for v in distance_vox * spacing)  # type: ignore[return-value]


def box_start(centre_index: tuple[int, int, int], size: tuple[int, int, int]) -> tuple[int, int, int]:
    """First voxel index of a box of `size` voxels centred on `centre_index` (the centre lands on size//2)."""
    return tuple(int(c) - int(s) // 2 for c, s in zip(centre_index, size, strict=True))  # type: ignore[return-value]


def crop_box(
    image: sitk.Image, start: tuple[int, int, int], size: tuple[int, int, int], pad_value: float
) -> sitk.Image:
    """The box [start, start + size) of `image`; voxels outside the image get `pad_value`.

    The result keeps spacing and direction; its origin is the physical position of `start` (which may
    lie outside the image), so the crop stays aligned with the source in patient coordinates.
    """
    source = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    dims = image.GetSize()
    out = np.full(tuple(reversed(size)), pad_value, dtype=source.dtype)
    src_lo = [max(0, s) for s in start]
    src_hi = [min(d, s + n) for d, s, n in zip(dims, start, size, strict=True)]
    if all(lo < hi for lo, hi in zip(src_lo, src_hi, strict=True)):
        dst_lo = [lo - s for lo, s in zip(src_lo, start, strict=True)]
        dst_hi = [hi - s for hi, s in zip(src_hi, start, strict=True)]
        out[dst_lo[2] : dst_hi[2], dst_lo[1] : dst_hi[1], dst_lo[0] : dst_hi[0]] = source[
            src_lo[2] : src_hi[2], src_lo[1] : src_hi[1], src_lo[0] : src_hi[0]
        ]
    cropped = sitk.GetImageFromArray(out)
    cropped.SetSpacing(image.GetSpacing())
    cropped.SetDirection(image.GetDirection())
    cropped.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([float(s) for s in start]))
    return cropped


def with_geometry_of(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """`image` with exactly `reference`'s spacing/origin/direction (sizes must agree).

    Used after cropping so that every file of a case carries bit-identical geometry.
    """
    if image.GetSize() != reference.GetSize():
        raise ValueError(f"size {image.GetSize()} differs from reference {reference.GetSize()}")
    image.CopyInformation(reference)
    return image


def voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0
