"""Federated averaging of model weights, weighted by each site's number of training cases.

FedAvg (McMahan et al. 2017): w = sum_i n_i w_i / sum_i n_i over the sites that replied. Floating-point
arrays are averaged in float64 and cast back; integer arrays (e.g. a norm layer's batch counter) are
averaged and rounded. A reply whose arrays do not match the global model (names, shapes) is refused with
the site named, before any averaging, so one broken site never corrupts the model.

Edge cases: no reply -> ValueError; a site with 0 cases -> ValueError (it would carry no weight, and a
site that trained on nothing must not send weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Weights = dict[str, np.ndarray]


class WrongShapeError(ValueError):
    """A site sent weights that do not fit the global model."""


@dataclass(frozen=True)
class SiteUpdate:
    site: str
    weights: Weights
    n_cases: int


def check_shapes(reference: Weights, update: SiteUpdate) -> None:
    """Raise WrongShapeError naming the site when its arrays differ from `reference` in names or shapes."""
    missing = sorted(set(reference) - set(update.weights))
    extra = sorted(set(update.weights) - set(reference))
    if missing or extra:
        raise WrongShapeError(
            f"site {update.site}: weights refused: arrays missing {missing[:3]} / unexpected {extra[:3]}"
        )
    for name, array in reference.items():
        got = np.shape(update.weights[name])
        if got != np.shape(array):
            raise WrongShapeError(
                f"site {update.site}: weights refused: {name} has shape {got}, "
                f"the global model {np.shape(array)}"
            )


def case_weights(updates: list[SiteUpdate]) -> np.ndarray:
    """n_i / sum n (float64)."""
    if not updates:
        raise ValueError("no site update to aggregate")
    counts = np.array([u.n_cases for u in updates], dtype=np.float64)
    if np.any(counts <= 0):
        bad = [u.site for u in updates if u.n_cases <= 0]
        raise ValueError(f"sites with no training case cannot be averaged: {', '.join(bad)}")
    return counts / counts.sum()


def federated_average(updates: list[SiteUpdate], reference: Weights | None = None) -> Weights:
    """The case-weighted mean of the sites' weights (shapes checked against `reference` or the first site)."""
    weights = case_weights(updates)
    reference = reference if reference is not None else updates[0].weights
    for update in updates:
        check_shapes(reference, update)
    averaged: Weights = {}
    for name, template in reference.items():
        total = sum(
            w * np.asarray(u.weights[name], dtype=np.float64) for w, u in zip(weights, updates, strict=True)
        )
        dtype = np.asarray(template).dtype
        averaged[name] = (
            np.rint(total).astype(dtype) if np.issubdtype(dtype, np.integer) else total.astype(dtype)
        )
    return averaged


def weighted_mean(values: list[float], counts: list[int]) -> float | None:
    """Case-weighted mean of per-site metrics (the global validation Dice); None when nothing counts."""
    pairs = [
        (v, c) for v, c in zip(values, counts, strict=True) if c > 0 and v is not None and np.isfinite(v)
    ]
    if not pairs:
        return None
    total = sum(c for _, c in pairs)
    return float(sum(v * c for v, c in pairs) / total)
