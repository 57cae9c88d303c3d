"""A prescription-only DICOM RT Plan: what the dose-painting RT Dose refers to.

An RT Dose with DoseSummationType PLAN must reference an RT Plan (ReferencedRTPlanSequence, Type 1C in the
RT Dose module). No treatment plan exists yet for a prescription, so this object carries only what a
prescription is: the RT General Plan module (geometry PATIENT, referencing the structure set the
prediction wrote) and the RT Prescription module (one TARGET dose reference per dose-painting region, with
its mean, minimum and maximum prescribed dose). No beams, no fractions: a planning system must not take it
for a deliverable plan, and its label, description and approval status (UNAPPROVED) say so.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT, RTSTRUCT_SOP_CLASS, rt_object_header

RTPLAN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.5"


def _ds(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def build_prescription_plan(
    ct_headers: list[Dataset],
    rtstruct_uid: str,
    *,
    mean_gy: float,
    min_gy: float,
    max_gy: float,
    region_roi_number: int | None,
    software_version: str,
) -> Dataset:
    """RT Plan holding only the prescription; `rtstruct_uid` is the SOP Instance UID of the RTSTRUCT whose
    ROI `region_roi_number` (if any) is the dose-painting region."""
    first = ct_headers[0]
    ds, date, time = rt_object_header(
        RTPLAN_SOP_CLASS,
        "RTPLAN",
        9005,
        f"recur prescription only - {RESEARCH_STATEMENT}",
        first,
        software_version,
    )
    # RT General Plan
    ds.RTPlanLabel = "RECUR_DP_RX"
    ds.RTPlanName = "dose painting prescription"
    ds.RTPlanDescription = (
        f"Prescription only (no beams, not deliverable): dose painting by numbers from predicted relapse "
        f"probability. {RESEARCH_STATEMENT}."
    )
    ds.RTPlanDate, ds.RTPlanTime = date, time
    ds.RTPlanGeometry = "PATIENT"
    structure_ref = Dataset()
    structure_ref.ReferencedSOPClassUID = RTSTRUCT_SOP_CLASS
    structure_ref.ReferencedSOPInstanceUID = rtstruct_uid
    ds.ReferencedStructureSetSequence = Sequence([structure_ref])
    # RT Prescription
    ds.PrescriptionDescription = f"Dose painting by numbers. {RESEARCH_STATEMENT}"[:1024]
    reference = Dataset()
    reference.DoseReferenceNumber = 1
    reference.DoseReferenceUID = generate_uid()
    reference.DoseReferenceStructureType = "VOLUME" if region_roi_number is not None else "SITE"
    if region_roi_number is not None:
        reference.ReferencedROINumber = region_roi_number
    reference.DoseReferenceDescription = "dose painting region"
    reference.DoseReferenceType = "TARGET"
    reference.TargetPrescriptionDose = _ds(mean_gy)
    reference.TargetMinimumDose = _ds(min_gy)
    reference.TargetMaximumDose = _ds(max_gy)
    ds.DoseReferenceSequence = Sequence([reference])
    # Approval
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def plan_reference(plan: Dataset) -> Sequence:
    """ReferencedRTPlanSequence for an RT Dose that belongs to `plan`."""
    item = Dataset()
    item.ReferencedSOPClassUID = RTPLAN_SOP_CLASS
    item.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    return Sequence([item])
