"""Post-hoc calibration of the relapse probability: fit, store (calibration.json), apply, rank.

A Dice-trained network gives polarised probabilities (nnU-Net's maintainers point to temperature scaling,
MIC-DKFZ/nnUNet#2763). Both methods here rescale the network's logit z before the sigmoid:

- **temperature** (default): p = sigmoid(z / T), one parameter T > 0 (Guo et al. 2017). The 0.5 level
  (z = 0) does not move, so every ROI at threshold 0.5 and Table 1 stay as they are; other thresholds,
  `--boost-cc` volumes' order statistics and any probability-to-dose map do change.
- **platt**: p = sigmoid(a z + b) (Platt 1999); b moves the 0.5 level too.

Both are fitted by minimising the voxel NLL (logistic loss, convex in a and b) with Newton's method over
the validation region of the model's validation cases.

**Logits from probabilities.** nnU-Net saves probabilities (float32 sigmoid), not logits. They are inverted
as z = log(p / (1 - p)) after clipping p to [2^-24, 1 - 2^-24]: 1 - 2^-24 is the largest float32 below
1.0 that float32 sigmoid reaches before it rounds to exactly 1.0, so the clip changes no voxel whose
logit float32 could still tell apart on the upper side (|z| <= 16.6), and it is symmetric, so 0.5 stays
0.5. Only saturated voxels (exactly 0.0 or 1.0) are moved, to z = -/+16.6; calibration.json records how
many. tests/test_calibration.py shows that the fit from clipped probabilities equals the fit from the
exact logits within 1 % on data where 10 % of the voxels saturate.

**Ranking.** `ranking_scores` gives, per voxel, the calibrated logit a z + b: its order is the calibrated
probability's, but it has no float rounding to 1.0, so `--boost-cc` can count voxels without ties at 1.0.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration.json"
METHODS = ("temperature", "platt")
PROBABILITY_CLIP = 2.0**-24
LOGIT_LIMIT = math.log((1.0 - PROBABILITY_CLIP) / PROBABILITY_CLIP)  # 16.64


class CalibrationError(Exception):
    """A calibration that cannot be fitted or read: one line naming the file or the data."""


class NoSignalError(CalibrationError):
    """The fitted slope is <= 0: the logits do not rise with relapse (an untrained model), so no temperature
    can make them calibrated."""


def logit_from_probability(probability: np.ndarray) -> np.ndarray:
    """float64 logits of probabilities clipped to [2^-24, 1 - 2^-24] (see the module doc)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return np.log(p) - np.log1p(-p)


def saturated_fraction(probability: np.ndarray) -> float:
    """Share of probabilities the logit inversion clips (exactly 0/1 in float32, or beyond the clip)."""
    p = np.asarray(probability, dtype=np.float64)
    if p.size == 0:
        return 0.0
    return float(np.count_nonzero((p < PROBABILITY_CLIP) | (p > 1.0 - PROBABILITY_CLIP)) / p.size)


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1.0 + e)
    return out


@dataclass
class Calibration:
    """A fitted calibration: p = sigmoid(slope * z + intercept) (temperature: slope = 1/T, intercept 0)."""

    method: str
    slope: float
    intercept: float = 0.0
    fitted_on: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = ""

    @property
    def temperature(self) -> float:
        return 1.0 / self.slope

    def parameters(self) -> dict:
        if self.method == "temperature":
            return {"temperature": self.temperature}
        return {"a": self.slope, "b": self.intercept}

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """`apply_calibration(probabilities, self)`: lets a scorer apply it without importing this module."""
        return apply_calibration(probabilities, self)

    def describe(self) -> str:
        if self.method == "temperature":
            return f"temperature scaling, T = {self.temperature:.4g}"
        return f"Platt scaling, p = sigmoid({self.slope:.4g} z + {self.intercept:.4g})"

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "parameters": self.parameters(),
            "formula": "p = sigmoid(z / T)" if self.method == "temperature" else "p = sigmoid(a z + b)",
            "logit_inversion": {
                "probability_clip": PROBABILITY_CLIP,
                "logit_limit": LOGIT_LIMIT,
                "rule": "z = log(p / (1 - p)) with p clipped to [2^-24, 1 - 2^-24]",
            },
            "fitted_on": self.fitted_on,
            "metrics": self.metrics,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "calibration") -> Calibration:
        try:
            method = data["method"]
            parameters = data["parameters"]
            if method == "temperature":
                slope, intercept = 1.0 / float(parameters["temperature"]), 0.0
            elif method == "platt":
                slope, intercept = float(parameters["a"]), float(parameters["b"])
            else:
                raise CalibrationError(f"{source}: unknown method {method!r} (expected {', '.join(METHODS)})")
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise CalibrationError(
                f"{source}: not a calibration record ({type(exc).__name__}: {exc})"
            ) from exc
        if not (math.isfinite(slope) and math.isfinite(intercept)) or slope <= 0:
            raise CalibrationError(f"{source}: parameters {parameters} are not finite or not increasing")
        return cls(
            method,
            slope,
            intercept,
            data.get("fitted_on", {}),
            data.get("metrics", {}),
            data.get("created", ""),
        )


# -- fitting -------------------------------------------------------------------------------------------
def fit(logits: np.ndarray, labels: np.ndarray, method: str = "temperature") -> Calibration:
    """Minimise the mean logistic loss of sigmoid(a z + b) against `labels` (b = 0 for temperature)."""
    if method not in METHODS:
        raise CalibrationError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.float64)
    if z.size == 0:
        raise CalibrationError("no voxels to fit the calibration on")
    if not np.all(np.isfinite(z)):
        raise CalibrationError("non-finite logits: refusing to fit")
    if y.min() == y.max():
        raise CalibrationError(
            f"every fitting voxel is {'relapse' if y[0] else 'background'}: a calibration needs both"
        )
    slope, intercept = _newton_logistic(z, y, with_intercept=method == "platt")
    if not slope > 0:
        raise NoSignalError(
            f"fitted slope {slope:.4g} <= 0: the model's logits do not rise with relapse on these cases"
        )
    return Calibration(method, float(slope), float(intercept))


def mean_nll(z: np.ndarray, y: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> float:
    """Mean logistic loss of sigmoid(slope z + intercept) (exact softplus form, no clipping)."""
    s = slope * np.asarray(z, dtype=np.float64) + intercept
    return float(np.mean(np.logaddexp(0.0, s) - np.asarray(y, dtype=np.float64) * s))


def _newton_logistic(z: np.ndarray, y: np.ndarray, with_intercept: bool) -> tuple[float, float]:
    """Newton's method with backtracking on the convex logistic loss in (slope, intercept)."""
    theta = np.array([1.0, 0.0])
    features = 2 if with_intercept else 1
    loss = mean_nll(z, y, *theta)
    for _ in range(100):
        s = theta[0] * z + theta[1]
        p = sigmoid(s)
        residual = p - y
        weight = p * (1.0 - p)
        gradient = np.array([np.mean(residual * z), np.mean(residual)])[:features]
        hessian = np.array(
            [[np.mean(weight * z * z), np.mean(weight * z)], [np.mean(weight * z), np.mean(weight)]]
        )[:features, :features]
        hessian += np.eye(features) * 1e-12
        step = np.zeros(2)
        step[:features] = np.linalg.solve(hessian, gradient)
        rate = 1.0
        while rate > 1e-10:
            candidate = theta - rate * step
            new_loss = mean_nll(z, y, *candidate)
            if new_loss <= loss + 1e-15:
                break
            rate /= 2
        else:
            break
        converged = abs(loss - new_loss) < 1e-12 and np.max(np.abs(rate * step)) < 1e-9
        theta, loss = candidate, new_loss
        if converged:
            break
    return float(theta[0]), float(theta[1])


# -- applying ------------------------------------------------------------------------------------------
def calibrated_logits(logits: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """a z + b in float64 (the logits themselves without a calibration)."""
    z = np.asarray(logits, dtype=np.float64)
    return z if calibration is None else calibration.slope * z + calibration.intercept


def apply_to_logits(logits: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """Calibrated probability (float32) from the network's logits."""
    return sigmoid(calibrated_logits(logits, calibration)).astype(np.float32)


def apply_calibration(probabilities: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """Calibrated probability (float32) from saved probabilities (inverted with the documented clip);
    without a calibration the input comes back unchanged."""
    if calibration is None:
        return np.asarray(probabilities)
    return apply_to_logits(logit_from_probability(probabilities), calibration)


def ranking_scores(
    probabilities: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Per-voxel scores whose order is the calibrated probability's, before any float rounding to 0 or 1:
    the calibrated logit, from `logits` when given (no ties at saturation), else from `probabilities`
    (ties remain where they were saturated)."""
    if logits is None:
        if probabilities is None:
            raise ValueError("ranking_scores needs probabilities or logits")
        logits = logit_from_probability(probabilities)
    return calibrated_logits(logits, calibration)


# -- storage -------------------------------------------------------------------------------------------
def write_calibration(folder: Path, calibration: Calibration) -> Path:
    """`folder`/calibration.json, atomically."""
    from nnunet_recur.atomic_io import write_json_atomic

    if not calibration.created:
        calibration.created = datetime.datetime.now().isoformat(timespec="seconds")
    path = Path(folder) / CALIBRATION_FILE
    write_json_atomic(path, calibration.to_json())
    return path


def load_calibration(folder: Path) -> Calibration | None:
    """The model folder's calibration, None when it has none; a damaged file is a CalibrationError."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return read_calibration(path)


# Alike in shape to evaluation/sweep.py's read_best: another file, its own error class and content rules.
def read_calibration(path: Path) -> Calibration:
    """A calibration.json file; missing or damaged is a CalibrationError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: not a calibration record")
    return Calibration.from_json(data, str(path))


def summary_entry(calibration: Calibration | None, folder: Path, disabled: bool) -> dict:
    """What summary.json and report.html say about calibration."""
    if calibration is None:
        reason = (
            "turned off (--no-calibration)" if disabled else f"none ({CALIBRATION_FILE} not in the model)"
        )
        return {"applied": False, "note": f"probabilities are uncalibrated: {reason}"}
    return {
        "applied": True,
        "method": calibration.method,
        "parameters": calibration.parameters(),
        "file": str(Path(folder) / CALIBRATION_FILE),
        "fitted_on_cases": len(calibration.fitted_on.get("cases", [])),
        "note": f"probabilities calibrated by {calibration.describe()} ({CALIBRATION_FILE}); "
        "thresholds, --boost-cc and the probability map use the calibrated values",
    }


def calibrate_folds(
    fold_probabilities: list[np.ndarray],
    fold_logits: list[np.ndarray] | None,
    calibration: Calibration | None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each fold's (calibrated) probability and one ranking score for the ensemble: the mean of the folds'
    calibrated logits (nnU-Net's own ensembling averages logits). Without logits both come from the
    probabilities (inverted with the clip). Without a calibration the probabilities come back unchanged."""
    if fold_logits is None:
        probabilities = [apply_calibration(p, calibration) for p in fold_probabilities]
        scores = [ranking_scores(probabilities=p, calibration=calibration) for p in fold_probabilities]
    else:
        probabilities = (
            list(fold_probabilities)
            if calibration is None
            else [apply_to_logits(z, calibration) for z in fold_logits]
        )
        scores = [ranking_scores(logits=z, calibration=calibration) for z in fold_logits]
    mean = np.mean(np.stack(scores), axis=0)
    # -inf (no probability at all) as a finite floor, so a resampling uncrop cannot turn it into NaN
    return probabilities, np.maximum(mean, -1e30)
