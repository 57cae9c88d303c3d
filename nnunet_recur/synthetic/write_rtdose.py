"""RT Dose of a synthetic patient: the analytic planned dose on its own grid, written with pydicom.

Written independently of the converter's reader (a shared helper would make the round trip prove nothing).
One multi-frame file per dose, axial, DoseUnits GY, DoseType PHYSICAL, unsigned 16- or 32-bit pixels times
DoseGridScaling (the largest dose maps to 2^bits - 2, so the quantisation error is at most half a step:
<= 5.3e-4 Gy for uint16, <= 8e-9 Gy for uint32), FrameIncrementPointer -> GridFrameOffsetVector, the CT's
FrameOfReferenceUID, and ReferencedRTPlanSequence naming the plan.

Normally one PLAN dose with GridFrameOffsetVector relative (first element 0) or absolute (the frames' z).
The --defects dose quirks (``plan.DOSE_QUIRKS``) export what real systems also write:

- ``beam_doses``: one BEAM dose per beam of the plan (weights ``BEAM_WEIGHTS``), no PLAN dose;
- ``fraction_dose``: one FRACTION dose (the plan dose / 34);
- ``descending_nonuniform_offsets``: frames head-to-feet (offsets 0, -s, ...) with every third plane of the
  lower half left out, so the steps are s and 2 s.

SYNTHETIC: research tool, not a medical device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_recur.synthetic.plan import BEAM_WEIGHTS, FRACTIONS
from nnunet_recur.synthetic.write_dicom import SYNTHETIC_NOTE, _base, _ds, _Namer, _save
from nnunet_recur.synthetic.write_rtplan import RT_PLAN_STORAGE, beam_numbers

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"


def quantise(values: np.ndarray, bits: int) -> tuple[np.ndarray, str]:
    """(stored unsigned pixels, DoseGridScaling as a DS string) for doses in Gy."""
    top = float(values.max())
    scaling = _ds(top / (2**bits - 2)) if top > 0 else "1"
    stored = np.clip(np.rint(values / float(scaling)), 0, 2**bits - 1)
    return stored.astype(f"<u{bits // 8}"), scaling


def frame_indices(nz: int, quirk: str | None) -> list[int]:
    """The dose-grid planes that become frames, in file order."""
    if quirk != "descending_nonuniform_offsets":
        return list(range(nz))
    kept = [k for k in range(nz) if not (0 < k < nz // 2 and k % 3 == 0)]
    return kept[::-1]


def _write_one(patient, folder, namer, plan_uid, values, summation, quirk, tag, beam=None) -> Path:
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    plan = patient.plan
    grid = plan.grid
    frames = frame_indices(grid.size[2], quirk)
    z = grid.axis(2)[frames]
    ds = _base(patient, namer, RT_DOSE_STORAGE, namer.uid("rtdose", tag), "RTDOSE")
    ds.SeriesInstanceUID = namer.uid("rtdose-series")
    ds.SeriesNumber = 6
    ds.SeriesDescription = "RT DOSE (SYNTHETIC)"
    ds.InstanceNumber = 1 if beam is None else beam
    ds.FrameOfReferenceUID = namer.uid("frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.ImageComments = SYNTHETIC_NOTE
    ds.DoseComment = "SYNTHETIC analytic planned dose"
    ds.ImagePositionPatient = [_ds(grid.origin[0]), _ds(grid.origin[1]), _ds(z[0])]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(grid.spacing[1]), _ds(grid.spacing[0])]  # [row step (y), column step (x)]
    ds.SliceThickness = ""
    ds.Rows = grid.size[1]
    ds.Columns = grid.size[0]
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)
    absolute = plan.offsets_form == "absolute" and quirk is None
    ds.GridFrameOffsetVector = [_ds(v) for v in (z if absolute else z - z[0])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = plan.bits
    ds.BitsStored = plan.bits
    ds.HighBit = plan.bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation
    stored, scaling = quantise(values[frames], plan.bits)
    ds.DoseGridScaling = scaling
    ref = Dataset()
    ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
    ref.ReferencedSOPInstanceUID = plan_uid
    if summation in ("BEAM", "FRACTION"):
        group = Dataset()
        group.ReferencedFractionGroupNumber = 1
        if beam is not None:
            beam_ref = Dataset()
            beam_ref.ReferencedBeamNumber = beam
            group.ReferencedBeamSequence = [beam_ref]
        ref.ReferencedFractionGroupSequence = [group]
    ds.ReferencedRTPlanSequence = [ref]
    ds.PixelData = stored.tobytes()
    return _save(ds, folder, namer.file("rtdose", tag))


def write_rtdose(patient, folder: Path, namer: _Namer, plan_uid: str, quirk: str | None = None) -> list[Path]:
    """The patient's RT Dose file(s) in ``folder`` (one PLAN dose, or the quirk's files)."""
    dose = patient.plan.dose_on_grid
    if quirk == "beam_doses":
        return [
            _write_one(patient, folder, namer, plan_uid, dose * w, "BEAM", quirk, f"beam{n}", beam=n)
            for n, w in zip(beam_numbers(), BEAM_WEIGHTS, strict=True)
        ]
    if quirk == "fraction_dose":
        return [_write_one(patient, folder, namer, plan_uid, dose / FRACTIONS, "FRACTION", quirk, "fraction")]
    return [_write_one(patient, folder, namer, plan_uid, dose, "PLAN", quirk, "plan")]
