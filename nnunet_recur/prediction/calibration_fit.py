"""`recur calibrate MODEL`'s work: gather the validation voxels of a trained model and fit a calibration.

The logits come from nnU-Net's own out-of-fold output: ``fold_F/validation/<case>.npz``, which
``nnUNetv2_train ... --npz`` writes at the end of training (``recur cv`` trains with --npz; an existing
fold can write them afterwards with ``nnUNetv2_train D 3d_recur F -p nnUNetRecurPlans -tr TRAINER --val
--npz``). They hold sigmoid probabilities, inverted to logits with the clip documented in
`prediction.calibration`. Folds: ``best`` (default) is the seed `recur predict --folds best` uses, so the
temperature is fitted for the weights it will be applied to; ``all`` pools every fold's out-of-fold
predictions (the cross-validation case).

References: ``$nnUNet_preprocessed/<dataset>/gt_segmentations`` (nnU-Net's copy of labelsTr, the files its
own validation is scored against) unless --gt; the GTV from ``$nnUNet_raw/<dataset>/masksTr`` unless
--masks; the CT for the body from ``imagesTr`` when present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import calibration as metrics
from nnunet_recur.evaluation.calibration_inputs import RegionInputs, case_voxels, read_probability
from nnunet_recur.prediction.calibration import (
    Calibration,
    CalibrationError,
    apply_calibration,
    fit,
    logit_from_probability,
    saturated_fraction,
)
from nnunet_recur.prediction.model import Model, choose_folds

FIT_BOOTSTRAP = 200


@dataclass
class FitInputs:
    labels: Path
    masks: Path | None
    images: Path | None
    region: str


def default_inputs(model: Model, gt: Path | None, masks: Path | None, images: Path | None, region: str):
    """The reference, GTV and CT folders (explicit ones win; the rest from nnU-Net's folders)."""
    name = model.plans.get("dataset_name") or model.folder.parent.name
    preprocessed, raw = os.environ.get("nnUNet_preprocessed"), os.environ.get("nnUNet_raw")
    if gt is None:
        if not preprocessed:
            raise CalibrationError("--gt not given and $nnUNet_preprocessed not set: pass --gt LABELS")
        gt = Path(preprocessed) / name / "gt_segmentations"
    if raw and masks is None and region == "gtv+20mm":
        masks = Path(raw) / name / "masksTr"
    if raw and images is None and (Path(raw) / name / "imagesTr").is_dir():
        images = Path(raw) / name / "imagesTr"
    for option, folder in (("--gt", gt), ("--masks", masks), ("--images", images)):
        if folder is not None and not Path(folder).is_dir():
            raise CalibrationError(f"{option} {folder}: folder not found")
    if region == "gtv+20mm" and masks is None:
        raise CalibrationError("--region gtv+20mm needs the GTV masks: pass --masks or set $nnUNet_raw")
    return FitInputs(Path(gt), masks and Path(masks), images and Path(images), region)


def validation_files(model: Model, folds: str) -> tuple[list[int], list[tuple[int, str, Path]]]:
    """(folds used, [(fold, case, npz)]) of the model's saved validation probabilities."""
    if folds == "all":
        chosen = list(model.available_folds)
    else:
        chosen, _ = choose_folds(model, [] if folds == "best" else folds.replace(",", " ").split())
    found = []
    for fold in chosen:
        folder = model.folder / f"fold_{fold}" / "validation"
        files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
        found.extend((fold, f.name[: -len(".npz")], f) for f in files if not f.name.startswith("."))
    if not found:
        raise CalibrationError(
            f"{model.folder}: no fold_F/validation/<case>.npz for fold(s) {chosen}: train with --npz, or "
            "write them with `nnUNetv2_train DATASET 3d_recur F -p nnUNetRecurPlans -tr TRAINER --val --npz`"
        )
    return chosen, found


def fit_model_calibration(model: Model, inputs: FitInputs, folds: str = "best", method: str = "temperature"):
    """Fit on every saved validation case of the chosen folds; the record's metrics are in-sample."""
    chosen, files = validation_files(model, folds)
    region_inputs = RegionInputs(inputs.labels, inputs.masks, inputs.images, inputs.region)
    logits, labels, before, cases, notes = [], [], [], [], []
    for fold, case, path in files:
        voxels = case_voxels(case, region_inputs, with_points=False)
        probability, _ = read_probability(path.parent, case, voxels.reference)
        p = probability[voxels.region]
        y = voxels.label[voxels.region]
        logits.append(logit_from_probability(p))
        labels.append(y)
        before.append(metrics.CaseStats.of(f"{case} (fold {fold})", p, y))
        cases.append({"case": case, "fold": fold, "voxels": int(p.size)})
        notes.extend(voxels.notes)
    z = np.concatenate(logits)
    y = np.concatenate(labels)
    calibration = fit(z, y, method)
    after = [
        metrics.CaseStats.of(s.case, apply_calibration(s.probability, calibration), s.label) for s in before
    ]
    calibration.fitted_on = {
        "source": "fold_F/validation/<case>.npz (nnU-Net's out-of-fold probabilities, --npz)",
        "folds": chosen,
        "fold_choice": folds,
        "cases": cases,
        "region": inputs.region,
        "voxels": int(z.size),
        "relapse_voxels": int(np.count_nonzero(y)),
        "saturated_fraction": saturated_fraction(np.concatenate([s.probability for s in before])),
        "labels": str(inputs.labels),
        "masks": str(inputs.masks) if inputs.masks else None,
        "images": str(inputs.images) if inputs.images else None,
        "notes": notes,
    }
    calibration.metrics = {
        "evaluated_on": "the fitted cases (in-sample); score held-out cases with recur-eval calibration",
        "before": _summary(metrics.pooled_metrics(before, bootstrap=FIT_BOOTSTRAP)),
        "after": _summary(metrics.pooled_metrics(after, bootstrap=FIT_BOOTSTRAP)),
    }
    return calibration


def _summary(pooled: dict) -> dict:
    return {name: pooled[name] for name in metrics.METRICS}


def describe(calibration: Calibration) -> str:
    b, a = calibration.metrics["before"], calibration.metrics["after"]
    return (
        f"{calibration.describe()} on {len(calibration.fitted_on['cases'])} validation case(s), "
        f"{calibration.fitted_on['voxels']} voxels: ECE {b['ece']['value']:.4f} -> {a['ece']['value']:.4f}, "
        f"NLL {b['nll']['value']:.4f} -> {a['nll']['value']:.4f} (in-sample)"
    )
