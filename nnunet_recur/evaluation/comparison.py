"""`recur-eval compare`, the per-case work: read a case once, score every method against it.

A case's reference, PET and masks are read once and every method's prediction is scored against
them (never re-read per method). Predictions are nnU-Net output folders: `<case>.nii.gz` masks, or
`<case>.npz` probability maps (key "probabilities", shape (C, z, y, x) in the array order of
`SimpleITK.GetArrayFromImage`; C = 1 for our single sigmoid channel) thresholded at `--threshold`.

Beside the paper's metrics, each case contributes to the dose-painting trade-off curves: for every
method whose folder holds probability maps, and for the SUVmax threshold when the PET and masks are
given, the predicted volume and the captured POs at each of 100 thresholds, in one pass (see
`baselines.percent_levels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import baselines, metrics
from nnunet_recur.evaluation import points_of_origin as po_module
from nnunet_recur.evaluation.volumes import (
    EvaluationError,
    GeometryMismatchError,
    MissingCaseError,
    Volume,
    brain_path,
    ct_path,
    gtv_path,
    label_path,
    pet_path,
    read_volume,
    require_finite,
    require_same_grid,
)

SUV_CURVE = "SUVmax threshold (sweep)"
CURVE_LEVELS = 100  # thresholds p / 100 * scale, p = 1..100


@dataclass(frozen=True)
class Method:
    """One prediction source: a named folder, masks or (with a threshold) probability maps."""

    name: str
    folder: Path
    threshold: float | None = None  # probability threshold for <case>.npz; None: <case>.nii.gz masks
    # --threshold given for a folder of <case>.nii.gz: applied to probability maps saved as NIfTI
    nifti_threshold: float | None = None

    @classmethod
    def parse(cls, spec: str, threshold: float | None = None) -> Method:
        """`NAME=DIR` (the name may contain spaces; the first '=' splits)."""
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise EvaluationError(f"--pred {spec!r}: expected NAME=DIR, e.g. --pred 'AI random=preds/random'")
        folder_path = Path(folder.strip())
        if not folder_path.is_dir():
            raise EvaluationError(f"--pred {spec!r}: folder {folder_path} not found")
        has_npz = any(folder_path.glob("*.npz"))
        has_masks = any(p.name.endswith(".nii.gz") for p in folder_path.iterdir())
        if threshold is not None and has_npz:
            return cls(name.strip(), folder_path, float(threshold))
        if not has_masks and has_npz:
            raise EvaluationError(
                f"--pred {spec!r}: {folder_path} holds only probability maps (.npz); pass --threshold T"
            )
        return cls(name.strip(), folder_path, None, None if threshold is None else float(threshold))

    @property
    def extension(self) -> str:
        return ".npz" if self.threshold is not None else ".nii.gz"

    def path(self, case: str) -> Path:
        return self.folder / (f"{case}.npz" if self.threshold is not None else f"{case}.nii.gz")

    def probabilities_path(self, case: str) -> Path:
        return self.folder / f"{case}.npz"


def unmatched_predictions(methods: list[Method], reference_cases: list[str]) -> dict[str, list[str]]:
    """Per method, prediction ids in its folder with no reference label (listed, never scored).

    Ids that differ only in letter case within a folder are refused, as in the reference.
    """
    from nnunet_recur.evaluation.volumes import refuse_case_duplicates

    known = set(reference_cases)
    unmatched = {}
    for method in methods:
        ids = sorted(
            p.name[: -len(method.extension)]
            for p in method.folder.iterdir()
            if p.name.endswith(method.extension) and not p.name.startswith(".")
        )
        refuse_case_duplicates(ids, method.folder)
        extra = [c for c in ids if c not in known]
        if extra:
            unmatched[method.name] = extra
    return unmatched


@dataclass(frozen=True)
class CompareInputs:
    """Everything a worker needs to evaluate one case (picklable)."""

    labels: Path
    methods: tuple[Method, ...]
    # Alike in shape to compare_run.CompareOptions, whose subset this is (what a worker needs, picklable).
    images: Path | None = None
    masks: Path | None = None
    allow_missing: bool = False
    hd95: bool = True
    curves: bool = True
    figures: bool = False


@dataclass
class MethodCaseResult:
    method: str
    case: str
    dice: float
    recall: float
    precision: float
    pred_cc: float
    gt_cc: float
    po_count: int
    po_captured: int
    po_captured_published: int
    hd95_mm: float
    source: str
    # per PO: (captured, captured_published, distance in mm from the PO voxel centre to the nearest
    # predicted voxel centre: 0 when captured, None when the prediction is empty)
    po_flags: list[tuple[bool, bool, float | None]] = field(default_factory=list)

    # The per_case.csv columns spelled out in the contract's order (alike in shape to other report rows).
    def row(self) -> dict:
        """The per_case.csv row (first nine columns fixed by the contract)."""
        return {
            "method": self.method,
            "case": self.case,
            "dice": self.dice,
            "recall": self.recall,
            "precision": self.precision,
            "pred_cc": self.pred_cc,
            "gt_cc": self.gt_cc,
            "po_count": self.po_count,
            "po_captured": self.po_captured,
            "po_captured_published": self.po_captured_published,
            "hd95_mm": self.hd95_mm,
            "source": self.source,
        }


@dataclass
class CaseCurve:
    """Predicted volume and captured POs of one case at thresholds p / 100 * scale, p = 1..100."""

    predicted_cc: np.ndarray
    captured: np.ndarray


@dataclass
class CaseResult:
    case: str
    gt_cc: float
    points: list[dict]
    methods: list[MethodCaseResult]
    missing: list[str]
    curves: dict[str, CaseCurve]
    slices: list[dict] = field(default_factory=list)  # figure material, one entry per PO
    notes: list[str] = field(default_factory=list)  # warnings worth the report (printed, in summary.json)
    inputs: list[str] = field(default_factory=list)  # every file read for this case (provenance hashes)


def load_probabilities(path: Path, reference: Volume) -> np.ndarray:
    """The relapse probability map (z, y, x) of an nnU-Net .npz, checked against the reference shape."""
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise EvaluationError(f"{path}: not an .npz archive")
            if "probabilities" not in data:
                raise EvaluationError(f"{path}: no 'probabilities' array (keys: {', '.join(data.files)})")
            probabilities = data["probabilities"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        raise EvaluationError(f"{path}: unreadable or truncated probability file ({detail})") from exc
    if not np.issubdtype(probabilities.dtype, np.number) or np.issubdtype(
        probabilities.dtype, np.complexfloating
    ):
        raise EvaluationError(f"{path}: 'probabilities' has dtype {probabilities.dtype}, not real numbers")
    require_finite(probabilities, str(path))
    if probabilities.ndim == 4:
        channels = probabilities.shape[0]
        if channels == 1:  # one sigmoid channel (region-based training, our trainers)
            probabilities = probabilities[0]
        elif channels == 2:  # softmax over (background, relapse)
            probabilities = probabilities[1]
        else:
            raise EvaluationError(f"{path}: {channels} probability channels; expected 1 (or 2 for softmax)")
    if probabilities.shape != reference.grid.shape:
        raise GeometryMismatchError(
            f"geometry mismatch between {reference.name} and {path}: "
            f"shape (z, y, x) {reference.grid.shape} vs {probabilities.shape}"
        )
    return probabilities


def _curve(levels: np.ndarray, points: list[po_module.PointOfOrigin], voxel_cc: float) -> CaseCurve:
    """Volume and captured POs at each level p = 1..100 (prediction = level >= p), one histogram."""
    histogram = np.bincount(levels.ravel(), minlength=CURVE_LEVELS + 1)
    predicted = np.cumsum(histogram[::-1])[::-1][1:] * voxel_cc
    po_levels = np.array([int(levels[p.index_zyx]) for p in points], dtype=np.int64)
    captured = np.array([int(np.count_nonzero(po_levels >= p)) for p in range(1, CURVE_LEVELS + 1)])
    return CaseCurve(predicted_cc=predicted, captured=captured)


def _score(
    method: Method,
    case: str,
    prediction: np.ndarray,
    reference: Volume,
    reference_mask: metrics.ReferenceMask,
    points: list[po_module.PointOfOrigin],
    gt_cc: float,
    hd95: bool,
    source: Path,
) -> MethodCaseResult:
    counts = metrics.overlap_counts_with(prediction, reference_mask)
    distances = po_module.distances_to_prediction_mm(points, prediction, reference.grid)
    flags = [
        (po_module.captured(p, prediction), po_module.captured_published(p, prediction), d)
        for p, d in zip(points, distances, strict=True)
    ]
    distance = math.nan
    if hd95:
        distance = metrics.hd95_mm(
            Volume(prediction, reference.grid), Volume(reference_mask.mask, reference.grid)
        )
    return MethodCaseResult(
        method=method.name,
        case=case,
        dice=metrics.dice_from_counts(counts),
        recall=metrics.recall_from_counts(counts),
        precision=metrics.precision_from_counts(counts),
        pred_cc=counts.prediction * reference.grid.voxel_volume_cc,
        gt_cc=gt_cc,
        po_count=len(points),
        po_captured=sum(f[0] for f in flags),
        po_captured_published=sum(f[1] for f in flags),
        hd95_mm=distance,
        source=source.name,
        po_flags=flags,
    )


def _slice_material(
    inputs: CompareInputs,
    case: str,
    reference: Volume,
    points: list[po_module.PointOfOrigin],
    predictions: dict[str, np.ndarray],
) -> list[dict]:
    """2D slices through each PO (CT, reference, every method) for the Figure-5-like overlays."""
    ct = None
    if inputs.images is not None and ct_path(inputs.images, case).is_file():
        ct_volume = read_volume(ct_path(inputs.images, case))
        require_same_grid(ct_volume, reference)
        ct = ct_volume.array
    sy, sx = reference.grid.spacing_zyx[1:]
    material = []
    for p in points:
        z = p.index_zyx[0]
        material.append(
            {
                "po": p.component,
                "z": z,
                "point": p.index_zyx,
                "direction": reference.grid.direction,
                "aspect": sy / sx,
                "spacing_xy": (sx, sy),
                "ct": None if ct is None else np.array(ct[z], dtype=np.float32),
                "reference": np.array(reference.array[z] != 0),
                "methods": {name: np.asarray(pred[z]) != 0 for name, pred in predictions.items()},
            }
        )
    return material


def _is_probability_map(array: np.ndarray) -> bool:
    """A floating-point NIfTI holding values other than 0 and 1: a probability map, not a mask."""
    if not np.issubdtype(array.dtype, np.floating):
        return False
    return bool(np.any((array != 0) & (array != 1)))


def _nifti_prediction(method: Method, case: str, array: np.ndarray, source: Path, notes: list[str]):
    """The boolean prediction of a `<case>.nii.gz`: a mask as `!= 0`, a probability map at --threshold."""
    if _is_probability_map(array):
        if method.nifti_threshold is None:
            raise EvaluationError(
                f"{source}: holds a probability map (floating-point values other than 0 and 1), not a "
                "mask; pass --threshold T to binarise it as probability >= T"
            )
        notes.append(
            f"{method.name}: probability maps saved as .nii.gz binarised as >= {method.nifti_threshold:g}"
        )
        return array.astype(np.float64, copy=False) >= np.float64(method.nifti_threshold)
    if method.nifti_threshold is not None:
        notes.append(
            f"{method.name}: --threshold {method.nifti_threshold:g} not applied: {method.folder} holds "
            "masks (0/1 or integer labels, binarised as != 0), not probability maps"
        )
    return array


def evaluate_case(case: str, inputs: CompareInputs) -> CaseResult:
    """Every metric of every method on one case (reference and images read once)."""
    reference = read_volume(label_path(inputs.labels, case))
    read = [reference.path]
    notes: list[str] = []
    reference_mask = metrics.ReferenceMask.of(reference.array)
    points = po_module.points_of_origin(
        Volume(reference_mask.mask, reference.grid, reference.path), box=reference_mask.box
    )
    voxel_cc = reference.grid.voxel_volume_cc
    gt_cc = reference_mask.voxels * voxel_cc
    curves: dict[str, CaseCurve] = {}

    if inputs.curves and inputs.images is not None and inputs.masks is not None:
        pet = read_volume(pet_path(inputs.images, case))
        gtv = read_volume(gtv_path(inputs.masks, case))
        brain = read_volume(brain_path(inputs.masks, case))
        read += [pet.path, gtv.path, brain.path]
        for other in (pet, gtv, brain):
            require_same_grid(other, reference)
        try:
            curves[SUV_CURVE] = _curve(baselines.suv_levels(pet, gtv, brain), points, voxel_cc)
        except baselines.SuvmaxUndefinedError as exc:  # this case's curve only; its scores stand
            notes.append(f"{case}: left out of the SUVmax capture curve: {exc}")
        del pet, gtv, brain

    results, missing = [], []
    predictions: dict[str, np.ndarray] = {}
    for method in inputs.methods:
        source = method.path(case)
        if not source.is_file():
            if inputs.allow_missing:
                missing.append(method.name)
                continue
            raise MissingCaseError(
                f"case {case} is in the reference ({inputs.labels}) but missing from method "
                f"{method.name!r}: {source} not found (use --allow-missing to report it in a footnote)"
            )
        read.append(source)
        probabilities = None
        if method.threshold is not None:
            probabilities = load_probabilities(source, reference)
            prediction = probabilities.astype(np.float64, copy=False) >= np.float64(method.threshold)
        else:
            predicted = read_volume(source)
            require_same_grid(predicted, reference)
            prediction = _nifti_prediction(method, case, predicted.array, source, notes)
            del predicted
            if inputs.curves and method.probabilities_path(case).is_file():
                probabilities = load_probabilities(method.probabilities_path(case), reference)
                read.append(method.probabilities_path(case))
        if inputs.curves and probabilities is not None:
            curves[method.name] = _curve(baselines.percent_levels(probabilities, 1.0), points, voxel_cc)
        del probabilities
        results.append(
            _score(method, case, prediction, reference, reference_mask, points, gt_cc, inputs.hd95, source)
        )
        if inputs.figures:
            predictions[method.name] = prediction

    slices = _slice_material(inputs, case, reference, points, predictions) if inputs.figures else []
    return CaseResult(
        case=case,
        gt_cc=gt_cc,
        points=[
            {
                "case": case,
                "po": p.component,
                "voxels": p.voxels,
                "eroded_voxels": p.eroded_voxels,
                "index_x": p.index_xyz[0],
                "index_y": p.index_xyz[1],
                "index_z": p.index_xyz[2],
                "x_mm": p.physical_mm[0],
                "y_mm": p.physical_mm[1],
                "z_mm": p.physical_mm[2],
            }
            for p in points
        ],
        methods=results,
        missing=missing,
        curves=curves,
        slices=slices,
        notes=notes,
        inputs=[str(path) for path in read],
    )


class CaseEvaluator:
    """Picklable `case -> CaseResult` for the worker pool."""

    def __init__(self, inputs: CompareInputs):
        self.inputs = inputs

    def __call__(self, case: str) -> CaseResult:
        return evaluate_case(case, self.inputs)
