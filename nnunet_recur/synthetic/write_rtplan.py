"""RT Plan of a synthetic patient: prescriptions, 34 fractions and five photon beams, written with pydicom.

Only what a dose analysis reads is meaningful (DoseReferenceSequence with TARGET items carrying
TargetPrescriptionDose in Gy, FractionGroupSequence with NumberOfFractionsPlanned and the referenced
beams); the beams carry the type-1 attributes of the RT Beams module with a minimal two-point control
sequence. SYNTHETIC: research tool, not a medical device, and not a deliverable plan.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_recur.synthetic.plan import BEAM_WEIGHTS, FRACTIONS, PRESCRIPTIONS_GY
from nnunet_recur.synthetic.write_dicom import SYNTHETIC_NOTE, _base, _ds, _Namer, _save

RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
GANTRY_ANGLES = (0.0, 72.0, 144.0, 216.0, 288.0)
TARGET_NAMES = ("PTV68", "PTV60", "PTV50")


def beam_numbers() -> tuple[int, ...]:
    return tuple(range(1, len(BEAM_WEIGHTS) + 1))


def _beam(number: int, gantry: float, weight: float):
    from pydicom.dataset import Dataset

    beam = Dataset()
    beam.BeamNumber = number
    beam.BeamName = f"B{number}"
    # DICOM attributes set one per line; alike in shape only to other headers (tests/test_suv.py).
    beam.BeamType = "DYNAMIC"
    beam.RadiationType = "PHOTON"
    beam.TreatmentMachineName = "SYNTH_LINAC"
    beam.PrimaryDosimeterUnit = "MU"
    beam.SourceAxisDistance = "1000"
    beam.TreatmentDeliveryType = "TREATMENT"
    beam.NumberOfWedges = 0
    beam.NumberOfCompensators = 0
    beam.NumberOfBoli = 0
    beam.NumberOfBlocks = 0
    beam.FinalCumulativeMetersetWeight = "1"
    points = []
    for index, cumulative in enumerate((0.0, 1.0)):
        cp = Dataset()
        cp.ControlPointIndex = index
        cp.CumulativeMetersetWeight = _ds(cumulative)
        if index == 0:
            cp.NominalBeamEnergy = "6"
            cp.GantryAngle = _ds(gantry)
            cp.GantryRotationDirection = "NONE"
            cp.BeamLimitingDeviceAngle = "0"
            cp.PatientSupportAngle = "0"
        points.append(cp)
    beam.NumberOfControlPoints = len(points)
    beam.ControlPointSequence = points
    beam.BeamDescription = f"{weight:.0%} of the plan dose"
    return beam


def write_rtplan(patient, folder: Path, namer: _Namer) -> tuple[Path, str]:
    """The patient's RT Plan in ``folder``; returns (path, SOPInstanceUID)."""
    from pydicom.dataset import Dataset

    sop = namer.uid("rtplan")
    ds = _base(patient, namer, RT_PLAN_STORAGE, sop, "RTPLAN")
    ds.SeriesInstanceUID = namer.uid("rtplan-series")
    ds.SeriesNumber = 5
    ds.SeriesDescription = "RT PLAN (SYNTHETIC)"
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = namer.uid("frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = "HN 68/60/50"
    ds.RTPlanName = "SYNTHETIC HN SIB"
    ds.RTPlanDate = patient.dose.study_date
    ds.RTPlanTime = "120000"
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = "UNAPPROVED"
    ds.PlanIntent = "CURATIVE"
    ds.RTPlanDescription = SYNTHETIC_NOTE
    structure = Dataset()
    structure.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
    structure.ReferencedSOPInstanceUID = namer.uid("rtstruct")
    ds.ReferencedStructureSetSequence = [structure]

    references = []
    for number, (name, dose_gy) in enumerate(zip(TARGET_NAMES, PRESCRIPTIONS_GY, strict=True), start=1):
        item = Dataset()
        item.DoseReferenceNumber = number
        item.DoseReferenceUID = namer.uid("dose-reference", number)
        item.DoseReferenceStructureType = "SITE"
        item.DoseReferenceDescription = name
        item.DoseReferenceType = "TARGET"
        item.TargetPrescriptionDose = _ds(dose_gy)
        references.append(item)
    ds.DoseReferenceSequence = references

    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = FRACTIONS
    group.NumberOfBeams = len(BEAM_WEIGHTS)
    group.NumberOfBrachyApplicationSetups = 0
    beam_refs = []
    for number, weight in zip(beam_numbers(), BEAM_WEIGHTS, strict=True):
        ref = Dataset()
        ref.ReferencedBeamNumber = number
        ref.BeamDose = _ds(PRESCRIPTIONS_GY[0] / FRACTIONS * weight)  # per fraction at the 68 Gy target
        ref.BeamMeterset = _ds(round(250 * weight, 1))
        beam_refs.append(ref)
    group.ReferencedBeamSequence = beam_refs
    ds.FractionGroupSequence = [group]
    ds.BeamSequence = [
        _beam(n, a, w) for n, a, w in zip(beam_numbers(), GANTRY_ANGLES, BEAM_WEIGHTS, strict=True)
    ]
    return _save(ds, folder, namer.file("rtplan")), sop
