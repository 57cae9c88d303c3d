"""Whether the CT covers a mask given on another grid (NIfTI GTV/relapse masks): the voxel-mask twin of
`rtstruct.check_placement`, so that both input kinds exclude a patient whose CT misses part of the ROI
instead of converting the part that happens to fall inside."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import CONTOUR_OUTSIDE_CT, ConversionError
from nnunet_recur.dataset_conversion.rtstruct import MAX_OUTSIDE_FRACTION


def _index_to_physical(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return direction * np.asarray(image.GetSpacing(), dtype=float)[np.newaxis, :], np.asarray(
        image.GetOrigin()
    )


def outside_fraction(mask: sitk.Image, ct: sitk.Image) -> float:
    """Fraction of the mask's voxels whose centres lie outside the CT's extent (voxel edges)."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
    if zyx.size == 0:
        return 0.0
    to_mm, origin = _index_to_physical(mask)
    points = zyx[:, ::-1].astype(float) @ to_mm.T + origin
    ct_to_mm, ct_origin = _index_to_physical(ct)
    index = (points - ct_origin) @ np.linalg.inv(ct_to_mm).T
    size = np.asarray(ct.GetSize(), dtype=float)
    outside = np.any((index < -0.5) | (index > size - 0.5), axis=1)
    return float(np.count_nonzero(outside)) / len(index)


def check_mask_coverage(mask: sitk.Image, ct: sitk.Image, what: str, path: str | None) -> None:
    """contour_outside_ct when more than MAX_OUTSIDE_FRACTION of `mask` lies outside the CT."""
    fraction = outside_fraction(mask, ct)
    if fraction > MAX_OUTSIDE_FRACTION:
        raise ConversionError(
            CONTOUR_OUTSIDE_CT,
            f"{what}: {100 * fraction:.0f} % of its voxels lie outside the CT (limit "
            f"{100 * MAX_OUTSIDE_FRACTION:.0f} %): the CT does not cover it",
            path,
        )
