"""`recur predict` for one patient, and for a batch: prepare -> predict -> back onto the planning CT ->
outputs.

One patient: the converter's own preparation (`prepare_new_patient_input`: readers, quality checks, axial
cut, PET on the CT grid, the model's crop box), the folds' probabilities from nnU-Net's predictor, their
mean (and voxel-wise SD) pasted onto the full planning CT, the ROIs, then every output. Everything is
computed before anything is written; the files are written under a temporary folder in OUT and moved into
place one by one (os.replace), and outputs of an earlier run that this run does not produce are removed, so
OUT never mixes two runs and a failing patient leaves OUT untouched.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.prediction.calibration import (
    CalibrationError,
    calibrate_folds,
    load_calibration,
    summary_entry,
)
from nnunet_recur.prediction.dose_outputs import DOSE_OUTPUTS
from nnunet_recur.prediction.dose_painting import DoseMapOptions
from nnunet_recur.prediction.levels import make_levels
from nnunet_recur.prediction.model import Model, ModelError
from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT, RoiSpec
from nnunet_recur.prediction.uncrop import uncrop

PROBABILITY = "probability.nii.gz"
UNCERTAINTY = "uncertainty_std.nii.gz"
RTSTRUCT = "RS_recur_prediction.dcm"
SEG = "SEG_recur_rois.dcm"
SEG_PROBABILITY = "SEG_recur_probability.dcm"
REPORT = "report.html"
SUMMARY = "summary.json"
OUTPUTS = (PROBABILITY, UNCERTAINTY, RTSTRUCT, SEG, SEG_PROBABILITY, REPORT, SUMMARY, *DOSE_OUTPUTS)
SPACING_TOLERANCE = 0.25  # a patient's CT spacing may differ this much (relative) from the crop's reference

THRESHOLD_COLORS = [(255, 255, 0), (255, 160, 0), (255, 0, 0), (160, 0, 60), (100, 0, 120)]
BOOST_COLORS = [(255, 0, 255), (0, 200, 255), (0, 255, 120), (120, 120, 255)]
GTV_COLOR = (255, 255, 255)


@dataclass
class PredictOptions:
    thresholds: list[float] = field(default_factory=lambda: [0.5])
    boost_cc: list[float] = field(default_factory=list)
    within_gtv: bool = False
    include_gtv: bool = False
    roi_gtv: str | None = None
    roi_brain: str | None = None
    pet_series: str | None = None
    ct_series: str | None = None
    suvmax_percent: float | None = None
    calibration: bool = True  # apply the model's calibration.json when present (--no-calibration: off)
    write_dicom: bool = True
    write_report: bool = True
    dose_map: DoseMapOptions | None = None  # --dose-map (prediction/dose_painting.py)
    report_patient_id: bool = False  # --report-patient-id: the CT's PatientID on the report


class PatientError(Exception):
    """A patient that cannot be predicted; `cause` is the exclusion cause (or 'model')."""

    def __init__(self, cause: str, message: str):
        self.cause = cause
        super().__init__(message)


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("nnunet-recur", "nnunetv2", "torch", "SimpleITK", "pydicom", "highdicom", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def hash_folder(folder: Path) -> dict:
    """sha256 over the patient's files (sorted relative paths and contents): which input this was, without
    naming the files (names may carry identifiers)."""
    digest = hashlib.sha256()
    count = 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            digest.update(str(path.relative_to(folder)).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            count += 1
    return {"files": count, "sha256": digest.hexdigest()}


def check_crop_fits(model: Model, ct: sitk.Image) -> None:
    """The model's crop box is in voxels at the training CT spacing: a CT far from it would get another
    field of view than the model was trained on."""
    reference = model.dataset_json["recur_crop"].get("reference_spacing_mm")
    if not reference:
        return
    spacing = np.asarray(ct.GetSpacing(), dtype=float)
    ratio = spacing / np.asarray(reference, dtype=float)
    if np.any(np.abs(ratio - 1.0) > SPACING_TOLERANCE):
        raise PatientError(
            "model",
            f"the model's crop box was derived at CT spacing {tuple(reference)} mm, this CT has "
            f"{tuple(round(float(s), 4) for s in spacing)} mm (more than {SPACING_TOLERANCE:.0%} apart)",
        )


@dataclass
class Prediction:
    """Everything computed for one patient, before writing."""

    planning_ct: sitk.Image
    probability: sitk.Image
    uncertainty: sitk.Image | None
    levels: list
    gtv: np.ndarray
    summary: dict
    ct_headers: list | None
    notes: list[str]
    dose: object | None = None  # dose_painting.DoseMap with --dose-map
    patient_id: str | None = None  # only with --report-patient-id


def _volume_ml(mask: np.ndarray, voxel_ml: float) -> float:
    return round(float(np.count_nonzero(mask)) * voxel_ml, 4)


def predict_patient(folder: str | Path, predictor, options: PredictOptions) -> Prediction:
    """Compute the prediction of one patient folder (nothing written). Raises PatientError."""
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.new_patient import prepare_new_patient_input
    from nnunet_recur.prediction.inference import ensemble

    folder = Path(folder)
    model: Model = predictor.model
    started = time.perf_counter()
    try:
        prepared = prepare_new_patient_input(
            folder,
            model.dataset_json,
            roi_gtv=options.roi_gtv,
            roi_brain=options.roi_brain,
            pet_series=options.pet_series,
            ct_series=options.ct_series,
        )
    except ConversionError as exc:
        raise PatientError(exc.cause, str(exc)) from exc
    except ValueError as exc:  # an invalid --roi-* pattern
        raise PatientError("options", str(exc)) from exc
    case = prepared.case
    planning_ct = case.planning_ct if case.planning_ct is not None else case.ct
    check_crop_fits(model, case.ct)
    prepared_s = time.perf_counter() - started

    calibration = _calibration(model, options)
    # the logits (a second pass through nnU-Net's resampling) only where they are used
    if hasattr(predictor, "predict_with_logits") and (options.boost_cc or calibration is not None):
        fold_probabilities, fold_logits = predictor.predict_with_logits(prepared.images)
    else:
        fold_probabilities, fold_logits = predictor.predict(prepared.images), None
    inference_s = time.perf_counter() - started - prepared_s
    fold_probabilities, ranking = calibrate_folds(fold_probabilities, fold_logits, calibration)
    mean, std = ensemble(fold_probabilities)
    crop_ct = prepared.images["ct"]
    probability = uncrop(mean, crop_ct, planning_ct)
    uncertainty = uncrop(std, crop_ct, planning_ct) if std is not None else None
    gtv = sitk.GetArrayFromImage(
        uncrop(sitk.GetArrayFromImage(case.gtv).astype(np.float32), case.ct, planning_ct)
    )
    gtv = gtv > 0.5
    prob_array = sitk.GetArrayFromImage(probability)
    voxel_ml = float(np.prod(planning_ct.GetSpacing())) / 1000.0
    level_notes: list[str] = []
    levels = make_levels(
        prob_array,
        voxel_ml,
        options.thresholds,
        options.boost_cc,
        gtv,
        options.within_gtv,
        scores=sitk.GetArrayFromImage(uncrop(ranking, crop_ct, planning_ct)),
        notes=level_notes,
    )

    fold_maps = (
        [uncrop(p, crop_ct, planning_ct) for p in fold_probabilities] if len(fold_probabilities) > 1 else []
    )
    level_rows = []
    for level in levels:
        row = {
            "roi": level.name,
            "rule": level.describe(),
            "kind": level.kind,
            "requested": level.requested,
            "threshold": round(level.threshold, 6),
            "volume_ml": _volume_ml(level.mask, voxel_ml),
            "fraction_in_gtv": round(
                float(np.count_nonzero(level.mask & gtv)) / max(1, np.count_nonzero(level.mask)), 4
            )
            if level.mask.any()
            else None,
        }
        if fold_maps and level.kind == "threshold":
            volumes = []
            for fold_map in fold_maps:
                mask = sitk.GetArrayViewFromImage(fold_map) > level.threshold
                if options.within_gtv:
                    mask = mask & gtv
                volumes.append(_volume_ml(mask, voxel_ml))
            row["volume_ml_per_fold"] = volumes
            row["volume_ml_sd_over_folds"] = round(float(np.std(volumes)), 4)
            row["volume_ml_range_over_folds"] = [min(volumes), max(volumes)]
        level_rows.append(row)

    gtv_summary, suv_notes = _suv_summary(case, options.suvmax_percent or model.validation_percent)
    gtv_summary["volume_ml"] = _volume_ml(gtv, voxel_ml)
    notes = list(case.notes) + suv_notes + level_notes
    if case.planning_series is None:
        notes.append("NIfTI input: no DICOM planning CT, so no RTSTRUCT or SEG was written")
    elapsed = time.perf_counter() - started
    summary = {
        "statement": RESEARCH_STATEMENT,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": {
            "id": model.model_id,
            "source": model.source,
            "trainer": model.trainer,
            "folds": list(predictor.folds),
            "fold_choice": getattr(predictor, "fold_choice", ""),
            "tta": bool(predictor.tta),
            "mirroring_axes": list(predictor.mirroring_axes) if predictor.mirroring_axes else None,
            "ensemble": "mean of the folds' probabilities; uncertainty = voxel-wise SD (ddof 0)"
            if len(fold_probabilities) > 1
            else None,
        },
        "calibration": summary_entry(calibration, model.folder, disabled=not options.calibration),
        "thresholds": sorted(set(options.thresholds)),
        "boost_cc": sorted(set(options.boost_cc)),
        "within_gtv": options.within_gtv,
        "levels": level_rows,
        "gtv": gtv_summary,
        "probability": {
            "max": round(float(prob_array.max()), 6),
            "grid": "full planning CT",
            "size_xyz": list(planning_ct.GetSize()),
            "spacing_mm": [round(s, 6) for s in planning_ct.GetSpacing()],
        },
        "crop": {
            "size_voxels": list(prepared.box.size_voxels) if prepared.box.size_voxels else None,
            "start_index_xyz_on_cut_ct": list(prepared.box_start),
            "mode": prepared.box.mode,
        },
        "timing_s": {
            "prepare": round(prepared_s, 3),
            "inference": round(inference_s, 3),
            "total": round(elapsed, 3),
        },
        "notes": notes,
        "provenance": {"software": software_versions(), "input": hash_folder(folder)},
    }
    headers = list(case.planning_series.headers) if case.planning_series is not None else None
    prediction = Prediction(planning_ct, probability, uncertainty, levels, gtv, summary, headers, notes)
    if options.dose_map is not None:
        from nnunet_recur.prediction import dose_outputs

        try:  # p: the probability map as written (calibrated when a calibration was applied)
            prediction.dose = dose_outputs.compute(
                folder, planning_ct, prob_array, gtv, options.dose_map, summary, headers is not None
            )
        except ValueError as exc:
            raise PatientError("dose_map", str(exc)) from exc
        summary["dose_map"] = prediction.dose.summary
    if options.report_patient_id and headers is not None:
        prediction.patient_id = str(headers[0].get("PatientID", "")) or None
    return prediction


def _calibration(model: Model, options: PredictOptions):
    if not options.calibration:
        return None
    try:
        return load_calibration(model.folder)
    except CalibrationError as exc:
        raise PatientError("model", str(exc)) from exc


def _suv_summary(case, percent: float | None) -> tuple[dict, list[str]]:
    """SUVmax in the GTV and, at the model's validation percent, the SUVmax-threshold volume (brain removed),
    by the evaluation's own baseline rule."""
    from nnunet_recur.evaluation.baselines import suvmax_in_gtv, suvmax_prediction
    from nnunet_recur.evaluation.volumes import Grid, Volume

    grid = Grid.of(case.ct)
    pet = Volume(sitk.GetArrayFromImage(case.pet), grid)
    gtv = Volume(sitk.GetArrayFromImage(case.gtv), grid)
    suvmax = suvmax_in_gtv(pet, gtv)
    out = {"suvmax": round(suvmax, 4), "suvmax_percent": percent}
    notes = []
    if percent is None:
        out["suvmax_threshold_note"] = "no validation percent known (pass --suvmax-percent)"
    else:
        brain_array = (
            sitk.GetArrayFromImage(case.brain)
            if case.brain is not None
            else np.zeros(pet.array.shape, np.uint8)
        )
        mask = suvmax_prediction(pet, gtv, Volume(brain_array, grid), percent)
        volume = float(np.count_nonzero(mask)) * float(np.prod(case.ct.GetSpacing())) / 1000.0
        out["suvmax_threshold_volume_ml"] = round(volume, 4)
        out["suvmax_threshold_note"] = f"{volume:.2f} ml at {percent:g} % of SUVmax"
    return out, notes


# -- writing ---------------------------------------------------------------------------------------------
def roi_specs(prediction: Prediction, options: PredictOptions) -> list[RoiSpec]:
    specs = []
    thresholds = [lv for lv in prediction.levels if lv.kind == "threshold"]
    boosts = [lv for lv in prediction.levels if lv.kind == "boost_cc"]
    for i, level in enumerate(thresholds):
        specs.append(
            RoiSpec(
                level.name,
                level.mask,
                THRESHOLD_COLORS[i % len(THRESHOLD_COLORS)],
                "CONTROL",
                level.describe(),
            )
        )
    for i, level in enumerate(boosts):
        specs.append(
            RoiSpec(level.name, level.mask, BOOST_COLORS[i % len(BOOST_COLORS)], "CONTROL", level.describe())
        )
    if options.include_gtv:
        specs.append(
            RoiSpec("GTV_used", prediction.gtv, GTV_COLOR, "GTV", "GTV the prediction was centred on")
        )
    return specs


def write_outputs(prediction: Prediction, options: PredictOptions, out: Path) -> list[Path]:
    """Write every output of one patient atomically into `out` (see the module docstring)."""
    version = prediction.summary["provenance"]["software"]["nnunet-recur"]
    staging = out.parent / f".{out.name}.recur_tmp_{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        sitk.WriteImage(prediction.probability, str(staging / PROBABILITY), useCompression=True)
        if prediction.uncertainty is not None:
            sitk.WriteImage(prediction.uncertainty, str(staging / UNCERTAINTY), useCompression=True)
        specs = roi_specs(prediction, options)
        if options.write_dicom and prediction.ct_headers is not None:
            from nnunet_recur.prediction.rtstruct_writer import build_rtstruct
            from nnunet_recur.prediction.seg_writer import build_binary_seg, build_probability_seg

            description = (
                f"Relapse risk from pre-treatment FDG-PET/CT, model {prediction.summary['model']['id']}, "
                f"folds {prediction.summary['model']['folds']}"
            )
            build_rtstruct(
                prediction.ct_headers, specs, software_version=version, algorithm_description=description
            ).save_as(staging / RTSTRUCT, enforce_file_format=True)
            nonempty = [s for s in specs if s.mask.any()]
            if nonempty:
                build_binary_seg(prediction.ct_headers, nonempty, version).save_as(staging / SEG)
            probability = sitk.GetArrayFromImage(prediction.probability)
            if probability.max() > 0:
                build_probability_seg(prediction.ct_headers, probability, version).save_as(
                    staging / SEG_PROBABILITY
                )
        if prediction.dose is not None:
            from nnunet_recur.prediction import dose_outputs

            headers = prediction.ct_headers if options.write_dicom else None
            dose_outputs.write(staging, prediction.dose, prediction.planning_ct, headers, version)
        (staging / SUMMARY).write_text(json.dumps(prediction.summary, indent=2))
        if options.write_report:
            from nnunet_recur.prediction.report import overlay_png, render_html

            ct = prediction.planning_ct
            png = overlay_png(
                sitk.GetArrayViewFromImage(ct),
                sitk.GetArrayViewFromImage(prediction.probability),
                prediction.gtv,
                [(s.name, s.mask, s.color) for s in specs if s.name != "GTV_used"],
                ct.GetSpacing(),
                np.asarray(ct.GetDirection()).reshape(3, 3),
            )
            dose = None
            if prediction.dose is not None:
                from nnunet_recur.prediction.report import dose_png

                voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
                direction = np.asarray(ct.GetDirection()).reshape(3, 3)
                d = prediction.dose
                dose = dose_png(
                    sitk.GetArrayViewFromImage(ct), d.dose, d.region, ct.GetSpacing(), direction, voxel_ml
                )
            html_text = render_html(prediction.summary, png, dose, prediction.patient_id)
            (staging / REPORT).write_text(html_text)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            if (staging / name).is_file():
                os.replace(staging / name, out / name)
                written.append(out / name)
            elif (out / name).exists():
                (out / name).unlink()  # an output of an earlier run that this run does not produce
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- batch -----------------------------------------------------------------------------------------------
@dataclass
class PatientResult:
    patient: str
    out: str
    ok: bool
    cause: str = ""
    message: str = ""
    seconds: float = 0.0


def run_patient(folder: Path, out: Path, predictor, options: PredictOptions) -> PatientResult:
    started = time.perf_counter()
    try:
        prediction = predict_patient(folder, predictor, options)
        write_outputs(prediction, options, out)
    except PatientError as exc:
        return PatientResult(folder.name, str(out), False, exc.cause, str(exc), time.perf_counter() - started)
    except ModelError as exc:
        return PatientResult(folder.name, str(out), False, "model", str(exc), time.perf_counter() - started)
    except Exception as exc:  # a reader or writer bug nobody foresaw: record it, the batch carries on
        message = f"{folder}: {type(exc).__name__}: {exc}".replace("\n", " ")
        return PatientResult(
            folder.name, str(out), False, "unexpected", message, time.perf_counter() - started
        )
    return PatientResult(folder.name, str(out), True, seconds=time.perf_counter() - started)


_WORKER: dict = {}


def _worker_init(model_source: dict, folds: list[int], device: str, tta: bool, fold_choice: str) -> None:
    import torch

    from nnunet_recur.prediction.inference import FoldPredictor
    from nnunet_recur.prediction.model import resolve_model

    torch.set_num_threads(1)
    model = resolve_model(model_source["folder"])
    predictor = FoldPredictor(model, folds, device, tta)
    predictor.fold_choice = fold_choice
    _WORKER["predictor"] = predictor


def _worker_run(folder: str, out: str, options: PredictOptions) -> PatientResult:
    return run_patient(Path(folder), Path(out), _WORKER["predictor"], options)


def run_batch(
    jobs: list[tuple[Path, Path]], predictor, options: PredictOptions, workers: int = 1, on_result=None
):
    """Predict every (patient folder, output folder); a failing patient is reported, the rest go on."""
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for folder, out in jobs:
            result = run_patient(folder, out, predictor, options)
            results.append(result)
            if on_result:
                on_result(result)
        return results
    from functools import partial

    from nnunet_recur.worker_pool import run_jobs

    init_args = (
        {"folder": str(predictor.model.folder)},
        predictor.folds,
        "cpu" if predictor.predictor.device.type == "cpu" else predictor.device,
        predictor.tta,
        getattr(predictor, "fold_choice", ""),
    )
    outs = {str(folder): (folder, out) for folder, out in jobs}

    def record(key: str, result: PatientResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    def failed(key: str, message: str, cause: str = "worker") -> PatientResult:
        folder, out = outs[key]
        return PatientResult(folder.name, str(out), False, cause, f"{folder}: {message}")

    # a worker that dies (out of memory, kill -9) costs its own patient only; the pool is rebuilt
    run_jobs(
        [(key, _worker_run, (key, str(out), options)) for key, (_, out) in outs.items()],
        workers,
        record,
        killed_result=lambda key: failed(key, "the worker process died (killed, out of memory?)"),
        failed_result=lambda key, exc: failed(key, f"{type(exc).__name__}: {exc}".replace("\n", " ")),
        initializer=partial(_worker_init, *init_args),
    )
    return results
