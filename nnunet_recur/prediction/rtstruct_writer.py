"""Binary ROIs on the planning CT -> a DICOM RT Structure Set that a treatment planning system imports.

Contours run along the voxel *edges* (not the voxel centres): every boundary edge of the mask on a slice
is linked into closed loops, collinear corners dropped. Read back with the voxel-centre + even-odd rule
(this project's reader, dicompyler-core, most planning systems) this gives back the mask exactly, and the
contour area is the voxel area, so the planning system's volume is right. Islands are extra loops, holes
are inner loops (RTSTRUCT has no hole flag; even-odd readers see them as holes).

The points of a contour carry the z of its slice's ImagePositionPatient and the slice's SOP Instance UID
in its own ContourImageSequence; the patient and study identity and the FrameOfReferenceUID are copied
from the planning CT so the planning system files the structure set with that patient; series and
instance UIDs are new. Written independently of the synthetic generator's RTSTRUCT writer (the two check
each other in the tests).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # the value RTReferencedStudySequence customarily holds
RESEARCH_STATEMENT = "RESEARCH TOOL, NOT A MEDICAL DEVICE"
# Copied from the planning CT so that the planning system files the objects under the right patient/study.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


@dataclass
class RoiSpec:
    """One ROI to write: name (<= 64 characters), mask (z, y, x on the planning CT), colour, type."""

    name: str
    mask: np.ndarray
    color: tuple[int, int, int]
    interpreted_type: str = "CONTROL"
    description: str = ""


# -- tracing ---------------------------------------------------------------------------------------------
_RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}


def trace_pixel_edges(mask: np.ndarray) -> list[np.ndarray]:
    """Closed loops along the pixel edges of a 2-D mask (rows y, columns x).

    Returns (N, 2) arrays of corner coordinates (x, y): corner (c, r) is the upper-left corner of pixel
    (row r, column c), i.e. the point (c - 0.5, r - 0.5) in voxel-index units. Every boundary edge is used
    exactly once, so the even-odd fill of all loops is the mask.
    """
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1]
    starts, steps = [], []
    for neighbour, start_offset, step in (
        (p[:-2, 1:-1], (0, 0), (1, 0)),  # empty above: top edge, left to right
        (p[1:-1, 2:], (1, 0), (0, 1)),  # empty right: right edge, downwards
        (p[2:, 1:-1], (1, 1), (-1, 0)),  # empty below: bottom edge, right to left
        (p[1:-1, :-2], (0, 1), (0, -1)),  # empty left: left edge, upwards
    ):
        r, c = np.nonzero(inner & ~neighbour)
        starts.append(np.stack([c + start_offset[0], r + start_offset[1]], axis=1))
        steps.append(np.tile(step, (r.size, 1)))
    start = np.concatenate(starts)
    step = np.concatenate(steps)
    if start.size == 0:
        return []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for index, (x, y) in enumerate(start.tolist()):
        outgoing.setdefault((x, y), []).append(index)
    used = np.zeros(len(start), dtype=bool)
    step_list = [tuple(s) for s in step.tolist()]
    loops = []
    for first in range(len(start)):
        if used[first]:
            continue
        origin = tuple(start[first].tolist())
        points = [origin]
        edge = first
        while True:
            used[edge] = True
            direction = step_list[edge]
            vertex = (points[-1][0] + direction[0], points[-1][1] + direction[1])
            if vertex == origin:
                break
            points.append(vertex)
            free = [e for e in outgoing[vertex] if not used[e]]
            if len(free) > 1:  # two pixels touch only at this corner: keep hugging the current pixel
                turn = _RIGHT_TURN[direction]
                free = [e for e in free if step_list[e] == turn] or free
            edge = free[0]
        loops.append(_drop_collinear(np.asarray(points, dtype=float)))
    return loops


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    before = np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0)
    cross = (points[:, 0] - before[:, 0]) * (after[:, 1] - points[:, 1]) - (points[:, 1] - before[:, 1]) * (
        after[:, 0] - points[:, 0]
    )
    return points[cross != 0]


# -- writing ---------------------------------------------------------------------------------------------
def _ds(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def slice_contours(mask2d: np.ndarray, header: Dataset) -> list[list[str]]:
    """ContourData (DS strings) of each loop of one slice, in patient mm on the slice's plane."""
    position = np.asarray([float(v) for v in header.ImagePositionPatient])
    orientation = np.asarray([float(v) for v in header.ImageOrientationPatient])
    row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
    x_axis, y_axis = orientation[:3], orientation[3:]
    out = []
    for loop in trace_pixel_edges(mask2d):
        i = loop[:, 0] - 0.5
        j = loop[:, 1] - 0.5
        xyz = position + np.outer(i * column_spacing, x_axis) + np.outer(j * row_spacing, y_axis)
        out.append([_ds(v) for v in xyz.ravel()])
    return out


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def copy_patient_study(source: Dataset, target: Dataset) -> None:
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            setattr(target, keyword, source.data_element(keyword).value)
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyID",
        "AccessionNumber",
    ):
        if keyword not in target:
            setattr(target, keyword, "")  # type 2: present, may be empty
    for keyword in ("StudyDate", "StudyTime", "ReferringPhysicianName"):
        if keyword not in target:
            setattr(target, keyword, "")


def rt_object_header(
    sop_class: str,
    modality: str,
    series_number: int,
    series_description: str,
    ct: Dataset,
    software_version: str,
) -> tuple[Dataset, str, str]:
    """(dataset, date, time): file meta, SOP Common, the CT's patient and study, a new series (RT Series,
    General Equipment) and the CT's Frame of Reference module, shared by the RT objects we write."""
    date, time = _now()
    sop_instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    copy_patient_study(ct, ds)
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    ds.InstanceNumber = 1
    ds.Manufacturer = "nnunet-recur"
    ds.ManufacturerModelName = "recur predict"
    ds.SoftwareVersions = software_version
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = ct.FrameOfReferenceUID
    ds.PositionReferenceIndicator = ct.get("PositionReferenceIndicator", "")  # Type 2 (FoR module)
    return ds, date, time


def build_rtstruct(
    ct_headers: list[Dataset],
    rois: list[RoiSpec],
    *,
    software_version: str,
    algorithm_description: str,
    series_description: str = f"recur relapse risk - {RESEARCH_STATEMENT}",
) -> Dataset:
    """An RTSTRUCT dataset referencing the CT slices `ct_headers` (sorted like the mask's z axis)."""
    first = ct_headers[0]
    for roi in rois:
        if roi.mask.shape[0] != len(ct_headers):
            raise ValueError(f"ROI {roi.name}: {roi.mask.shape[0]} slices, the CT has {len(ct_headers)}")
        if len(roi.name) > 64:
            raise ValueError(f"ROI name {roi.name!r} is longer than 64 characters")
    ds, date, time = rt_object_header(
        RTSTRUCT_SOP_CLASS, "RTSTRUCT", 9001, series_description, first, software_version
    )
    ds.StructureSetLabel = "RECUR"
    ds.StructureSetName = "recur relapse risk"
    ds.StructureSetDescription = f"{RESEARCH_STATEMENT}. {algorithm_description}"[:1024]
    ds.StructureSetDate, ds.StructureSetTime = date, time
    ds.ApprovalStatus = "UNAPPROVED"

    slice_refs = []
    for header in ct_headers:
        item = Dataset()
        item.ReferencedSOPClassUID = header.SOPClassUID
        item.ReferencedSOPInstanceUID = header.SOPInstanceUID
        slice_refs.append(item)
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence(slice_refs)
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    structure_rois, contour_rois, observations = [], [], []
    for number, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        item.ROIName = roi.name
        if roi.description:
            item.ROIDescription = roi.description[:64]
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        item.ROIGenerationDescription = f"nnunet-recur {software_version}"[:64]
        structure_rois.append(item)

        contour_roi = Dataset()
        contour_roi.ROIDisplayColor = [int(v) for v in roi.color]
        contour_roi.ReferencedROINumber = number
        contours = []
        for k in np.nonzero(roi.mask.reshape(roi.mask.shape[0], -1).any(axis=1))[0]:
            header = ct_headers[int(k)]
            for data in slice_contours(roi.mask[k], header):
                contour = Dataset()
                image_ref = Dataset()
                image_ref.ReferencedSOPClassUID = header.SOPClassUID
                image_ref.ReferencedSOPInstanceUID = header.SOPInstanceUID
                contour.ContourImageSequence = Sequence([image_ref])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(data) // 3
                contour.ContourNumber = len(contours) + 1
                contour.ContourData = data
                contours.append(contour)
        if contours:
            contour_roi.ContourSequence = Sequence(contours)
        contour_rois.append(contour_roi)

        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.ROIObservationLabel = roi.name[:16]
        observation.RTROIInterpretedType = roi.interpreted_type
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(structure_rois)
    ds.ROIContourSequence = Sequence(contour_rois)
    ds.RTROIObservationsSequence = Sequence(observations)
    return ds
