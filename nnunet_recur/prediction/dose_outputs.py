"""`recur predict --dose-map`: the region, the prescription and its files, kept out of pipeline.py.

Files (in the run's staging folder, moved into place with the other outputs):
- dose_prescription.nii.gz: float32 Gy on the full planning-CT grid;
- RD_recur_prescription.dcm (RT Dose), RP_recur_prescription.dcm (the prescription-only RT Plan the dose
  refers to), PM_recur_prescription.dcm (Parametric Map): DICOM input only;
- RS_recur_dose_levels.dcm: the region (DP_region) and, with --levels, one ROI per dose level (disjoint),
  named DP_<dose>Gy; the RT Plan's dose reference points at DP_region;
- dose_map.json: every parameter, the region and the resulting mean, min and max dose.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.prediction.dose_painting import (
    DoseMap,
    DoseMapOptions,
    dose_map,
    grow_region,
    level_masks,
    level_names,
)

DOSE_NIFTI = "dose_prescription.nii.gz"
RTDOSE = "RD_recur_prescription.dcm"
RTPLAN = "RP_recur_prescription.dcm"
PARAMETRIC_MAP = "PM_recur_prescription.dcm"
LEVEL_RTSTRUCT = "RS_recur_dose_levels.dcm"
DOSE_JSON = "dose_map.json"
DOSE_OUTPUTS = (DOSE_NIFTI, RTDOSE, RTPLAN, PARAMETRIC_MAP, LEVEL_RTSTRUCT, DOSE_JSON)
REGION_ROI_NAME = "DP_region"
LEVEL_COLORS = [(0, 0, 255), (0, 128, 255), (0, 255, 255), (0, 255, 128), (128, 255, 0), (255, 255, 0)]


def region_from_rtstruct(folder: Path, name: str, planning_ct: sitk.Image) -> np.ndarray:
    """The patient's ROI `name` (exact, case-insensitive) rasterised on the planning CT (ValueError)."""
    from nnunet_recur.dataset_conversion.dicom_series import scan_folder
    from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct

    found = [s for s in scan_folder(folder) if s.modality == "RTSTRUCT"]
    names = []
    for series in found:
        for path in series.files:
            for roi in read_rtstruct(path).rois:
                names.append(roi.name)
                if roi.name.strip().lower() == name.strip().lower() and roi.contours:
                    mask = sitk.GetArrayFromImage(rasterise_roi(roi.contours, planning_ct, roi_name=roi.name))
                    if mask.any():
                        return mask > 0
                    raise ValueError(f"--region-roi {name!r}: the ROI covers no voxel of the planning CT")
    listing = ", ".join(sorted(set(names))) or "none"
    raise ValueError(f"--region-roi {name!r}: no such ROI with contours in {folder} (ROIs: {listing})")


def probability_source(summary: dict) -> str:
    """Which probability drives the map: the calibrated one when the summary says a calibration was
    applied (the seam for `recur calibrate`, issue 21 §2)."""
    calibration = summary.get("calibration")
    if isinstance(calibration, dict) and calibration.get("applied"):
        return f"calibrated probability ({calibration.get('method', 'calibration')})"
    return "model probability (uncalibrated)"


def compute(
    folder: Path,
    planning_ct: sitk.Image,
    probability: np.ndarray,
    gtv: np.ndarray,
    options: DoseMapOptions,
    summary: dict,
    dicom_input: bool,
) -> DoseMap:
    """The prescription of one patient (ValueError for an empty or missing region)."""
    spacing_zyx = tuple(reversed(planning_ct.GetSpacing()))
    if options.region_roi:
        if not dicom_input:
            raise ValueError("--region-roi needs DICOM input (an RTSTRUCT); this patient is NIfTI")
        region = region_from_rtstruct(folder, options.region_roi, planning_ct)
    else:
        region = grow_region(gtv, options.margin_mm, spacing_zyx)
    voxel_ml = float(np.prod(planning_ct.GetSpacing())) / 1000.0
    return dose_map(probability, region, options, voxel_ml, probability_source(summary))


def write(staging: Path, dose: DoseMap, planning_ct: sitk.Image, ct_headers, version: str) -> None:
    """Every dose-map file into `staging` (the DICOM ones only when `ct_headers` is given)."""
    image = sitk.GetImageFromArray(dose.dose)
    image.CopyInformation(planning_ct)
    sitk.WriteImage(image, str(staging / DOSE_NIFTI), useCompression=True)
    files = {"nifti": DOSE_NIFTI}
    if ct_headers is not None:
        from nnunet_recur.prediction.parametric_map_writer import build_dose_parametric_map
        from nnunet_recur.prediction.rtdose_writer import build_rtdose, choose_scaling
        from nnunet_recur.prediction.rtplan_writer import build_prescription_plan, plan_reference
        from nnunet_recur.prediction.rtstruct_writer import RoiSpec, build_rtstruct

        rois = [RoiSpec(REGION_ROI_NAME, dose.region, (255, 255, 255), "CONTROL", "dose painting region")]
        present = level_masks(dose.dose, dose.region, dose.levels)
        names = level_names([level for level, _ in present])
        for i, ((level, mask), name) in enumerate(zip(present, names, strict=True)):
            rois.append(
                RoiSpec(
                    name,
                    mask,
                    LEVEL_COLORS[i % len(LEVEL_COLORS)],
                    "CONTROL",
                    f"prescribe {level:.2f} Gy (disjoint dose level)",
                )
            )
        structure = build_rtstruct(
            ct_headers,
            rois,
            software_version=version,
            algorithm_description="dose painting region and dose levels",
            series_description="recur dose levels - RESEARCH TOOL, NOT A MEDICAL DEVICE",
        )
        structure.StructureSetLabel = "RECUR_DP"
        structure.save_as(staging / LEVEL_RTSTRUCT, enforce_file_format=True)
        region = dose.summary["region"]
        plan = build_prescription_plan(
            ct_headers,
            structure.SOPInstanceUID,
            mean_gy=region["mean_gy"],
            min_gy=region["min_gy"],
            max_gy=region["max_gy"],
            region_roi_number=1,
            software_version=version,
        )
        plan.save_as(staging / RTPLAN, enforce_file_format=True)
        build_rtdose(
            ct_headers, dose.dose, software_version=version, plan_reference=plan_reference(plan)
        ).save_as(staging / RTDOSE, enforce_file_format=True)
        build_dose_parametric_map(ct_headers, dose.dose, version).save_as(staging / PARAMETRIC_MAP)
        scaling, bits = choose_scaling(float(dose.dose.max()))
        dose.summary["rtdose"] = {"dose_grid_scaling": scaling, "bits": bits, "max_error_gy": scaling / 2}
        files.update(
            rtdose=RTDOSE, rtplan=RTPLAN, parametric_map=PARAMETRIC_MAP, rtstruct_levels=LEVEL_RTSTRUCT
        )
    dose.summary["files"] = files
    (staging / DOSE_JSON).write_text(json.dumps(dose.summary, indent=2))
