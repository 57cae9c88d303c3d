"""Reading what a calibration measurement needs for one case: the reference, the region, the probabilities.

Probability maps come in three layouts, tried in this order for case C of a method folder:
`C.npz` (nnU-Net's `--save_probabilities` / `--npz`, read by the compare command's own reader),
`C.nii.gz` holding floating-point probabilities, or `C/probability.nii.gz` (`recur predict`'s output
folder per patient). Each must lie on the reference label's grid (refused otherwise, one line). The region
(see `evaluation.calibration`) needs the GTV (`<case>_gtv.nii.gz` in --masks) for ``gtv+20mm`` and uses the
CT (`<case>_0000.nii.gz` in --images) for the body when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import calibration as cal
from nnunet_recur.evaluation import points_of_origin as po_module
from nnunet_recur.evaluation.comparison import load_probabilities
from nnunet_recur.evaluation.metrics import as_mask
from nnunet_recur.evaluation.volumes import (
    EvaluationError,
    Volume,
    ct_path,
    gtv_path,
    label_path,
    read_volume,
    require_same_grid,
)

PREDICT_PROBABILITY = "probability.nii.gz"


def probability_path(folder: Path, case: str) -> Path | None:
    """The file holding case `case`'s probabilities in `folder` (see the module doc), None if absent."""
    for candidate in (folder / f"{case}.npz", folder / f"{case}.nii.gz", folder / case / PREDICT_PROBABILITY):
        if candidate.is_file():
            return candidate
    return None


def read_probability(folder: Path, case: str, reference: Volume) -> tuple[np.ndarray, Path]:
    """Case `case`'s relapse probability (z, y, x) on the reference grid, and the file it came from."""
    path = probability_path(Path(folder), case)
    if path is None:
        raise EvaluationError(
            f"{folder}: no probabilities for case {case} "
            f"({case}.npz, {case}.nii.gz or {case}/{PREDICT_PROBABILITY})"
        )
    if path.suffix == ".npz":
        probability = load_probabilities(path, reference)
    else:
        volume = read_volume(path)
        require_same_grid(volume, reference)
        probability = volume.array
        if not np.issubdtype(probability.dtype, np.floating):
            raise EvaluationError(f"{path}: holds a mask (integer voxels), not probabilities")
    probability = np.asarray(probability, dtype=np.float32)
    if probability.size and (probability.min() < 0.0 or probability.max() > 1.0):
        raise EvaluationError(f"{path}: values outside [0, 1]: not probabilities")
    return probability, path


@dataclass(frozen=True)
class RegionInputs:
    """Where the reference and the region's masks live, and which region (picklable for workers)."""

    labels: Path
    masks: Path | None = None
    images: Path | None = None
    region: str = cal.DEFAULT_REGION


@dataclass
class CaseVoxels:
    """One case: the reference volume, the region mask and notes about how it was built."""

    case: str
    reference: Volume
    label: np.ndarray
    region: np.ndarray
    points: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)


def case_voxels(case: str, inputs: RegionInputs, with_points: bool = True) -> CaseVoxels:
    """Read case `case`'s reference and build its region (refusing grids that differ)."""
    reference = read_volume(label_path(inputs.labels, case))
    read = [str(reference.path)]
    notes = []
    label = as_mask(reference.array)
    gtv = None
    if inputs.region == "gtv+20mm":
        if inputs.masks is None:
            raise EvaluationError("--region gtv+20mm needs --masks (the folder of <case>_gtv.nii.gz)")
        gtv_volume = read_volume(gtv_path(inputs.masks, case))
        require_same_grid(gtv_volume, reference)
        gtv = as_mask(gtv_volume.array)
        read.append(str(gtv_volume.path))
        if not gtv.any():
            notes.append(f"{case}: empty GTV, so no voxel in the gtv+20mm region")
    ct = None
    if inputs.region != "all":
        if inputs.images is not None and ct_path(inputs.images, case).is_file():
            ct_volume = read_volume(ct_path(inputs.images, case))
            require_same_grid(ct_volume, reference)
            ct = ct_volume.array
            read.append(str(ct_volume.path))
        else:
            notes.append(f"{case}: no CT (--images), so the region is not cut to the body")
    region = cal.region_mask(gtv, reference.grid.spacing_zyx, inputs.region, ct=ct, shape=label.shape)
    points = po_module.points_of_origin(Volume(label, reference.grid, reference.path)) if with_points else []
    return CaseVoxels(case, reference, label, region, points, notes, read)


@dataclass(frozen=True)
class CalibrationCase:
    """Picklable `case -> per-method (CaseStats, PO rows)` for `recur-eval calibration`.

    A method is (name, folder, calibration): a calibration is any object with `apply(probabilities)`
    (`prediction.calibration.Calibration`, handed in by the command), applied to the read probabilities."""

    inputs: RegionInputs
    methods: tuple[tuple[str, Path, object | None], ...]

    def __call__(self, case: str) -> dict:
        voxels = case_voxels(case, self.inputs)
        out = {"case": case, "notes": list(voxels.notes), "inputs": list(voxels.inputs), "methods": {}}
        for name, folder, calibration in self.methods:
            probability, path = read_probability(folder, case, voxels.reference)
            if calibration is not None:
                probability = calibration.apply(probability)
            out["inputs"].append(str(path))
            stats = cal.CaseStats.of(case, probability[voxels.region], voxels.label[voxels.region])
            out["methods"][name] = {
                "stats": stats,
                "points": cal.po_reliability(probability, voxels.points),
            }
        return out
