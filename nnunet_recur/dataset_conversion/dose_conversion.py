"""The planned dose of one in-house patient: find it, check it, sum it, and write it beside the dataset.

Why a module of its own: the dose is no network input, so it travels beside the nnU-Net folders
(``doseTr|doseTs/<case>.nii.gz`` + ``<case>.json``), read by ``recur-eval dose-pattern``. The converter
calls two functions: `stage_dose` in pass 1 (find, check, sum; refusals exclude the patient with a cause)
and `write_case_dose` in pass 2 (resample onto the written case's CT grid, after the crop).

Choosing the dose (DICOM patient folder):

- every RT Dose must be in the CT's frame of reference, in GY, with a sane GridFrameOffsetVector and
  DoseGridScaling and no negative value (``rtdose.read_rtdose``);
- a PLAN dose is used when there is one; PLAN doses of two plans stop the patient naming both plan UIDs
  unless ``--dose-plan UID`` chooses;
- else BEAM doses of one plan are summed, and only when every beam of the plan's fraction group has its
  dose (the RT Plan must be there to tell);
- else a FRACTION dose is multiplied by the plan's NumberOfFractionsPlanned;
- the summed dose must cover the whole GTV;
- prescriptions come from the plan's TARGET dose references, or from ``--rx`` when the plan has none.

NIfTI patient folders may hold ``dose.nii.gz`` (Gy) and ``plan.json`` (``prescriptions_gy``).

Output: float32 Gy on the case's CT grid, linear interpolation; voxels outside the dose grid (beyond half
a step past its outer planes) are NaN = "not covered", never 0 Gy. Research tool, not a medical device.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.atomic_io import atomic_path, write_json_atomic
from nnunet_recur.dataset_conversion.errors import (
    DOSE_AMBIGUOUS,
    DOSE_INVALID,
    DOSE_MISSING,
    DOSE_NOT_COVERING_GTV,
    FRAME_OF_REFERENCE_MISMATCH,
    ConversionError,
)
from nnunet_recur.dataset_conversion.rtdose import RTDose, read_rtdose
from nnunet_recur.dataset_conversion.rtplan import RTPlan, read_rtplan

DOSE_FOLDER = "dose"  # doseTr / doseTs
STAGED_DOSE = "dose_grid.nii"
STAGED_RECORD = "dose.json"
GRID_MATCH_MM = 1e-3


@dataclass
class PlannedDose:
    """The dose chosen for a patient, on its own grid (Gy), and what the case's JSON records about it."""

    image: sitk.Image
    record: dict = field(default_factory=dict)


def parse_rx(text: str | None) -> tuple[float, ...] | None:
    """``--rx 68,60,50`` -> (68.0, 60.0, 50.0), descending; ValueError with the reason otherwise."""
    if text is None or not str(text).strip():
        return None
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--rx {text!r}: expected Gy values separated by commas, e.g. 68,60,50") from None
    if not values or any(not math.isfinite(v) or v <= 0 or v > 200 for v in values):
        raise ValueError(f"--rx {text!r}: every prescription must be a dose in Gy between 0 and 200")
    return tuple(sorted(set(values), reverse=True))


def _dicom_files(folder: Path):
    """(RT Dose paths, RT Plan paths, damaged files that look like either) of a patient folder."""
    from nnunet_recur.dataset_conversion.dicom_series import scan_folder

    series = scan_folder(folder)
    doses = [f for s in series.of_modality("RTDOSE") for f in s.files]
    plans = [f for m in ("RTPLAN", "RTIONPLAN") for s in series.of_modality(m) for f in s.files]
    damaged = [u for u in series.unreadable if u.modality in ("RTDOSE", "RTPLAN", "RTIONPLAN")]
    return doses, plans, damaged


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=GRID_MATCH_MM)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=GRID_MATCH_MM)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def _plan_group(doses: list[RTDose]) -> dict[str | None, list[RTDose]]:
    groups: dict[str | None, list[RTDose]] = {}
    for dose in doses:
        groups.setdefault(dose.referenced_plan_uid, []).append(dose)
    return groups


def _one_plan(doses: list[RTDose], kind: str, folder: Path) -> list[RTDose]:
    groups = _plan_group(doses)
    if len(groups) > 1:
        uids = ", ".join(sorted(str(u) for u in groups))
        raise ConversionError(
            DOSE_AMBIGUOUS,
            f"{kind} doses of {len(groups)} different plans ({uids}); choose one with --dose-plan UID",
            str(folder),
        )
    return doses


def choose_dose(
    doses: list[RTDose], plans: dict[str, RTPlan], folder: Path, dose_plan: str | None = None
) -> tuple[sitk.Image, str, list[RTDose], RTPlan | None]:
    """(dose image in Gy on its own grid, summation done, doses used, their plan) under the module's rules."""
    if dose_plan:
        chosen = [d for d in doses if d.referenced_plan_uid == dose_plan]
        doses = chosen or doses  # --dose-plan names one patient's plan; the others keep their only plan
    by_type: dict[str, list[RTDose]] = {}
    for dose in doses:
        by_type.setdefault(dose.dose_summation_type, []).append(dose)
    if "PLAN" in by_type:
        used = _one_plan(by_type["PLAN"], "PLAN", folder)
        if len({d.sop_instance_uid for d in used}) > 1:
            uids = ", ".join(d.sop_instance_uid for d in used)
            raise ConversionError(DOSE_AMBIGUOUS, f"several PLAN doses of one plan ({uids})", str(folder))
        dose = used[0]
        return dose.image, "PLAN", [dose], plans.get(dose.referenced_plan_uid or "")
    if "BEAM" in by_type:
        used = _one_plan(by_type["BEAM"], "BEAM", folder)
        first = used[0]
        plan = plans.get(first.referenced_plan_uid or "")
        if plan is None:
            raise _refusal(first, "BEAM dose without its RT Plan: cannot tell whether every beam is there")
        group = plan.fraction_group(first.referenced_fraction_group)
        expected = set(group.beam_numbers if group and group.beam_numbers else plan.beam_numbers)
        have: dict[int, RTDose] = {}
        for dose in used:
            for beam in dose.referenced_beam_numbers:
                have.setdefault(beam, dose)
        missing = sorted(expected - set(have))
        if missing or not expected:
            raise _refusal(
                first,
                f"BEAM doses for beams {sorted(have)} of plan {plan.sop_instance_uid}, which has beams "
                f"{sorted(expected)}: missing {missing or 'beam references'} "
                "(a BEAM dose lacks its siblings)",
            )
        for dose in used[1:]:
            if not _same_grid(dose.image, first.image):
                raise _refusal(dose, f"BEAM dose on another grid than {first.path.name}")
        total = sitk.GetArrayFromImage(first.image).astype(np.float64)
        for dose in used[1:]:
            total += sitk.GetArrayViewFromImage(dose.image)
        image = sitk.GetImageFromArray(total.astype(np.float32))
        image.CopyInformation(first.image)
        return image, f"BEAM (sum of {len(used)})", used, plan
    if "FRACTION" in by_type:
        used = _one_plan(by_type["FRACTION"], "FRACTION", folder)
        if len(used) > 1:
            raise _refusal(used[0], f"{len(used)} FRACTION doses of one plan (expected one)")
        dose = used[0]
        plan = plans.get(dose.referenced_plan_uid or "")
        group = plan.fraction_group(dose.referenced_fraction_group) if plan else None
        fractions = group.fractions_planned if group else None
        if not fractions:
            raise _refusal(dose, "FRACTION dose without an RT Plan giving NumberOfFractionsPlanned")
        return sitk.Multiply(dose.image, float(fractions)), f"FRACTION x {fractions}", [dose], plan
    kinds = ", ".join(sorted(by_type))
    raise _refusal(doses[0], f"DoseSummationType {kinds} (supported: PLAN, BEAM, FRACTION)")


def _refusal(dose: RTDose, message: str) -> ConversionError:
    """A refusal about one RT Dose file (one line naming it)."""
    return ConversionError(DOSE_INVALID, message, str(dose.path))


def _check_gtv_covered(dose: sitk.Image, gtv: sitk.Image, where: str) -> None:
    on_ct = sitk.Resample(dose, gtv, sitk.Transform(), sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(on_ct)[sitk.GetArrayViewFromImage(gtv) > 0]
    uncovered = int(np.count_nonzero(~np.isfinite(values)))
    if uncovered:
        raise ConversionError(
            DOSE_NOT_COVERING_GTV,
            f"the dose grid leaves {uncovered} of {values.size} GTV voxels uncovered",
            where,
        )


def _prescriptions(plan: RTPlan | None, rx: tuple[float, ...] | None) -> tuple[list[float], str | None]:
    if plan is not None and plan.prescriptions_gy:
        return list(plan.prescriptions_gy), "RTPLAN"
    if rx:
        return list(rx), "--rx"
    return [], None


def find_dicom_dose(folder: Path, ct_frame: str | None, options) -> PlannedDose | None:
    """The planned dose of a DICOM patient folder, or None when it has no RT Dose."""
    dose_paths, plan_paths, damaged = _dicom_files(folder)
    if damaged:
        bad = damaged[0]
        raise ConversionError(DOSE_INVALID, f"{bad.modality} file unreadable: {bad.reason}", str(bad.path))
    if not dose_paths:
        return None
    doses = [read_rtdose(p) for p in dose_paths]
    for dose in doses:
        if ct_frame and dose.frame_of_reference_uid != ct_frame:
            raise ConversionError(
                FRAME_OF_REFERENCE_MISMATCH,
                f"RT Dose FrameOfReferenceUID {dose.frame_of_reference_uid} differs from the CT's {ct_frame}",
                str(dose.path),
            )
    plans = {}
    for path in plan_paths:
        plan = read_rtplan(path)
        plans[plan.sop_instance_uid] = plan
    image, summation, used, plan = choose_dose(doses, plans, folder, getattr(options, "dose_plan", None))
    prescriptions, source = _prescriptions(plan, getattr(options, "rx", None))
    return PlannedDose(
        image=image,
        record={
            "prescriptions_gy": prescriptions,
            "prescription_source": source,
            "summation": summation,
            "rtdose_sop_uids": [d.sop_instance_uid for d in used],
            "rtplan_sop_uid": plan.sop_instance_uid if plan else used[0].referenced_plan_uid,
            "frame_of_reference_uid": used[0].frame_of_reference_uid,
        },
    )


def find_nifti_dose(folder: Path, options) -> PlannedDose | None:
    """``dose.nii.gz`` (Gy) and ``plan.json`` of a NIfTI patient folder, or None without a dose file."""
    from nnunet_recur.dataset_conversion.inhouse import find_nifti
    from nnunet_recur.dataset_conversion.nifti_io import read_nifti

    path = find_nifti(folder, "dose")
    if path is None:
        return None
    image = sitk.Cast(read_nifti(path, DOSE_INVALID), sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(values)):
        raise ConversionError(DOSE_INVALID, "non-finite dose values", str(path))
    if values.size and float(values.min()) < 0:
        raise ConversionError(DOSE_INVALID, f"negative doses (lowest {float(values.min()):g} Gy)", str(path))
    prescriptions, source = [], None
    plan_json = folder / "plan.json"
    if plan_json.is_file():
        try:
            given = json.loads(plan_json.read_text()).get("prescriptions_gy") or []
            prescriptions = sorted({float(v) for v in given}, reverse=True)
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            raise ConversionError(DOSE_INVALID, "unreadable prescriptions_gy", str(plan_json)) from None
        source = "plan.json" if prescriptions else None
    rx = getattr(options, "rx", None)
    if not prescriptions and rx:
        prescriptions, source = list(rx), "--rx"
    return PlannedDose(
        image=image,
        record={
            "prescriptions_gy": prescriptions,
            "prescription_source": source,
            "summation": "PLAN",
            "rtdose_sop_uids": [],
            "rtplan_sop_uid": None,
            "frame_of_reference_uid": None,
        },
    )


def find_planned_dose(folder: Path, case, options) -> PlannedDose | None:
    """The patient's planned dose, checked against its case (frame of reference, GTV coverage)."""
    from nnunet_recur.dataset_conversion.inhouse import is_nifti_layout

    folder = Path(folder)
    if is_nifti_layout(folder):
        planned = find_nifti_dose(folder, options)
    else:
        series = getattr(case, "planning_series", None)
        planned = find_dicom_dose(folder, getattr(series, "frame_of_reference_uid", None), options)
    if planned is None:
        if getattr(options, "require_dose", False):
            raise ConversionError(DOSE_MISSING, "no RT Dose found (--require-dose)", str(folder))
        return None
    _check_gtv_covered(planned.image, case.gtv, str(folder))
    return planned


# -- the two hooks of the cohort converter -------------------------------------------------------------
def stage_dose(source, settings, case, stage_dir: Path) -> list[str]:
    """Pass 1: find and check the dose, stage it on its own grid; returns notes for cases.csv."""
    if settings.kind != "inhouse" or not source.folder:
        return []
    planned = find_planned_dose(Path(source.folder), case, settings.inhouse)
    stage_dir.mkdir(parents=True, exist_ok=True)
    if planned is None:
        write_json_atomic(stage_dir / STAGED_RECORD, {"dose": None})
        return []
    sitk.WriteImage(planned.image, str(stage_dir / STAGED_DOSE), useCompression=False)
    geometry = {
        "origin": list(planned.image.GetOrigin()),
        "spacing": list(planned.image.GetSpacing()),
        "direction": list(planned.image.GetDirection()),
    }
    write_json_atomic(stage_dir / STAGED_RECORD, {"dose": planned.record, "geometry": geometry})
    notes = [f"dose: {planned.record['summation']}"]
    if not planned.record["prescriptions_gy"]:
        notes.append("dose without prescriptions (no TargetPrescriptionDose in the plan; give --rx)")
    return notes


def _load_staged(stage_dir: Path) -> tuple[bool, PlannedDose | None]:
    """(found, dose) from pass 1's staging."""
    path = stage_dir / STAGED_RECORD
    if not path.is_file():
        return False, None
    staged = json.loads(path.read_text())
    if staged.get("dose") is None:
        return True, None
    image = sitk.ReadImage(str(stage_dir / STAGED_DOSE))
    geometry = staged["geometry"]
    image.SetOrigin(geometry["origin"])
    image.SetSpacing(geometry["spacing"])
    image.SetDirection(geometry["direction"])
    return True, PlannedDose(image=image, record=staged["dose"])


def dose_paths(dataset_folder: Path, case: str, part: str) -> tuple[Path, Path]:
    folder = Path(dataset_folder) / f"{DOSE_FOLDER}{part}"
    return folder / f"{case}.nii.gz", folder / f"{case}.json"


def write_case_dose(
    source, settings, case, stage_dir: Path, ct: sitk.Image, dataset_folder: Path, case_id: str, part: str
) -> None:
    """Pass 2: the dose resampled (linear) onto the written CT grid, NaN where the dose grid does not
    reach, as ``dose<part>/<case>.nii.gz`` (float32 Gy) and ``<case>.json``; nothing without a dose."""
    if settings.kind != "inhouse" or not source.folder:
        return
    found, planned = _load_staged(stage_dir)
    if not found:  # staging gone (a rerun with a new box): prepare again
        planned = find_planned_dose(Path(source.folder), case, settings.inhouse)
    if planned is None:
        return
    from nnunet_recur.dataset_conversion.nifti_io import verify_written_nifti

    on_ct = sitk.Resample(
        planned.image, ct, sitk.Transform(), sitk.sitkLinear, float("nan"), sitk.sitkFloat32
    )
    values = sitk.GetArrayViewFromImage(on_ct)
    image_path, json_path = dose_paths(dataset_folder, case_id, part)
    with atomic_path(image_path) as tmp:
        sitk.WriteImage(on_ct, str(tmp), useCompression=True)
        verify_written_nifti(tmp)
    record = dict(planned.record)
    record["covered_fraction"] = round(float(np.count_nonzero(np.isfinite(values))) / max(values.size, 1), 6)
    record["units"] = "Gy"
    record["not_covered"] = "NaN"
    write_json_atomic(json_path, record)
