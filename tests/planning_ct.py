"""A synthetic DICOM patient's planning CT and its GTV, read the way `recur predict` gets them (the
converter's own readers), for the tests of the DICOM objects written on that CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.dicom_series import DicomSeries, read_image_series, scan_folder
from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct


def read_ct_and_gtv(patient: Path) -> tuple[DicomSeries, sitk.Image, np.ndarray]:
    """The CT series, its image and the union of its RTSTRUCT's GTV* ROIs as a (z, y, x) bool array."""
    found = scan_folder(patient)
    series = next(s for s in found if s.modality == "CT")
    ct = read_image_series(series)
    structure = read_rtstruct(next(s for s in found if s.modality == "RTSTRUCT").files[0])
    gtv = np.zeros(tuple(reversed(ct.GetSize())), bool)
    for roi in structure.rois:
        if roi.name.upper().startswith("GTV") and roi.contours:
            gtv |= sitk.GetArrayFromImage(rasterise_roi(roi.contours, ct)) > 0
    return series, ct, gtv
