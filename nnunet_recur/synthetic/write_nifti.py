"""NIfTI writers of the synthetic cohort: in-house NIfTI patients, the HECKTOR layout, ground truth.

SimpleITK writes the files (LPS origin, identity direction); every file goes to a temporary name in its
own folder first and is then renamed, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_recur.atomic_io import atomic_path, write_json_atomic


def write_image(image, path: Path) -> None:
    """Atomically write a SimpleITK image (gzip-compressed NIfTI)."""
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)


def write_json(data, path: Path) -> None:
    """Ground-truth JSON: indent 2, sorted keys (the layout the cohort's files always had)."""
    write_json_atomic(path, data, indent=2, sort_keys=True, allow_nan=True)


def union(*masks):
    """Voxel-wise union of uint8 masks on one grid, as uint8 0/1 (geometry kept)."""
    import SimpleITK as sitk

    arr = np.zeros(sitk.GetArrayViewFromImage(masks[0]).shape, dtype=bool)
    for m in masks:
        arr |= sitk.GetArrayViewFromImage(m) > 0
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(masks[0])
    return out


def with_uneven_spacing(image):
    """Same voxels, in-plane spacing x stretched by 20 % (the ``uneven_spacing`` defect)."""
    out = image.__class__(image)
    sx, sy, sz = image.GetSpacing()
    out.SetSpacing((round(sx * 1.2, 4), sy, sz))
    return out


def without_middle_slice(image):
    """The image with its middle axial slice removed, geometry otherwise unchanged (``missing_slice``)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(np.delete(arr, arr.shape[0] // 2, axis=0))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    return out


def truncate_file(path: Path, fraction: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (the ``pet_corrupt`` defect)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])


def _ct_grid_files(patient, defect, masks):
    """CT and CT-grid masks as the (possibly defective) export has them."""
    ct = patient.ct
    if defect == "uneven_spacing":
        return with_uneven_spacing(ct), [with_uneven_spacing(m) for m in masks]
    if defect == "missing_slice":
        return without_middle_slice(ct), masks
    return ct, masks


def write_inhouse_nifti(patient, folder: Path, defect: str | None = None) -> None:
    """``ct.nii.gz`` (HU int16), ``pet.nii.gz`` (SUV float32, PET grid), ``gtv``, ``relapse`` (.nii.gz),
    ``dose.nii.gz`` (planned dose in Gy, float32, on the plan's own dose grid) and ``plan.json``
    (prescriptions, fractions)."""
    folder = Path(folder)
    ct, (gtv, relapse) = _ct_grid_files(
        patient, defect, [union(patient.gtvp, patient.gtvn), union(patient.relapse)]
    )
    write_image(ct, folder / "ct.nii.gz")
    if defect != "pet_missing":
        write_image(patient.pet, folder / "pet.nii.gz")
        if defect == "pet_corrupt":
            truncate_file(folder / "pet.nii.gz")
    write_image(gtv, folder / "gtv.nii.gz")
    if defect != "relapse_missing":
        write_image(relapse, folder / "relapse.nii.gz")
    if patient.plan is not None:
        plan = patient.plan
        write_image(plan.grid.to_image(plan.dose_on_grid.astype(np.float32)), folder / "dose.nii.gz")
        info = plan.as_dict()
        write_json(
            {"prescriptions_gy": info["prescriptions_gy"], "fractions": info["fractions"], "synthetic": True},
            folder / "plan.json",
        )


def hecktor_label(patient):
    """HECKTOR label map on the CT grid: 0 background, 1 GTVp, 2 GTVn."""
    import SimpleITK as sitk

    gtvp = sitk.GetArrayViewFromImage(patient.gtvp) > 0
    gtvn = sitk.GetArrayViewFromImage(patient.gtvn) > 0
    arr = np.zeros(gtvp.shape, dtype=np.uint8)
    arr[gtvn] = 2
    arr[gtvp] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(patient.gtvp)
    return out


def write_hecktor_case(patient, out: Path, case: str, defect: str | None = None) -> None:
    """``imagesTr/<case>__CT.nii.gz``, ``imagesTr/<case>__PT.nii.gz`` (SUV), ``labelsTr/<case>.nii.gz``.

    Defects: ``relapse_missing`` means the label file is absent (HECKTOR has no relapse; its label is what
    goes missing); the others as in the in-house NIfTI layout.
    """
    out = Path(out)
    ct, (label,) = _ct_grid_files(patient, defect, [hecktor_label(patient)])
    write_image(ct, out / "imagesTr" / f"{case}__CT.nii.gz")
    if defect != "pet_missing":
        write_image(patient.pet, out / "imagesTr" / f"{case}__PT.nii.gz")
        if defect == "pet_corrupt":
            truncate_file(out / "imagesTr" / f"{case}__PT.nii.gz")
    if defect != "relapse_missing":
        write_image(label, out / "labelsTr" / f"{case}.nii.gz")


def write_ground_truth(patient, gt_dir: Path, name: str, extra: dict) -> None:
    """``<name>_relapse``, ``_gtv``, ``_brain`` (CT grid, uint8 0/1), then ``<name>.json`` (marks done)."""
    gt_dir = Path(gt_dir)
    write_image(union(patient.relapse), gt_dir / f"{name}_relapse.nii.gz")
    write_image(union(patient.gtvp, patient.gtvn), gt_dir / f"{name}_gtv.nii.gz")
    write_image(union(patient.brain), gt_dir / f"{name}_brain.nii.gz")
    info = dict(patient.info)
    info.update(extra)
    info["patient"] = name
    write_json(info, gt_dir / f"{name}.json")
