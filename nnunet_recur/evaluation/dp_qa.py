"""Plan QA against a dose-painting prescription: how well a returned plan delivers the voxel prescription.

Per voxel of the region, the quality index Q = D_planned / D_prescribed (Vanderstraeten et al. 2006, Int J
Radiat Oncol Biol Phys 66:1127, "Conformity index for dose painting by numbers"):
- the quality-volume histogram (QVH): the fraction of region voxels with Q >= q (cumulative, as a DVH);
- the fraction of voxels with Q in [0.95, 1.05];
- the quality factor Q_F = mean |Q - 1| (0 for a perfect plan);
- the cumulative DVHs of the prescription and of the plan over the region.

Both doses are read with the project's RT Dose reader (dataset_conversion.rtdose). The planned dose is
resampled linearly onto the prescription's grid; prescription voxels outside the planned grid are "not
covered", left out of every number and counted. Voxels with a prescription of 0 Gy are left out (Q is
undefined there). A planned dose on another frame of reference is refused: no registration is applied.
Region: a ROI of an RTSTRUCT on the same frame of reference (`RS_recur_dose_levels.dcm`'s DP_region for
a `recur predict --dose-map` prescription, whose base dose fills the whole CT grid), else every voxel with
a prescription > 0. Research tool, not a medical device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation.volumes import EvaluationError

Q_BAND = (0.95, 1.05)
OWNED = ("dp_qa.json", "dp_qa.png", "dp_qa.md")
COVERED_TOL = 1e-3  # mm, in index units of the planned grid: a voxel centre on its border is covered


@dataclass
class DoseQA:
    q: np.ndarray  # Q of every scored voxel
    prescribed: np.ndarray
    planned: np.ndarray
    summary: dict


def _read(path: Path, what: str):
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.rtdose import read_rtdose

    try:
        return read_rtdose(path)
    except ConversionError as exc:
        raise EvaluationError(f"{what}: {exc}") from exc


def planned_on_prescription_grid(planned, prescription) -> tuple[np.ndarray, np.ndarray]:
    """(planned dose on the prescription grid, covered mask), linear interpolation, z, y, x."""
    import SimpleITK as sitk

    on_grid = sitk.Resample(planned, prescription, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat64)
    ones = sitk.Image(planned.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(planned)
    covered = sitk.Resample(ones, prescription, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(on_grid), sitk.GetArrayFromImage(covered) > 0


def region_mask(rtstruct: Path, roi: str, prescription, frame_uid: str | None) -> np.ndarray:
    """ROI `roi` (exact name, case-insensitive) of `rtstruct` on the prescription grid."""
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct

    try:
        structure = read_rtstruct(rtstruct)
    except ConversionError as exc:
        raise EvaluationError(f"--rtstruct: {exc}") from exc
    if structure.frame_of_reference_uid and frame_uid and structure.frame_of_reference_uid != frame_uid:
        raise EvaluationError(
            f"{rtstruct}: FrameOfReferenceUID {structure.frame_of_reference_uid} differs from the "
            f"prescription's {frame_uid} (no registration is applied)"
        )
    for item in structure.rois:
        if item.name.strip().lower() == roi.strip().lower():
            if not item.contours:
                raise EvaluationError(f"{rtstruct}: ROI {item.name!r} has no contours")
            mask = sitk.GetArrayFromImage(rasterise_roi(item.contours, prescription, roi_name=item.name)) > 0
            if not mask.any():
                raise EvaluationError(
                    f"{rtstruct}: ROI {item.name!r} covers no voxel of the prescription grid"
                )
            return mask
    names = ", ".join(structure.roi_names) or "none"
    raise EvaluationError(f"{rtstruct}: no ROI {roi!r} (ROIs: {names})")


def cumulative(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of `values` >= each grid point (a cumulative histogram: DVH, QVH)."""
    ordered = np.sort(values)
    return 1.0 - np.searchsorted(ordered, grid, side="left") / max(1, ordered.size)


def quality(prescribed: np.ndarray, planned: np.ndarray) -> dict:
    """The QVH numbers of one region (arrays of the scored voxels)."""
    q = planned / prescribed
    dev = np.abs(q - 1.0)
    return {
        "voxels": int(q.size),
        "fraction_q_in_0.95_1.05": round(float(np.mean((q >= Q_BAND[0]) & (q <= Q_BAND[1]))), 6),
        "quality_factor_qf": round(float(dev.mean()), 6),
        "q_mean": round(float(q.mean()), 6),
        "q_min": round(float(q.min()), 6),
        "q_max": round(float(q.max()), 6),
        "q_5_50_95_percent": [round(float(v), 6) for v in np.percentile(q, [5, 50, 95])],
    }


def run_dp_qa(
    prescription_path: Path, planned_path: Path, region_roi: str | None, rtstruct: Path | None
) -> DoseQA:
    """Everything computed (nothing written); EvaluationError with a one-line reason for bad input."""
    if (region_roi is None) != (rtstruct is None):
        raise EvaluationError("--region and --rtstruct go together (the ROI and the file that holds it)")
    prescription = _read(Path(prescription_path), "--prescription")
    planned = _read(Path(planned_path), "--planned")
    if not prescription.frame_of_reference_uid or not planned.frame_of_reference_uid:
        raise EvaluationError(
            f"{planned_path if prescription.frame_of_reference_uid else prescription_path}: no "
            "FrameOfReferenceUID, so the two doses cannot be put in one coordinate system"
        )
    if prescription.frame_of_reference_uid != planned.frame_of_reference_uid:
        raise EvaluationError(
            f"{planned_path}: FrameOfReferenceUID {planned.frame_of_reference_uid} differs from the "
            f"prescription's {prescription.frame_of_reference_uid} (no registration is applied; refused)"
        )
    import SimpleITK as sitk

    rx = sitk.GetArrayFromImage(prescription.image).astype(np.float64)
    plan, covered = planned_on_prescription_grid(planned.image, prescription.image)
    if region_roi is not None:
        region = region_mask(
            Path(rtstruct), region_roi, prescription.image, prescription.frame_of_reference_uid
        )
        region_text = f"ROI {region_roi!r} of {Path(rtstruct).name}"
    else:
        region = rx > 0
        region_text = "every voxel with a prescription > 0 Gy"
    scored = region & covered & (rx > 0)
    if not scored.any():
        raise EvaluationError(
            f"{planned_path}: the planned dose grid covers no prescribed voxel of the region"
        )
    prescribed, delivered = rx[scored], plan[scored]
    voxel_ml = float(np.prod(prescription.image.GetSpacing())) / 1000.0
    summary = {
        "statement": "RESEARCH TOOL, NOT A MEDICAL DEVICE",
        "prescription": str(prescription_path),
        "planned": str(planned_path),
        "frame_of_reference_uid": prescription.frame_of_reference_uid,
        "region": region_text,
        "region_voxels": int(region.sum()),
        "region_volume_ml": round(float(region.sum()) * voxel_ml, 4),
        "not_covered_voxels": int((region & ~covered).sum()),
        "zero_prescription_voxels": int((region & covered & (rx <= 0)).sum()),
        "resampling": "planned dose linearly onto the prescription grid",
        "quality": quality(prescribed, delivered),
        "prescribed_gy": _stats(prescribed),
        "planned_gy": _stats(delivered),
        "reference": "Vanderstraeten et al. 2006, Int J Radiat Oncol Biol Phys 66:1127",
    }
    return DoseQA(delivered / prescribed, prescribed, delivered, summary)


def _stats(values: np.ndarray) -> dict:
    return {
        "mean": round(float(values.mean()), 4),
        "min": round(float(values.min()), 4),
        "max": round(float(values.max()), 4),
    }


def write_dp_qa(result: DoseQA, out: Path) -> list[Path]:
    """dp_qa.json, dp_qa.png (QVH and both DVHs), dp_qa.md: staged and swapped into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnunet_recur.evaluation.staging import staged_report
    from nnunet_recur.evaluation.volumes import write_json

    q_grid = np.linspace(0.0, 2.0, 401)
    top = float(max(result.prescribed.max(), result.planned.max())) * 1.05
    d_grid = np.linspace(0.0, top, 400)
    qvh = cumulative(result.q, q_grid)
    summary = dict(result.summary)
    summary["qvh"] = {"q": q_grid[::10].round(4).tolist(), "fraction_ge_q": qvh[::10].round(6).tolist()}
    with staged_report(out, "dp-qa", OWNED) as staging:
        write_json(staging / "dp_qa.json", summary)
        fig, (ax_q, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
        ax_q.plot(q_grid, qvh, color="black")
        ax_q.axvspan(*Q_BAND, color="tab:green", alpha=0.2, label="Q in [0.95, 1.05]")
        ax_q.set(
            xlabel="Q = planned / prescribed", ylabel="fraction of region voxels with Q >= q", title="QVH"
        )
        ax_q.legend(loc="lower left")
        ax_d.plot(d_grid, cumulative(result.prescribed, d_grid), label="prescribed", color="tab:blue")
        ax_d.plot(
            d_grid, cumulative(result.planned, d_grid), label="planned", color="tab:red", linestyle="--"
        )
        ax_d.set(xlabel="dose (Gy)", ylabel="fraction of region volume", title="cumulative DVH")
        ax_d.legend(loc="lower left")
        fig.suptitle("RESEARCH TOOL, NOT A MEDICAL DEVICE", fontsize=9)
        fig.tight_layout()
        fig.savefig(staging / "dp_qa.png", dpi=100)
        plt.close(fig)
        qn = summary["quality"]
        lines = [
            "# Dose painting plan QA",
            "",
            "RESEARCH TOOL, NOT A MEDICAL DEVICE.",
            "",
            f"- prescription: `{summary['prescription']}`",
            f"- planned: `{summary['planned']}` (resampled linearly onto the prescription grid)",
            f"- region: {summary['region']} ({summary['region_volume_ml']} ml; "
            f"{summary['not_covered_voxels']} voxels outside the planned grid left out)",
            "",
            "| measure | value |",
            "|---|---|",
            f"| fraction of voxels with Q in [0.95, 1.05] | {qn['fraction_q_in_0.95_1.05']:.4f} |",
            f"| quality factor Q_F = mean abs(Q - 1) | {qn['quality_factor_qf']:.4f} |",
            f"| Q mean (min, max) | {qn['q_mean']:.4f} ({qn['q_min']:.4f}, {qn['q_max']:.4f}) |",
            f"| prescribed mean (Gy) | {summary['prescribed_gy']['mean']} |",
            f"| planned mean (Gy) | {summary['planned_gy']['mean']} |",
            "",
            "Q = D_planned / D_prescribed per voxel (Vanderstraeten et al. 2006).",
            "",
            "![QVH and DVHs](dp_qa.png)",
            "",
        ]
        (staging / "dp_qa.md").write_text("\n".join(lines))
    return [out / name for name in OWNED]
