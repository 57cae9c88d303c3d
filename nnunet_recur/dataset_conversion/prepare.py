"""From one patient's loaded volumes to a case on the CT grid, and from that case to the cropped files.

`assemble_case` is shared by the HECKTOR and in-house converters: masks onto the CT grid (nearest
neighbour), CT and PET cut to their common axial range (paper II.A), PET resampled onto the CT grid
(SimpleITK linear, as the paper), the GTV/relapse range checks. `crop_case` applies the dataset's box
and returns the images the nnU-Net writer stores, all with the cropped CT's exact geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion import geometry
from nnunet_recur.dataset_conversion.coverage import check_mask_coverage
from nnunet_recur.dataset_conversion.crop import PAD_CT_HU, PAD_LABEL, PAD_PET_SUV, CropBox
from nnunet_recur.dataset_conversion.errors import (
    GTV_MISSING,
    GTV_OUTSIDE_PET,
    RELAPSE_MISSING,
    RELAPSE_OUTSIDE_IMAGE,
    ConversionError,
)
from nnunet_recur.dataset_conversion.nnunet_writer import ct_for_writing
from nnunet_recur.dataset_conversion.quality import check_ct_slices, check_in_plane_spacing, voxel_count


@dataclass
class PreparedCase:
    """One patient on the CT grid (after the axial cut): everything the crop and the writer need.

    `label` is what nnU-Net learns (relapse 0/1, or HECKTOR GTVp/GTVn 0/1/2); `gtv` centres the crop
    and is also written as an auxiliary mask; `brain` may be None (HECKTOR).
    `planning_ct` is the CT as read, before the axial cut, and `planning_series` its DICOM series (None for
    NIfTI): `recur predict` puts the prediction back on that full grid and references those slices.
    Neither is staged between the converter's passes.
    """

    ct: sitk.Image
    pet: sitk.Image
    label: sitk.Image
    gtv: sitk.Image
    brain: sitk.Image | None = None
    notes: list[str] = field(default_factory=list)
    series: dict[str, str] = field(default_factory=dict)  # chosen DICOM series ("ct", "pet") for cases.csv
    planning_ct: sitk.Image | None = None
    planning_series: object | None = None


@dataclass(frozen=True)
class CaseMeasurement:
    """What the auto crop needs from a case: the GTV centre and the extent of GTV ∪ label around it."""

    centre_index: tuple[int, int, int]
    extent_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]

    def to_json(self) -> dict:
        return {
            "centre_index": list(self.centre_index),
            "extent_mm": list(self.extent_mm),
            "spacing_mm": list(self.spacing_mm),
        }

    @classmethod
    def from_json(cls, record: dict) -> CaseMeasurement:
        return cls(
            tuple(int(v) for v in record["centre_index"]),  # type: ignore[arg-type]
            tuple(float(v) for v in record["extent_mm"]),  # type: ignore[arg-type]
            tuple(float(v) for v in record["spacing_mm"]),  # type: ignore[arg-type]
        )


def binary_uint8(mask: sitk.Image) -> sitk.Image:
    """0/1 uint8 with the geometry of `mask`."""
    return sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)


def mask_on_grid(
    mask: sitk.Image, ct: sitk.Image, what: str, cause_if_lost: str, path: str | None
) -> sitk.Image:
    """`mask` on the CT grid (nearest neighbour when the grids differ); a non-empty mask that falls
    completely outside the CT is an exclusion (`cause_if_lost`)."""
    if geometry.same_grid(mask, ct):
        out = sitk.Cast(mask, sitk.sitkUInt8)
        out.CopyInformation(ct)
        return out
    had_voxels = voxel_count(mask) > 0
    out = geometry.resample_onto(mask, ct, interpolator="nearest", default_value=0, pixel_type=sitk.sitkUInt8)
    if had_voxels and voxel_count(out) == 0:
        raise ConversionError(cause_if_lost, f"{what} lies outside the CT image", path)
    check_mask_coverage(mask, ct, what, path)  # partly outside: contour_outside_ct beyond a small fraction
    return out


def assemble_case(
    ct: sitk.Image,
    pet: sitk.Image,
    label: sitk.Image,
    gtv: sitk.Image,
    brain: sitk.Image | None = None,
    *,
    label_what: str = "relapse",
    source: str | None = None,
    require_label: bool = True,
) -> PreparedCase:
    """Check and align one patient's volumes; raise ConversionError with the exclusion cause.

    `label` and `gtv` may be on any grid; the result lives on the CT grid cut to the PET's axial range.
    """
    check_in_plane_spacing(ct, "CT", source)
    check_ct_slices(ct, source)
    label_cause = RELAPSE_MISSING if label_what == "relapse" else GTV_MISSING
    outside_cause = RELAPSE_OUTSIDE_IMAGE if label_what == "relapse" else GTV_MISSING
    gtv = mask_on_grid(gtv, ct, "GTV", GTV_MISSING, source)
    if voxel_count(gtv) == 0:
        raise ConversionError(GTV_MISSING, "GTV is empty", source)
    if require_label and voxel_count(label) == 0:
        raise ConversionError(label_cause, f"{label_what} is empty", source)
    label_on_ct = mask_on_grid(label, ct, label_what, outside_cause, source)
    if brain is not None:
        brain = binary_uint8(
            brain
            if geometry.same_grid(brain, ct)
            else geometry.resample_onto(brain, ct, interpolator="nearest", pixel_type=sitk.sitkUInt8)
        )
        brain.CopyInformation(ct)

    notes: list[str] = []
    overlap = geometry.axial_overlap(ct, pet)
    if overlap.empty:
        raise ConversionError(GTV_OUTSIDE_PET, "PET and CT do not overlap axially", source)
    gtv_z = _occupied_slices(gtv)
    if gtv_z.min() < overlap.first or gtv_z.max() >= overlap.stop:
        raise ConversionError(
            GTV_OUTSIDE_PET,
            f"GTV reaches CT slices {gtv_z.min()}-{gtv_z.max()} but the PET covers only slices "
            f"{overlap.first}-{overlap.stop - 1}",
            source,
        )
    if overlap.removed:
        label_z = _occupied_slices(label_on_ct)
        inside = (label_z >= overlap.first) & (label_z < overlap.stop)
        if label_z.size and not inside.any():
            raise ConversionError(outside_cause, f"{label_what} lies outside the PET's axial range", source)
        before = voxel_count(label_on_ct)
        notes.append(
            f"CT cut to the PET's axial range: {overlap.removed} of {overlap.ct_slices} slices removed"
        )
        ct, gtv, label_on_ct = (
            geometry.take_slices(im, overlap.first, overlap.stop) for im in (ct, gtv, label_on_ct)
        )
        if brain is not None:
            brain = geometry.take_slices(brain, overlap.first, overlap.stop)
        lost = before - voxel_count(label_on_ct)
        if lost:
            notes.append(f"{lost} of {before} {label_what} voxels outside the PET's axial range were dropped")
    pet_on_ct = geometry.resample_onto(
        pet, ct, interpolator="linear", default_value=PAD_PET_SUV, pixel_type=sitk.sitkFloat32
    )
    return PreparedCase(ct=ct, pet=pet_on_ct, label=label_on_ct, gtv=gtv, brain=brain, notes=notes)


def _occupied_slices(mask: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(mask)
    return np.nonzero(array.reshape(array.shape[0], -1).any(axis=1))[0]


def measure_case(case: PreparedCase) -> CaseMeasurement:
    """GTV centre (voxel index) and per-axis extent (mm) of GTV ∪ label around it."""
    centre = geometry.mask_centre_index(case.gtv)
    union = sitk.Or(sitk.NotEqual(case.gtv, 0), sitk.NotEqual(case.label, 0))
    extent = geometry.max_extent_from_centre_mm(union, centre)
    return CaseMeasurement(centre, extent, tuple(float(s) for s in case.ct.GetSpacing()))  # type: ignore[arg-type]


def patient_pet_statistics(pet: sitk.Image) -> tuple[float, float]:
    """Mean and standard deviation of the whole stored PET (on the CT grid, before the crop).

    The paper z-scores PET "on a patient level"; the authors' code normalises the whole stored PET before it
    crops. The standard deviation is floored at 1e-8, as nnU-Net's ZScoreNormalization does.
    """
    values = sitk.GetArrayViewFromImage(pet)
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise ValueError("PET holds non-finite values")
    return mean, max(std, 1e-8)


def crop_case(case: PreparedCase, box: CropBox, centre_index: tuple[int, int, int]) -> dict[str, sitk.Image]:
    """The files of one case for the nnU-Net writer (keys ct, pet, pet_zscore, label, mask_gtv[, mask_brain]).

    CT HU (int16 when integral), PET SUV float32, PET z-scored over the whole stored PET before the crop
    (``pet_zscore``, float32: the network's PET input, see docs/trainers.md), label and masks uint8; all carry
    the cropped CT's exact spacing/origin/direction.
    """
    mean, std = patient_pet_statistics(case.pet)
    pet_zscore = sitk.ShiftScale(sitk.Cast(case.pet, sitk.sitkFloat32), -mean, 1.0 / std)
    images = {
        "ct": case.ct,
        "pet": case.pet,
        "pet_zscore": pet_zscore,
        "label": case.label,
        "mask_gtv": case.gtv,
    }
    if case.brain is not None:
        images["mask_brain"] = case.brain
    pads = {"ct": PAD_CT_HU, "pet": PAD_PET_SUV, "pet_zscore": (PAD_PET_SUV - mean) / std}
    size = box.voxels_at(case.ct.GetSpacing())
    if size is not None:
        start = geometry.box_start(centre_index, size)
        images = {
            key: geometry.crop_box(image, start, size, pads.get(key, PAD_LABEL))
            for key, image in images.items()
        }
    ct = ct_for_writing(images["ct"])
    out = {"ct": ct}
    out["pet"] = geometry.with_geometry_of(sitk.Cast(images["pet"], sitk.sitkFloat32), ct)
    out["pet_zscore"] = geometry.with_geometry_of(sitk.Cast(images["pet_zscore"], sitk.sitkFloat32), ct)
    for key in ("label", "mask_gtv", "mask_brain"):
        if key in images:
            out[key] = geometry.with_geometry_of(sitk.Cast(images[key], sitk.sitkUInt8), ct)
    return out


# -- staging between the two passes (uncompressed NIfTI: fast to write and read back) -----------------
_STAGED = ("ct", "pet", "label", "gtv", "brain")


def _geometry(image: sitk.Image) -> dict:
    return {
        "origin": list(image.GetOrigin()),
        "spacing": list(image.GetSpacing()),
        "direction": list(image.GetDirection()),
    }


def stage_case(case: PreparedCase, folder: Path) -> None:
    """Stage the case uncompressed; its geometry goes to geometry.json in float64 as well, because the
    NIfTI header holds origin and spacing in float32 and a rerun that prepares the case afresh must
    write the same bytes as one that reads the staging back (origins differed by up to 7.6e-6 mm)."""
    from nnunet_recur.dataset_conversion.nifti_io import verify_written_nifti

    folder.mkdir(parents=True, exist_ok=True)
    geometry_record = {}
    for name in _STAGED:
        image = getattr(case, name)
        if image is not None:
            path = folder / f"{name}.nii"
            sitk.WriteImage(image, str(path), useCompression=False)
            verify_written_nifti(path)
            geometry_record[name] = _geometry(image)
    (folder / "geometry.json").write_text(json.dumps(geometry_record))
    (folder / "notes.json").write_text(json.dumps(case.notes))


def load_staged(folder: Path) -> PreparedCase | None:
    """The staged case, or None when staging is incomplete (then the caller prepares it again)."""
    if not (folder / "notes.json").is_file() or not (folder / "geometry.json").is_file():
        return None
    try:
        geometry_record = json.loads((folder / "geometry.json").read_text())
        json.loads((folder / "notes.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    images = {}
    for name in _STAGED:
        path = folder / f"{name}.nii"
        images[name] = sitk.ReadImage(str(path)) if path.is_file() and name in geometry_record else None
        if images[name] is not None:
            stored = geometry_record[name]
            images[name].SetOrigin(stored["origin"])
            images[name].SetSpacing(stored["spacing"])
            images[name].SetDirection(stored["direction"])
    if any(images[n] is None for n in ("ct", "pet", "label", "gtv")):
        return None
    return PreparedCase(notes=json.loads((folder / "notes.json").read_text()), **images)
