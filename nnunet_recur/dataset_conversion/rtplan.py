"""One RT Plan file -> its prescriptions, fractions and beams (what a dose needs to be interpreted).

The plan is read for three facts only: the prescription levels (TargetPrescriptionDose of the TARGET
items of DoseReferenceSequence, in Gy), the number of fractions planned (to turn a FRACTION dose into the
plan's dose) and the beam numbers (to check that a set of BEAM doses is complete). Many planning systems
leave TargetPrescriptionDose empty: then `prescriptions_gy` is empty and the caller asks the user (`--rx`).

Research tool, not a medical device.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from nnunet_recur.dataset_conversion.errors import DOSE_INVALID, ConversionError

RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"


class RTPlanError(ConversionError):
    """A refused RT Plan file; the message is one line: ``<file>: <problem>``."""

    def __init__(self, message: str, path: str | Path, cause: str = DOSE_INVALID):
        super().__init__(cause, message, str(path))


@dataclass(frozen=True)
class FractionGroup:
    number: int | None
    fractions_planned: int | None
    beam_numbers: tuple[int, ...]


@dataclass(frozen=True)
class RTPlan:
    path: Path
    sop_instance_uid: str
    frame_of_reference_uid: str | None
    prescriptions_gy: tuple[float, ...]  # distinct TARGET prescriptions, descending; () when none recorded
    fraction_groups: tuple[FractionGroup, ...]
    beam_numbers: tuple[int, ...]  # every beam of BeamSequence / IonBeamSequence
    label: str = ""

    @property
    def number_of_fractions_planned(self) -> int | None:
        """Fractions of the first fraction group (the plan's, for the usual one-group plan)."""
        return self.fraction_groups[0].fractions_planned if self.fraction_groups else None

    def fraction_group(self, number: int | None) -> FractionGroup | None:
        for group in self.fraction_groups:
            if number is None or group.number == number:
                return group
        return None


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_rtplan(path: str | Path) -> RTPlan:
    """Read one RT Plan; raise `RTPlanError` with a one-line reason when it is not a readable plan."""
    import pydicom

    # Read as rtstruct.py reads, alike in shape only: a plan needs no pixels (stop_before_pixels, no force)
    # and its failure is an RTPlanError with the plan's own message.
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise RTPlanError(f"not a readable DICOM file ({type(exc).__name__})", path) from None
    if str(ds.get("Modality", "")) not in ("RTPLAN", "RTIONPLAN") and str(ds.get("SOPClassUID", "")) not in (
        RT_PLAN_STORAGE,
        ION_PLAN_STORAGE,
    ):
        raise RTPlanError(f"not an RT Plan (Modality {ds.get('Modality', '')!r})", path)
    sop = str(ds.get("SOPInstanceUID", "") or "")
    if not sop:
        raise RTPlanError("missing SOPInstanceUID (header truncated?)", path)

    prescriptions = set()
    for item in ds.get("DoseReferenceSequence") or []:
        if str(item.get("DoseReferenceType", "")).upper() != "TARGET":
            continue
        raw = item.get("TargetPrescriptionDose")
        if raw in (None, ""):
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise RTPlanError(f"unreadable TargetPrescriptionDose {str(raw)[:40]!r}", path) from None
        if not math.isfinite(value) or value <= 0:
            raise RTPlanError(f"TargetPrescriptionDose {value:g} Gy (must be a finite dose > 0)", path)
        prescriptions.add(round(value, 4))

    groups = []
    for group in ds.get("FractionGroupSequence") or []:
        referenced = group.get("ReferencedBeamSequence") or []
        numbers = (_int_or_none(b.get("ReferencedBeamNumber")) for b in referenced)
        beams = tuple(n for n in numbers if n is not None)
        fractions = _int_or_none(group.get("NumberOfFractionsPlanned"))
        if fractions is not None and fractions <= 0:
            raise RTPlanError(f"NumberOfFractionsPlanned {fractions} (must be > 0)", path)
        groups.append(FractionGroup(_int_or_none(group.get("FractionGroupNumber")), fractions, beams))
    beam_items = list(ds.get("BeamSequence") or []) + list(ds.get("IonBeamSequence") or [])
    beam_numbers = tuple(n for n in (_int_or_none(b.get("BeamNumber")) for b in beam_items) if n is not None)
    frame = ds.get("FrameOfReferenceUID")
    return RTPlan(
        path=path,
        sop_instance_uid=sop,
        frame_of_reference_uid=str(frame) if frame else None,
        prescriptions_gy=tuple(sorted(prescriptions, reverse=True)),
        fraction_groups=tuple(groups),
        beam_numbers=beam_numbers,
        label=str(ds.get("RTPlanLabel", "") or ""),
    )
