"""The same ROIs as a DICOM Segmentation (highdicom), and the continuous map as a FRACTIONAL PROBABILITY SEG.

A planning system imports the RTSTRUCT; PACS viewers (OHIF, 3D Slicer) and "dose painting by numbers" tools
read SEG. Frames reference the planning CT slices (one frame per slice that has a segmented voxel; empty
frames are left out, as highdicom does by default). The probability SEG stores 0..1 as 0..255 (8 bit), so it
is the map to within 1/510; probability.nii.gz keeps the float32 values.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT, RoiSpec

ALGORITHM_NAME = "nnunet-recur"
ALGORITHM_FAMILY_MEANING = "Artificial Intelligence"


def _algorithm(version: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=version[:64]
    )


def _series_attributes(series_number: int, description: str, label: str, software_version: str) -> dict:
    """What both SEG objects say about themselves: new UIDs, who made them, and the research statement."""
    from pydicom.uid import generate_uid

    return {
        "series_instance_uid": generate_uid(),
        "series_number": series_number,
        "sop_instance_uid": generate_uid(),
        "instance_number": 1,
        "manufacturer": "nnunet-recur",
        "manufacturer_model_name": "recur predict",
        "software_versions": software_version,
        "device_serial_number": "0",
        "content_description": f"{description}. {RESEARCH_STATEMENT}"[:64],
        "content_label": label,
    }


def _description(number: int, label: str, version: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(version),
    )


def _finish(seg, description: str) -> Dataset:
    seg.SeriesDescription = description[:64]
    return seg


def build_binary_seg(ct_headers: list[Dataset], rois: list[RoiSpec], software_version: str) -> Dataset:
    """A BINARY SEG with one segment per ROI (same order and names as the RTSTRUCT)."""
    import highdicom as hd

    pixels = np.stack([roi.mask.astype(np.uint8) for roi in rois], axis=-1)  # frames, rows, cols, segments
    seg = hd.seg.Segmentation(
        source_images=ct_headers,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _description(i, roi.name, software_version) for i, roi in enumerate(rois, start=1)
        ],
        **_series_attributes(9002, "recur relapse risk ROIs", "RECUR", software_version),
    )
    return _finish(seg, f"recur relapse ROIs - {RESEARCH_STATEMENT}")


def build_probability_seg(
    ct_headers: list[Dataset], probability: np.ndarray, software_version: str
) -> Dataset:
    """A FRACTIONAL SEG of type PROBABILITY holding the relapse probability (z, y, x on the planning CT)."""
    import highdicom as hd

    values = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
    seg = hd.seg.Segmentation(
        source_images=ct_headers,
        pixel_array=values,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        segment_descriptions=[_description(1, "Relapse probability", software_version)],
        **_series_attributes(9003, "recur relapse probability", "RECURPROB", software_version),
    )
    return _finish(seg, f"recur relapse probability - {RESEARCH_STATEMENT}")
