"""The crop box of paper II.A: one box size for the whole dataset, centred on each patient's GTV centre.

`auto` (default for in-house data): for every training+validation patient, the largest distance along
each axis from the GTV centre to the furthest voxel of GTV ∪ relapse; the maximum over those patients
plus 15 % padding gives the half-size of the box. Per axis, because the paper's box (160 x 224 x 128)
is not a cube. `fixed`: the paper's 160 x 224 x 128 voxels (x, y, z). `fixed-mm`: the same box in
millimetres at the paper's CT spacing (0.9765 x 0.9765 x 2.0 mm: 156.2 x 218.7 x 256 mm), i.e.
floor(mm / spacing) voxels at each patient's own spacing - for HECKTOR, whose scans have other spacings:
nnU-Net resamples them to the relapse dataset's spacing, and a box fixed in voxels would then outgrow the
128 x 224 x 160 patch (e.g. 128 slices of 3.0 mm become 192 slices of 2.0 mm). `none`: whole image.
The box is recorded in dataset.json ("recur_crop") so new patients are cropped the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CROP_MODES = ("auto", "fixed", "fixed-mm", "none")
PAPER_BOX_VOXELS = (160, 224, 128)
PAPER_CT_SPACING_MM = (0.9765, 0.9765, 2.0)  # paper II.A (x, y, z)
PAPER_BOX_MM = tuple(v * s for v, s in zip(PAPER_BOX_VOXELS, PAPER_CT_SPACING_MM, strict=True))
AUTO_PADDING = 0.15
# Values outside the image when the box leaves it: air, no uptake, background.
PAD_CT_HU = -1024.0
PAD_PET_SUV = 0.0
PAD_LABEL = 0


@dataclass(frozen=True)
class CropBox:
    """A crop box in voxels (x, y, z) and how it was derived; `size_voxels` is None for modes none and
    fixed-mm (whose `size_mm` gives the voxels at each patient's spacing: :meth:`voxels_at`)."""

    mode: str
    size_voxels: tuple[int, int, int] | None
    padding: float = 0.0
    reference_spacing_mm: tuple[float, float, float] | None = None
    max_extent_mm: tuple[float, float, float] | None = None
    derived_from_cases: int = 0
    size_mm: tuple[float, float, float] | None = None

    def voxels_at(self, spacing_mm: Sequence[float]) -> tuple[int, int, int] | None:
        """The box in voxels for an image of this spacing (x, y, z); None: no crop. A box in mm rounds down,
        so that after resampling to the reference spacing it never exceeds the voxels it was sized for."""
        if self.size_mm is None:
            return self.size_voxels
        return tuple(  # type: ignore[return-value]
            max(1, math.floor(size / float(s) + 1e-6))
            for size, s in zip(self.size_mm, spacing_mm, strict=True)
        )

    def to_json(self) -> dict:
        """The dataset.json entry: enough to crop a new patient the same way at inference."""
        record = asdict(self)
        record["centre"] = "GTV centre of mass (nearest voxel); box start = centre - size // 2"
        record["pad_values"] = {"CT": PAD_CT_HU, "PET": PAD_PET_SUV, "label": PAD_LABEL}
        record["axes"] = "x, y, z = SimpleITK index order (columns, rows, slices)"
        if self.mode == "auto":
            record["derivation"] = (
                f"max over {self.derived_from_cases} train+val patients of the per-axis distance from "
                f"the GTV centre to the furthest voxel of GTV ∪ relapse, + {self.padding:.0%} padding"
            )
        elif self.mode == "fixed":
            record["derivation"] = "fixed box of the paper (160 x 224 x 128 voxels)"
        elif self.mode == "fixed-mm":
            record["derivation"] = (
                "the paper's box in mm (160 x 224 x 128 voxels at 0.9765 x 0.9765 x 2.0 mm), "
                "floor(mm / spacing) voxels at each patient's spacing"
            )
        else:
            record["derivation"] = "no crop"
        for key in ("size_voxels", "reference_spacing_mm", "max_extent_mm", "size_mm"):
            if record[key] is not None:
                record[key] = list(record[key])
        return record

    @classmethod
    def from_json(cls, record: dict) -> CropBox:
        def _tuple(value):
            return None if value is None else tuple(value)

        return cls(
            mode=record["mode"],
            size_voxels=_tuple(record.get("size_voxels")),
            padding=float(record.get("padding", 0.0)),
            reference_spacing_mm=_tuple(record.get("reference_spacing_mm")),
            max_extent_mm=_tuple(record.get("max_extent_mm")),
            derived_from_cases=int(record.get("derived_from_cases", 0)),
            size_mm=_tuple(record.get("size_mm")),
        )


def fixed_box(size_voxels: Sequence[int] = PAPER_BOX_VOXELS) -> CropBox:
    if len(size_voxels) != 3 or any(int(s) <= 0 for s in size_voxels):
        raise ValueError(f"a box needs three positive sizes (x, y, z), got {tuple(size_voxels)}")
    return CropBox(mode="fixed", size_voxels=tuple(int(s) for s in size_voxels))  # type: ignore[arg-type]


def fixed_mm_box(size_mm: Sequence[float] = PAPER_BOX_MM) -> CropBox:
    if len(size_mm) != 3 or any(float(s) <= 0 for s in size_mm):
        raise ValueError(f"a box needs three positive sizes in mm (x, y, z), got {tuple(size_mm)}")
    size = tuple(round(float(s), 4) for s in size_mm)
    return CropBox(mode="fixed-mm", size_voxels=None, size_mm=size)  # type: ignore[arg-type]


def no_box() -> CropBox:
    return CropBox(mode="none", size_voxels=None)


def derive_auto_box(
    extents_mm: Sequence[Sequence[float]],
    spacings_mm: Sequence[Sequence[float]],
    padding: float = AUTO_PADDING,
) -> CropBox:
    """The auto box from the train+val patients' per-axis extents (mm) around their GTV centres.

    Half-size in voxels = ceil(max extent x (1 + padding) / spacing) + 1 at the median CT spacing of
    those patients, size = 2 x half, so that a box starting at centre - size // 2 covers the furthest
    voxel on both sides (the + 1 covers the even box's one-voxel asymmetry).
    """
    if len(extents_mm) == 0:
        raise ValueError("the auto crop needs at least one training/validation patient")
    if len(extents_mm) != len(spacings_mm):
        raise ValueError("one spacing per patient extent is needed")
    max_extent = np.max(np.asarray(extents_mm, dtype=float), axis=0)
    spacing = np.median(np.asarray(spacings_mm, dtype=float), axis=0)
    half = [math.ceil(e * (1.0 + padding) / s - 1e-9) + 1 for e, s in zip(max_extent, spacing, strict=True)]
    return CropBox(
        mode="auto",
        size_voxels=tuple(2 * h for h in half),  # type: ignore[arg-type]
        padding=padding,
        reference_spacing_mm=tuple(round(float(s), 6) for s in spacing),  # type: ignore[arg-type]
        max_extent_mm=tuple(round(float(e), 4) for e in max_extent),  # type: ignore[arg-type]
        derived_from_cases=len(extents_mm),
    )
