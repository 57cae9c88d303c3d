"""NIfTI GTV/relapse masks to 0/1, refusing to guess at soft labels silently.

A mask resampled with linear interpolation has fractional values along its border; binarising it at
> 0 (what a plain `!= 0` does) grows a 519-voxel relapse to 2,007 voxels. Integer-valued masks (0/1,
0/255, 0/k) are binary as they are: every non-zero voxel is inside. A mask with non-integer values is a
soft label: it is thresholded at `threshold` x its scale (1 for values within [0, 1], else its maximum,
for a 0/255 mask resampled linearly), voxels at or above the cut are inside, and the report says so.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

DEFAULT_LABEL_THRESHOLD = 0.5


def check_threshold(threshold: float) -> None:
    if not (0.0 < threshold <= 1.0):
        raise ValueError(f"--label-threshold must be in (0, 1], got {threshold!r}")


def binarise_label(image: sitk.Image, threshold: float, what: str) -> tuple[sitk.Image, str | None]:
    """(0/1 uint8 mask with the geometry of `image`, note for the report or None when it was binary)."""
    binary = sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8)  # in ITK: no numpy copy of a CT-size mask
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind in "iub":
        return binary, None
    nonzero = values[values != 0]
    n_soft = int(np.count_nonzero(nonzero != np.round(nonzero)))
    if n_soft == 0:
        return binary, None
    top = float(nonzero.max())
    scale = top if top > 1.0 else 1.0
    cut = threshold * scale
    out = sitk.Cast(sitk.GreaterEqual(image, cut), sitk.sitkUInt8)
    out.CopyInformation(image)
    kept = int(np.count_nonzero(nonzero >= cut))
    note = (
        f"{what}: soft label ({n_soft} voxels with non-integer values, maximum {top:g}): "
        f"thresholded at >= {cut:g} (--label-threshold {threshold:g}), {kept} voxels inside "
        f"instead of {nonzero.size} non-zero"
    )
    return out, note
