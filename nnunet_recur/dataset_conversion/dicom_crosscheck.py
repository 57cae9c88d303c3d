"""Cross-checks of a DICOM patient folder that catch a slice lost without a trace.

A file truncated before its Modality element (0008,0060) cannot be assigned to any series; when it was
the CT's top or bottom slice, the CT silently converts one slice short, and when it was a middle slice
the gap is reported under its neighbours' names. Two checks close that:

1. The structure set lists, in the ContourImageSequence of its referenced series, every CT slice the
   contours were drawn on. A listed SOP Instance UID that the chosen CT series does not hold is a
   `missing_slice`, named by its UID (and by the damaged files that may be it).
2. Every file that looks like DICOM (DICM preamble, or a parseable group 0008) but belongs to no series
   is listed by name. When it may belong to an image series (its SOP class is an image storage class,
   or unknown), the patient is excluded: `missing_slice` when the CT shows a gap it would fill,
   otherwise `unassigned_dicom_file`. A file recognisably of another kind (an RT plan, a dose, a
   structure set) is only noted.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_recur.dataset_conversion.errors import MISSING_SLICE, UNASSIGNED_DICOM_FILE, ConversionError

# SOP classes that are not image slices of a CT/PET volume: an orphan of these classes is only noted.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.481.8": "RT Ion Plan",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration",
    "1.2.840.10008.5.1.4.1.1.66.3": "Deformable Spatial Registration",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
}


def unassigned_files(found) -> list:
    """The UnreadableFile entries of a scan that belong to no series found in the folder (no Modality and
    no SeriesInstanceUID of a found series); symlinks and FIFOs are reported elsewhere."""
    series_uids = {s.series_instance_uid for s in found}
    return [
        u
        for u in found.unreadable
        if not u.not_a_file and u.modality is None and u.series_instance_uid not in series_uids
    ]


def _names(files, folder: Path) -> str:
    shown = []
    for u in files[:5]:
        try:
            shown.append(str(Path(u.path).relative_to(folder)))
        except ValueError:
            shown.append(str(u.path))
    return ", ".join(shown) + (f" and {len(files) - 5} more" if len(files) > 5 else "")


def check_referenced_slices(ct_series, structure_sets, orphans, folder: Path) -> list[str]:
    """missing_slice when a CT slice listed in an RTSTRUCT's ContourImageSequence is not in the CT.

    A list that names none of the CT's slices describes another series (a real IBSI structure set lists
    the PET's 267 slices under the CT's SeriesInstanceUID): it is noted, not trusted."""
    present = set(ct_series.sop_instance_uids)
    notes = []
    for structure in structure_sets:
        referenced = structure.referenced_images.get(ct_series.series_instance_uid, [])
        missing = [uid for uid in dict.fromkeys(referenced) if uid not in present]
        if not missing:
            continue
        if len(missing) == len(set(referenced)):
            notes.append(
                f"{structure.path.name}: its ContourImageSequence lists {len(missing)} slices of the CT "
                "series, none of them in the CT (references of another series?): not cross-checked"
            )
            continue
        maybe = [u for u in orphans if u.sop_instance_uid in (None, *missing)]
        hint = f"; damaged file(s) of no series that may be it: {_names(maybe, folder)}" if maybe else ""
        raise ConversionError(
            MISSING_SLICE,
            f"CT slice SOPInstanceUID {missing[0]} (referenced by the RTSTRUCT {structure.path.name}'s "
            f"ContourImageSequence) is not in the CT series; {len(missing)} of {len(set(referenced))} "
            f"referenced slice(s) missing{hint}",
            str(maybe[0].path if maybe else structure.path),
        )
    return notes


def may_be_image(orphan) -> bool:
    return orphan.sop_class_uid not in NON_IMAGE_SOP_CLASSES


def check_unassigned_files(found, ct_series, structure_sets, folder: Path) -> list[str]:
    """Run both checks (module docstring); returns the notes for the report on files that were only
    listed. Raises ConversionError when a file of no series may be an image slice."""
    orphans = unassigned_files(found)
    notes = check_referenced_slices(ct_series, structure_sets, orphans, folder)
    if not orphans:
        return notes
    images = [u for u in orphans if may_be_image(u)]
    if images:
        from nnunet_recur.dataset_conversion.dicom_series import series_geometry

        listing = _names(images, folder)
        try:
            series_geometry(ct_series)
        except ConversionError as exc:
            if exc.cause == MISSING_SLICE:
                raise ConversionError(
                    MISSING_SLICE,
                    f"damaged file {listing} (header ends before its Modality, so it belongs to no series) "
                    f"is probably the missing CT slice: {exc}",
                    str(images[0].path),
                ) from exc
        raise ConversionError(
            UNASSIGNED_DICOM_FILE,
            f"DICOM file(s) that belong to no series (header truncated before Modality/SeriesInstanceUID)"
            f" and may be an image slice: {listing}; the CT or PET may be a slice short: repair or remove "
            f"the file(s)",
            str(images[0].path),
        )
    kinds = ", ".join(sorted({NON_IMAGE_SOP_CLASSES[u.sop_class_uid] for u in orphans}))
    return notes + [f"damaged DICOM file(s) of no series ({kinds}), not used: {_names(orphans, folder)}"]
