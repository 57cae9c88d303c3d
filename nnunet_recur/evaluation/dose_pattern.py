"""Where each relapse started against the planned dose: the maths of `recur-eval dose-pattern`.

The relapse components and their points of origin (PO) are those of `compare` (`points_of_origin`);
this module only reads the dose at them and classifies them. The dose is a float32 NIfTI in Gy on the
label's grid, NaN where the dose grid did not cover the voxel ("not covered", never 0 Gy).

Three classifications, each with its source and exact rule (Rx_high = the highest prescription,
Rx_low = the lowest; "inside the 95 % isodose of Rx" = dose >= 0.95 Rx - `DOSE_TIE_GY`):

- PO dose (Due et al. 2010/2014; Zukauskaite et al. 2017, Acta Oncol 56:1554): `in-field` when the
  PO dose >= 95 % of Rx_high; `elective` when >= 95 % of Rx_low; else `out-of-field`.
- Volume (Dawson et al. 2000): with f = fraction of the component's voxels inside the 95 % isodose of
  Rx_high, `in-field` when f >= 95 %, `marginal` when 20 % <= f < 95 %, `out-of-field` when f < 20 %.
- MD Anderson types (Mohamed et al., Radiat Oncol 2016;11:95), by the dose at the component's centroid
  (centre of volume, trilinear) and the fraction of its voxels inside each 95 % isodose: `A` centroid
  inside the Rx_high isodose and >= 95 % of the volume inside it; `B` centroid inside it, less volume;
  `C` / `D` the same against the Rx_low (elective) isodose; `E` centroid outside both.

"Not covered": the PO (or centroid) dose is NaN, or uncovered voxels of the component could move it
across a class boundary (the class is computed with the uncovered voxels counted outside and counted
inside the isodose; when the two answers differ the class is `not covered`). Fractions are compared as
integers (100 k >= 95 n), so a boundary is exact, not subject to round-off.

DVH figures (D98, D95, D50, Dmean, Dmin, the coldest-1 cc dose, V95) use the covered voxels of the
component (`covered_fraction` says how many that is). D_x is the largest dose that at least x % of
the voxels receive: with the doses sorted ascending d_1 <= ... <= d_n, D_x = d_i, i = floor(n + 1 -
x n / 100) (D100 = Dmin). The coldest-1 cc dose is the highest dose inside the coldest 1 cc: d_k with k
= ceil(1 cc / voxel volume) (Dmax when the component is smaller than 1 cc).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from nnunet_recur.evaluation import points_of_origin as po_module
from nnunet_recur.evaluation.metrics import as_mask, bounding_box
from nnunet_recur.evaluation.volumes import EvaluationError, Grid, Volume, read_volume, require_same_grid

#: Doses within this many Gy of an isodose level count as on it (float32 round-off at 70 Gy is ~4e-6 Gy).
DOSE_TIE_GY = 1e-4
ISODOSE_FRACTION = 0.95  # the 95 % isodose of every rule
DAWSON_IN_PCT = 95
DAWSON_MARGINAL_PCT = 20
MDACC_CENTRAL_PCT = 95
DEFAULT_NIDUS_MM = 4.0
DVH_LEVELS = (98, 95, 50)
COLD_VOLUME_CC = 1.0

NOT_COVERED = "not covered"
PO_CLASSES = ("in-field", "elective", "out-of-field", NOT_COVERED)
DAWSON_CLASSES = ("in-field", "marginal", "out-of-field", NOT_COVERED)
MDACC_TYPES = ("A", "B", "C", "D", "E", NOT_COVERED)
PLAN_SUFFIX = ".json"
TARGET_EXCLUDED = ("brain",)  # masks beside the targets in masksTr/Ts that are not targets


@dataclass(frozen=True)
class Prescription:
    """The prescriptions of one case, highest first, and where they came from."""

    levels_gy: tuple[float, ...]
    source: str  # "RTPLAN", "--rx", ... (the plan JSON's prescription_source, or "--rx")

    @property
    def high(self) -> float:
        return self.levels_gy[0]

    @property
    def low(self) -> float:
        return self.levels_gy[-1]


def parse_rx(value: str | None) -> tuple[float, ...] | None:
    """`--rx 68,60,50` -> (68.0, 60.0, 50.0), highest first; positive finite numbers only."""
    if value is None or not value.strip():
        return None
    try:
        levels = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise EvaluationError(
            f"--rx {value!r}: expected Gy values separated by commas, e.g. 68,60,50"
        ) from exc
    return _checked_levels(levels, f"--rx {value!r}")


def _checked_levels(levels, where: str) -> tuple[float, ...]:
    if not levels or any(not isinstance(v, int | float) or isinstance(v, bool) for v in levels):
        raise EvaluationError(f"{where}: prescriptions must be a non-empty list of numbers (Gy)")
    if any(not math.isfinite(v) or v <= 0 for v in levels):
        raise EvaluationError(
            f"{where}: prescriptions must be positive finite doses in Gy, got {list(levels)}"
        )
    return tuple(sorted((float(v) for v in levels), reverse=True))


def read_prescription(plan_json: Path, rx: tuple[float, ...] | None) -> Prescription:
    """The case's prescriptions: from `<case>.json` when it holds them, else `--rx`, else an error."""
    plan_json = Path(plan_json)
    levels = None
    source = "--rx"
    if plan_json.is_file():
        try:
            plan = json.loads(plan_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{plan_json}: not valid JSON ({exc})") from exc
        if not isinstance(plan, dict):
            raise EvaluationError(f"{plan_json}: expected a JSON object")
        given = plan.get("prescriptions_gy")
        if given:
            if not isinstance(given, list):
                raise EvaluationError(f"{plan_json}: prescriptions_gy must be a list of Gy values")
            levels = _checked_levels(given, str(plan_json))
            source = str(plan.get("prescription_source") or "plan JSON")
    if levels is None:
        if rx is None:
            raise EvaluationError(f"{plan_json}: no prescriptions_gy for this case; give --rx 68,60,50")
        levels = rx
    return Prescription(levels_gy=levels, source=source)


def read_dose(path: Path, reference: Volume | Grid | None = None) -> Volume:
    """A dose NIfTI in Gy (float64 array): NaN kept as "not covered"; inf, negative or all-NaN refused.

    With `reference`, the dose must lie on its grid (one tolerance, `require_same_grid`).
    """
    dose = read_volume(path, allow_nan=True)
    if not np.issubdtype(dose.array.dtype, np.floating):
        dose = Volume(dose.array.astype(np.float32), dose.grid, dose.path)
    lowest = np.fmin.reduce(dose.array, axis=None)  # NaN-skipping, one pass, no copy; NaN only if all are
    if np.isnan(lowest):
        raise EvaluationError(f"{path}: every voxel is NaN (no dose at all)")
    if lowest < 0:
        negative = int(np.count_nonzero(dose.array < 0))
        raise EvaluationError(f"{path}: {negative} negative dose voxel(s); a dose in Gy cannot be negative")
    if reference is not None:
        grid = reference.grid if isinstance(reference, Volume) else reference
        require_same_grid(dose, Volume(np.empty((0,)), grid, getattr(reference, "path", None)))
    return dose


# ---------------------------------------------------------------------------------------------------
# Sampling the dose
# ---------------------------------------------------------------------------------------------------


def physical_to_index(grid: Grid, point_mm) -> np.ndarray:
    """Continuous array index (z, y, x) of a physical point (LPS mm): the inverse of `index_to_physical`."""
    dim = len(grid.size)
    direction = np.asarray(grid.direction, dtype=np.float64).reshape(dim, dim)
    offset = np.asarray(point_mm, dtype=np.float64) - np.asarray(grid.origin)
    ijk = np.linalg.solve(direction, offset) / np.asarray(grid.spacing)
    return ijk[::-1]


def interpolate(dose: np.ndarray, index_zyx) -> float:
    """Trilinear dose at a continuous index (z, y, x); NaN outside the array or where a voxel that
    contributes (weight > 0) is not covered. At a voxel centre it is that voxel's dose exactly."""
    index = np.asarray(index_zyx, dtype=np.float64)
    shape = np.asarray(dose.shape)
    if np.any(index < -1e-9) or np.any(index > shape - 1 + 1e-9):
        return math.nan
    index = np.clip(index, 0, shape - 1)
    # a point mapped from a voxel centre and back carries round-off: snap it, so that a NaN neighbour
    # with a weight of 1e-10 cannot turn a covered voxel centre into "not covered"
    nearest = np.round(index)
    index = np.where(np.abs(index - nearest) < 1e-6, nearest, index)
    low = np.minimum(np.floor(index).astype(int), shape - 1)
    frac = index - low
    total = 0.0
    for corner in range(8):
        offs = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        weight = float(np.prod(np.where(offs, frac, 1.0 - frac)))
        if weight <= 1e-12:
            continue
        value = float(dose[tuple(low + offs)])
        if math.isnan(value):
            return math.nan
        total += weight * value
    return total


def sphere_min(dose: np.ndarray, grid: Grid, index_zyx, radius_mm: float) -> float:
    """Lowest dose over the covered voxels whose centres lie within `radius_mm` of the voxel `index_zyx`.

    NaN when none of them is covered.
    """
    spacing = np.asarray(grid.spacing_zyx, dtype=np.float64)
    centre = np.asarray(index_zyx, dtype=int)
    half = np.floor(radius_mm / spacing + 1e-9).astype(int)
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, dose.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(low, high, centre, spacing, strict=True)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    inside = zz**2 + yy**2 + xx**2 <= radius_mm**2 + 1e-9
    values = dose[box][inside]
    values = values[~np.isnan(values)]
    return float(values.min()) if values.size else math.nan


def dose_at_level(sorted_ascending: np.ndarray, percent: float) -> float:
    """D_x: the largest dose at least `percent` % of the voxels receive (module doc)."""
    n = int(sorted_ascending.size)
    if n == 0:
        return math.nan
    i = math.floor(n + 1 - Fraction(percent).limit_denominator(10**6) * n / 100)
    return float(sorted_ascending[min(max(i, 1), n) - 1])


def cold_volume_dose(
    sorted_ascending: np.ndarray, voxel_cc: float, volume_cc: float = COLD_VOLUME_CC
) -> float:
    """Highest dose inside the coldest `volume_cc` of the voxels (Dmax when there are fewer)."""
    n = int(sorted_ascending.size)
    if n == 0:
        return math.nan
    k = math.ceil(volume_cc / voxel_cc - 1e-9)
    return float(sorted_ascending[min(max(k, 1), n) - 1])


def cumulative_dvh(values: np.ndarray, dose_axis: np.ndarray) -> np.ndarray:
    """Percent of the (covered) voxels receiving >= each dose of `dose_axis`."""
    if values.size == 0:
        return np.full(dose_axis.shape, np.nan)
    ordered = np.sort(values)
    return (
        100.0 * (values.size - np.searchsorted(ordered, dose_axis - DOSE_TIE_GY, side="left")) / values.size
    )


# ---------------------------------------------------------------------------------------------------
# The three classifications
# ---------------------------------------------------------------------------------------------------


def inside_isodose(dose, prescription_gy: float):
    """Dose at or above the 95 % isodose of a prescription (ties within DOSE_TIE_GY count as inside)."""
    return np.asarray(dose) >= ISODOSE_FRACTION * prescription_gy - DOSE_TIE_GY


def po_dose_class(dose_gy: float, rx: Prescription) -> str:
    """Due / Zukauskaite: in-field (>= 95 % Rx_high), elective (>= 95 % Rx_low), out-of-field."""
    if dose_gy is None or math.isnan(dose_gy):
        return NOT_COVERED
    if inside_isodose(dose_gy, rx.high):
        return "in-field"
    if inside_isodose(dose_gy, rx.low):
        return "elective"
    return "out-of-field"


def _at_least(count: int, total: int, percent: int) -> bool:
    """count / total >= percent / 100, in integers (exact at the boundary)."""
    return 100 * count >= percent * total


def dawson_class(inside: int, uncovered: int, total: int) -> str:
    """Dawson: >= 95 % of the voxels inside the Rx_high 95 % isodose in-field, >= 20 % marginal, else out.

    `inside` counts covered voxels inside; the `uncovered` ones could lie either side (module doc).
    """

    def rule(k: int) -> str:
        if _at_least(k, total, DAWSON_IN_PCT):
            return "in-field"
        if _at_least(k, total, DAWSON_MARGINAL_PCT):
            return "marginal"
        return "out-of-field"

    low, high = rule(inside), rule(inside + uncovered)
    return low if low == high else NOT_COVERED


def mdacc_type(
    centroid_dose: float, inside_high: int, inside_low: int, uncovered: int, total: int, rx: Prescription
) -> str:
    """Mohamed 2016 types A-E from the centroid dose and the voxels inside each 95 % isodose."""
    if centroid_dose is None or math.isnan(centroid_dose):
        return NOT_COVERED
    if inside_isodose(centroid_dose, rx.high):
        central, peripheral, inside = "A", "B", inside_high
    elif inside_isodose(centroid_dose, rx.low):
        central, peripheral, inside = "C", "D", inside_low
    else:
        return "E"
    low = central if _at_least(inside, total, MDACC_CENTRAL_PCT) else peripheral
    high = central if _at_least(inside + uncovered, total, MDACC_CENTRAL_PCT) else peripheral
    return low if low == high else NOT_COVERED


# ---------------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------------


def target_paths(folder: Path, case: str) -> dict[str, Path]:
    """`<case>_<name>.nii.gz` target masks of a case (name lower-case), the brain mask left out."""
    folder = Path(folder)
    prefix, tail = f"{case}_", ".nii.gz"
    found = {}
    for path in sorted(folder.glob(f"{case}_*{tail}")):
        name = path.name[len(prefix) : -len(tail)]
        if name and not path.name.startswith(".") and name.lower() not in TARGET_EXCLUDED:
            found[name.lower()] = path
    return found


def signed_distance_mm(mask: np.ndarray, index_zyx, grid: Grid, po: po_module.PointOfOrigin) -> float | None:
    """Signed distance (mm) from the PO voxel centre to the target's surface, negative inside.

    Voxel-centre resolution: the distance to the nearest voxel centre on the other side of the surface.
    None for an empty target.
    """
    if not mask.any():
        return None
    if mask[tuple(index_zyx)]:
        (distance,) = po_module.distances_to_prediction_mm([po], ~mask, grid)
        return None if distance is None else -distance
    (distance,) = po_module.distances_to_prediction_mm([po], mask, grid)
    return distance


def locate_in_targets(
    po: po_module.PointOfOrigin, targets: dict[str, np.ndarray], grid: Grid
) -> tuple[str | None, float | None]:
    """The innermost (smallest) target holding the PO and the signed distance to its surface; when no
    target holds it, the nearest target and the (positive) distance to it."""
    holding = [(int(np.count_nonzero(m)), name) for name, m in targets.items() if m[po.index_zyx]]
    if holding:
        name = min(holding)[1]
        return name, signed_distance_mm(targets[name], po.index_zyx, grid, po)
    nearest = None
    for name, mask in targets.items():
        distance = signed_distance_mm(mask, po.index_zyx, grid, po)
        if distance is not None and (nearest is None or distance < nearest[1]):
            nearest = (name, distance)
    return nearest if nearest is not None else (None, None)


# ---------------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------------


@dataclass
class ComponentDose:
    """One relapse component against the dose: the dose_pattern.csv row and the DVH for the figure."""

    row: dict
    dvh: np.ndarray  # percent of the covered voxels >= each dose of the report's dose axis
    captured: dict[str, bool] = field(default_factory=dict)  # per --pred method: PO inside its mask


def components(mask: np.ndarray, points: list[po_module.PointOfOrigin], box: tuple[slice, ...]) -> np.ndarray:
    """The 26-connected components of `mask[box]` (box: the bounding box of its voxels), numbered as
    `points_of_origin` numbers them.

    scipy numbers components in array (raster) order, so labelling the mask's bounding box gives the
    same numbers as `points_of_origin`'s labelling of its padded box; each PO is checked to lie in its
    component.
    """
    from scipy import ndimage

    labels, count = ndimage.label(mask[box], structure=po_module.CONNECTIVITY_26)
    if count != len(points):
        raise RuntimeError(f"component count {count} differs from the {len(points)} POs")
    offset = np.array([s.start for s in box])
    for p in points:
        if labels[tuple(np.asarray(p.index_zyx) - offset)] != p.component:
            raise RuntimeError(f"PO {p.component} does not lie in component {p.component}")
    return labels


def analyse_case(
    case: str,
    reference: Volume,
    dose: Volume,
    rx: Prescription,
    nidus_mm: float = DEFAULT_NIDUS_MM,
    targets: dict[str, np.ndarray] | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    dose_axis: np.ndarray | None = None,
) -> list[ComponentDose]:
    """Every relapse component of a case against its dose (rows of dose_pattern.csv)."""
    mask = as_mask(reference.array)
    grid = reference.grid
    box = bounding_box(mask)
    if box is None:
        return []
    points = po_module.points_of_origin(Volume(mask, grid, reference.path), box=box)
    labels = components(mask, points, box)
    dose_box = dose.array[box]
    voxel_cc = grid.voxel_volume_cc
    offset = np.array([s.start for s in box])
    axis = dose_axis if dose_axis is not None else np.linspace(0.0, 1.1 * rx.high, 221)
    gtv = (targets or {}).get("gtv")
    rows = []
    for p in points:
        component = labels == p.component
        values = dose_box[component].astype(np.float64)
        total = int(values.size)
        covered_values = np.sort(values[~np.isnan(values)])
        uncovered = total - int(covered_values.size)
        inside_high = int(np.count_nonzero(inside_isodose(covered_values, rx.high)))
        inside_low = int(np.count_nonzero(inside_isodose(covered_values, rx.low)))
        centroid_index = np.argwhere(component).mean(axis=0) + offset
        centroid_dose = interpolate(dose.array, centroid_index)
        po_dose = interpolate(dose.array, physical_to_index(grid, p.physical_mm))
        n_cov = covered_values.size
        row = {
            "case": case,
            "po": p.component,
            "volume_cc": total * voxel_cc,
            "voxels": total,
            "po_x_mm": p.physical_mm[0],
            "po_y_mm": p.physical_mm[1],
            "po_z_mm": p.physical_mm[2],
            "po_dose_gy": po_dose,
            "po_dose_pct_rx": 100.0 * po_dose / rx.high,
            "nidus_min_gy": sphere_min(dose.array, grid, p.index_zyx, nidus_mm),
            "centroid_dose_gy": centroid_dose,
            "covered_fraction": n_cov / total,
            "d98_gy": dose_at_level(covered_values, 98),
            "d95_gy": dose_at_level(covered_values, 95),
            "d50_gy": dose_at_level(covered_values, 50),
            "dmean_gy": float(covered_values.mean()) if n_cov else math.nan,
            "dmin_gy": float(covered_values[0]) if n_cov else math.nan,
            "dmax_gy": float(covered_values[-1]) if n_cov else math.nan,
            "d_cold1cc_gy": cold_volume_dose(covered_values, voxel_cc),
            "v95_pct": 100.0 * inside_high / n_cov if n_cov else math.nan,
            "rx_high_gy": rx.high,
            "rx_low_gy": rx.low,
            "rx_source": rx.source,
            "po_class": po_dose_class(po_dose, rx),
            "dawson_class": dawson_class(inside_high, uncovered, total),
            "mdacc_type": mdacc_type(centroid_dose, inside_high, inside_low, uncovered, total, rx),
            "target": None,
            "target_distance_mm": None,
            "gtv_distance_mm": None,
        }
        if targets:
            row["target"], row["target_distance_mm"] = locate_in_targets(p, targets, grid)
            if gtv is not None:
                row["gtv_distance_mm"] = signed_distance_mm(gtv, p.index_zyx, grid, p)
        captured = {name: po_module.captured(p, pred) for name, pred in (predictions or {}).items()}
        rows.append(ComponentDose(row=row, dvh=cumulative_dvh(covered_values, axis), captured=captured))
    return rows


# ---------------------------------------------------------------------------------------------------
# One case from files (the worker job of `recur-eval dose-pattern`)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseInputs:
    """Everything a worker needs for one case (picklable)."""

    labels: Path
    doses: Path
    rx: tuple[float, ...] | None = None
    nidus_mm: float = DEFAULT_NIDUS_MM
    targets: Path | None = None
    methods: tuple = ()  # comparison.Method, in --pred order
    dose_axis: tuple[float, ...] = ()


@dataclass
class CaseDose:
    case: str
    components: list[ComponentDose]
    inputs: list[str]


def dose_path(doses: Path, case: str) -> Path:
    return Path(doses) / f"{case}.nii.gz"


def plan_path(doses: Path, case: str) -> Path:
    return Path(doses) / f"{case}{PLAN_SUFFIX}"


def evaluate_case(case: str, inputs: DoseInputs) -> CaseDose:
    """Read one case's label, dose, prescriptions, targets and predictions; analyse its components."""
    from nnunet_recur.evaluation import comparison
    from nnunet_recur.evaluation.volumes import label_path

    reference = read_volume(label_path(inputs.labels, case))
    dose = read_dose(dose_path(inputs.doses, case), reference)
    rx = read_prescription(plan_path(inputs.doses, case), inputs.rx)
    read = [reference.path, dose.path]
    if plan_path(inputs.doses, case).is_file():
        read.append(plan_path(inputs.doses, case))
    targets = {}
    if inputs.targets is not None:
        for name, path in target_paths(inputs.targets, case).items():
            volume = read_volume(path)
            require_same_grid(volume, reference)
            targets[name] = as_mask(volume.array)
            read.append(path)
    predictions = {}
    for method in inputs.methods:
        source = method.path(case)
        if not source.is_file():
            raise EvaluationError(f"{source}: prediction of {method.name!r} for case {case} not found")
        if method.threshold is not None:
            probabilities = comparison.load_probabilities(source, reference)
            predictions[method.name] = probabilities.astype(np.float64, copy=False) >= method.threshold
        else:
            predicted = read_volume(source)
            require_same_grid(predicted, reference)
            notes: list[str] = []
            predictions[method.name] = comparison._nifti_prediction(  # noqa: SLF001 - the one binarisation rule
                method, case, predicted.array, source, notes
            )
        read.append(source)
    axis = np.asarray(inputs.dose_axis) if inputs.dose_axis else None
    found = analyse_case(case, reference, dose, rx, inputs.nidus_mm, targets, predictions, axis)
    return CaseDose(case=case, components=found, inputs=[str(p) for p in read])


class DoseCaseJob:
    """Picklable `case -> CaseDose | str` for the worker pool: a case's expected error comes back as its
    one-line message (recorded in the report), so the other cases go on."""

    def __init__(self, inputs: DoseInputs):
        self.inputs = inputs

    def __call__(self, case: str) -> CaseDose | str:
        try:
            return evaluate_case(case, self.inputs)
        except EvaluationError as exc:
            return str(exc).strip().splitlines()[0]
