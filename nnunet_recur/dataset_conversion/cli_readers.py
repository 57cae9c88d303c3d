"""`recur convert pet` and `recur convert rtstruct`: the single-series readers as commands.

Thin typer wrappers: they parse arguments, call the readers, write NIfTI atomically (temp name in the
same folder, then os.replace) and print what was odd. dataset_conversion/cli.py registers them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nnunet_recur.atomic_io import atomic_path
from nnunet_recur.exit_status import BAD_INPUT


def write_image_atomic(image, path: Path) -> None:
    """Write a SimpleITK image to `path` via a temporary file in the same folder (never half-written)."""
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _fail(exc: Exception) -> None:
    cause = getattr(exc, "cause", None)
    prefix = f"error [{cause}]" if cause else "error"
    typer.secho(f"{prefix}: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(BAD_INPUT)


def pet(
    series_dir: Path = typer.Argument(
        ...,
        help="Folder holding one PET DICOM series (any file names, any nesting).",
        show_default=False,
        metavar="PET_SERIES_DIR",
    ),
    # `rtstruct` below declares its --out alike in shape (a folder of masks there, one file here): typer
    # reads each command's options from its own signature.
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output NIfTI file (float32 SUVbw), e.g. pet_suv.nii.gz.", show_default=False
    ),
) -> None:
    """Convert a DICOM PET series into a body-weight SUV volume (float32 NIfTI).

    Supported: Units BQML (DecayCorrection START or ADMIN), GML (already SUV),
    Philips CNTS (private SUV scale factor).
    Anything else stops with an error naming the missing tag.

    Example: recur convert pet patient01/PET --out patient01_pet_suv.nii.gz
    """
    from nnunet_recur.dataset_conversion.dicom_series import image_series_in
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.suv import pet_series_to_suv, suv_factor

    try:
        series = image_series_in(series_dir, "PT")
        factor = suv_factor(series)
        image = pet_series_to_suv(series)
        write_image_atomic(image, out)
    except (ConversionError, OSError, RuntimeError) as exc:
        _fail(exc)
    size = "x".join(str(v) for v in image.GetSize())
    units = series.first.get("Units", "?")
    typer.echo(f"{out}: {size} voxels, SUV factor {factor:.6g} (Units {units}, {len(series)} slices)")


def rtstruct(
    rtstruct: Path = typer.Argument(
        ..., help="The RTSTRUCT DICOM file.", show_default=False, metavar="RTSTRUCT"
    ),
    reference: Path = typer.Option(
        ...,
        "--reference",
        "-r",
        help="Folder holding the image series (CT or PET) whose grid the masks are drawn on.",
        show_default=False,
        metavar="IMAGE_SERIES_DIR",
    ),
    # Alike in shape to `pet`'s --out above, on purpose (typer options live in each command's signature).
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder; one <sanitised ROI name>.nii.gz per ROI.", show_default=False
    ),
) -> None:
    """Rasterise every ROI of an RTSTRUCT onto a reference image grid (uint8 NIfTI masks).

    A voxel is inside when its centre is inside the contour (even-odd rule: inner contours are holes).
    Contours are matched to slices by z position; skipped contours and empty ROIs are listed.

    Example: recur convert rtstruct patient01/RS.dcm --reference patient01/CT --out patient01_masks
    """
    from nnunet_recur.dataset_conversion.dicom_series import image_series_in, read_image_series
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.rtstruct import rtstruct_to_masks, sanitise_roi_name

    try:
        series = image_series_in(reference)
        image = read_image_series(series)
        result = rtstruct_to_masks(rtstruct, image, frame_of_reference_uid=series.frame_of_reference_uid)
        names: dict[str, int] = {}
        written = []
        for roi_name, mask in result.masks.items():
            base = sanitise_roi_name(roi_name)
            names[base] = names.get(base, 0) + 1
            file_name = f"{base}.nii.gz" if names[base] == 1 else f"{base}_{names[base]}.nii.gz"
            write_image_atomic(mask, out / file_name)
            written.append(file_name)
    except (ConversionError, OSError, RuntimeError) as exc:
        _fail(exc)
    typer.echo(f"{out}: {len(written)} mask(s) on the {series.modality} grid: {', '.join(written)}")
    for warning in result.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)
    if result.empty_rois:
        typer.secho(f"empty ROIs (all-zero masks): {', '.join(result.empty_rois)}", fg=typer.colors.YELLOW)
