"""Brain mask for the evaluation's SUVmax baseline (paper: voxels in a brain mask are excluded from the
thresholded PET, because grey matter is as FDG-avid as tumour).

When the RTSTRUCT has a brain ROI the converter uses it. Otherwise `automatic_brain_mask` finds the
brain from CT + PET:

1. bone = CT >= 250 HU (skull, mandible, spine);
2. the cranial cavity = voxels enclosed by bone, taken as the union of (a) holes of the bone mask in
   each axial slice (the skull is a closed ring in most axial slices) and (b) holes of the bone mask
   in 3D (the slices near the vertex, where the skull is cut tangentially);
3. candidates = enclosed voxels of soft-tissue density (-100 to 200 HU, so sinus air is left out);
4. seed = the largest connected candidate region whose mean SUV is at least `min_brain_suv` (grey
   matter SUV 6-10 against ~1 for soft tissue, so the spinal canal, orbits and sinuses do not qualify);
5. brain = the regions of {inside the skull, -100 <= HU <= 400, SUV >= 0.4 x the seed's median SUV}
   that touch the seed: this takes in the partial-volume rim next to the skull (HU 200-400, uptake
   still brain-like) and drops enclosed low-uptake tissue (skull base, CSF spaces); holes filled
   slice by slice;
6. the GTV, dilated by one voxel, is removed, so the mask never touches the GTV (a tumour invading
   the skull base must stay visible to the SUVmax baseline).

All of it runs inside the bounding box of the bone (0.3 s on a 512 x 512 x 120 CT). Measured on the
synthetic cohort: >= 99 % of the generator's brain covered, ~1-3 % extra voxels (tests/test_brain_mask.py).
A scan without a skull (no qualifying component) gives an empty mask, which the evaluation reads as
"nothing to exclude".
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

BONE_HU = 250.0
SOFT_TISSUE_HU = (-100.0, 200.0)
MIN_BRAIN_SUV = 2.5
MIN_BRAIN_ML = 5.0
EDGE_HU = 400.0
EDGE_SUV_FRACTION = 0.4


def automatic_brain_mask(
    ct: sitk.Image,
    pet: sitk.Image,
    gtv: sitk.Image | None = None,
    *,
    min_brain_suv: float = MIN_BRAIN_SUV,
) -> sitk.Image:
    """uint8 0/1 brain mask on the CT grid (`pet` must already be on that grid)."""
    hu_all = sitk.GetArrayViewFromImage(ct)
    suv_all = sitk.GetArrayViewFromImage(pet)
    if hu_all.shape != suv_all.shape:
        raise ValueError("PET must be resampled onto the CT grid before the brain mask")
    result = np.zeros(hu_all.shape, dtype=np.uint8)
    box = _bone_box(hu_all >= BONE_HU)
    if box is not None:
        hu, suv = hu_all[box], suv_all[box]
        gtv_array = sitk.GetArrayViewFromImage(gtv)[box] > 0 if gtv is not None else None
        voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
        result[box] = _brain_in_box(hu, suv, gtv_array, min_brain_suv, voxel_ml)
    out = sitk.GetImageFromArray(result)
    out.CopyInformation(ct)
    return out


def _bone_box(bone: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the bone plus one voxel: every hole of the bone mask lies inside it, and the
    work on a whole-body CT shrinks to the head and neck."""
    if not bone.any():
        return None
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        occupied = np.nonzero(bone.any(axis=other))[0]
        box.append(slice(max(int(occupied[0]) - 1, 0), min(int(occupied[-1]) + 2, bone.shape[axis])))
    return tuple(box)


def _brain_in_box(
    hu: np.ndarray, suv: np.ndarray, gtv: np.ndarray | None, min_brain_suv: float, voxel_ml: float
) -> np.ndarray:
    bone = hu >= BONE_HU
    inside_skull = ndimage.binary_fill_holes(bone)
    for z in range(bone.shape[0]):
        if bone[z].any():
            inside_skull[z] |= ndimage.binary_fill_holes(bone[z])
    candidates = inside_skull & ~bone & (hu >= SOFT_TISSUE_HU[0]) & (hu <= SOFT_TISSUE_HU[1])
    seed = _largest_avid_component(candidates, suv, min_brain_suv, voxel_ml)
    brain = np.zeros(hu.shape, dtype=bool)
    if seed is not None:
        # Grow into the partial-volume rim next to the skull (HU up to EDGE_HU) where the uptake is
        # still brain-like, and drop enclosed low-uptake tissue (skull base, sinuses, CSF spaces).
        brain_suv = float(np.median(suv[seed]))
        domain = (
            inside_skull
            & (hu <= EDGE_HU)
            & (hu >= SOFT_TISSUE_HU[0])
            & (suv >= EDGE_SUV_FRACTION * brain_suv)
        )
        labels, _ = ndimage.label(domain)
        keep = np.unique(labels[seed])
        brain = np.isin(labels, keep[keep > 0])
        for z in range(brain.shape[0]):
            if brain[z].any():
                brain[z] = ndimage.binary_fill_holes(brain[z])
    if gtv is not None and gtv.any():
        brain &= ~ndimage.binary_dilation(gtv, structure=ndimage.generate_binary_structure(3, 1))
    return brain.astype(np.uint8)


def _largest_avid_component(
    candidates: np.ndarray, suv: np.ndarray, min_suv: float, voxel_ml: float
) -> np.ndarray | None:
    """The largest connected candidate region whose mean SUV is brain-like (None when there is none)."""
    labels, n = ndimage.label(candidates)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    means = np.bincount(labels.ravel(), weights=suv.ravel().astype(np.float64), minlength=n + 1) / np.maximum(
        sizes, 1
    )
    for index in np.argsort(sizes[1:])[::-1] + 1:  # largest first
        if sizes[index] * voxel_ml < MIN_BRAIN_ML:
            break
        if means[index] >= min_suv:
            return labels == index
    return None
