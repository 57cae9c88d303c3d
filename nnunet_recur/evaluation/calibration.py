"""How far a voxel's predicted relapse probability is from the observed relapse frequency (calibration).

A network trained with a Dice loss gives polarised probabilities, so "0.3" has no meaning until it is
measured. Everything here works on (probability, label) pairs of the voxels of a *region*:

- ``gtv+20mm`` (default): voxels within 20 mm (Euclidean, physical spacing) of the GTV, inside the body;
  far background voxels would otherwise swamp every number with easy zeros;
- ``body``: every body voxel; ``all``: every voxel of the image.

The body is the CT above -300 HU, its largest 26-connected component with holes filled (air in the
airway and sinuses counts as inside); without a CT the region is not cut to the body (noted).

Metrics (pooled over the region's voxels of all cases, binary: p = P(relapse), y in {0, 1}):

- **ECE**: 15 equal-width bins [k/15, (k+1)/15); as in torchmetrics' ``BinaryCalibrationError`` (the
  library the tests check against), a probability of exactly 1.0 falls into a 16th bin of its own.
  ECE = sum_b n_b/N * |mean(y)_b - mean(p)_b|.
- **adaptive ECE**: the same sum over equal-mass bins whose edges are the 1/15 quantiles of the pooled
  probabilities; tied probabilities stay in one bin, so a polarised map can have fewer than 15 bins.
- **MCE**: max_b |mean(y)_b - mean(p)_b| over the non-empty equal-width bins.
- **Brier**: mean (p - y)^2. **NLL**: mean -[y log p + (1 - y) log(1 - p)], p clipped to
  [1e-7, 1 - 1e-7] so a saturated wrong voxel costs 16.1 nats instead of infinity.

Edge cases: an empty region (no voxel) gives NaN metrics, never an error; a case with no GTV has no
``gtv+20mm`` region and is reported as such. Every metric is a function of per-bin sums (count, sum p,
sum y) and voxel sums, so a patient-level bootstrap resamples whole patients by adding their sums,
without re-reading voxels: CIs are the 2.5/97.5 percentiles of 1000 resamples (seeded). The adaptive
ECE's bootstrap keeps the edges of the full sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REGIONS = ("gtv+20mm", "body", "all")
DEFAULT_REGION = "gtv+20mm"
MARGIN_MM = 20.0
BINS = 15
NLL_CLIP = 1e-7
BODY_HU = -300.0
BOOTSTRAP_SAMPLES = 1000
METRICS = ("ece", "adaptive_ece", "mce", "brier", "nll")


def region_mask(
    gtv: np.ndarray | None,
    spacing_zyx,
    region: str = DEFAULT_REGION,
    ct: np.ndarray | None = None,
    margin_mm: float = MARGIN_MM,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Boolean region (z, y, x): the GTV grown by `margin_mm` and cut to the body (see module doc); the
    shape comes from the CT, the GTV or `shape`."""
    if region not in REGIONS:
        raise ValueError(f"--region {region!r}: choose one of {', '.join(REGIONS)}")
    if ct is not None:
        shape = ct.shape
    elif gtv is not None:
        shape = gtv.shape
    if region == "all":
        return np.ones(shape, dtype=bool)
    body = body_mask(ct) if ct is not None else np.ones(shape, dtype=bool)
    if region == "body":
        return body
    if gtv is None or not np.any(gtv):
        return np.zeros(shape, dtype=bool)
    return grow_mm(np.asarray(gtv) != 0, spacing_zyx, margin_mm) & body


def grow_mm(mask: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """Voxels whose centre lies within `margin_mm` of a voxel of `mask` (exact Euclidean distance),
    computed inside the mask's bounding box padded by the margin."""
    from scipy import ndimage

    spacing = np.asarray(spacing_zyx, dtype=float)
    pad = np.ceil(margin_mm / spacing).astype(int) + 1
    where = np.argwhere(mask)
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad + 1, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = distance <= margin_mm + 1e-9
    return out


def body_mask(ct: np.ndarray) -> np.ndarray:
    """CT > -300 HU, largest 26-connected component, holes filled."""
    from scipy import ndimage

    above = np.asarray(ct) > BODY_HU
    labels, count = ndimage.label(above, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return above
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))


# -- per-case sufficient statistics ------------------------------------------------------------------------
def equal_width_bin(probability: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Bin index of each probability: [k/bins, (k+1)/bins) -> k, exactly 1.0 -> bins (torchmetrics' rule)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, bins)


def adaptive_edges(probability: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Inner edges of the equal-mass bins: the distinct k/bins quantiles (k = 1..bins-1)."""
    if probability.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(probability, np.arange(1, bins) / bins, method="lower"))


@dataclass
class CaseStats:
    """Sums over one case's region voxels, from which every metric (and its bootstrap) follows."""

    case: str
    voxels: int
    width: np.ndarray  # (bins + 1, 3): count, sum p, sum y per equal-width bin
    brier_sum: float
    nll_sum: float
    probability: np.ndarray = field(repr=False)  # region probabilities (float32), for adaptive bins
    label: np.ndarray = field(repr=False)  # region labels (bool)

    @classmethod
    def of(cls, case: str, probability: np.ndarray, label: np.ndarray, bins: int = BINS) -> CaseStats:
        p = np.asarray(probability, dtype=np.float64).ravel()
        y = np.asarray(label).ravel().astype(bool)
        if p.shape != y.shape:
            raise ValueError(f"{case}: {p.size} probabilities for {y.size} labels")
        if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
            raise ValueError(f"{case}: probabilities outside [0, 1] or not finite")
        return cls(
            case=case,
            voxels=int(p.size),
            width=_bin_sums(equal_width_bin(p, bins), p, y, bins + 1),
            brier_sum=float(np.sum((p - y) ** 2)),
            nll_sum=float(np.sum(_nll(p, y))),
            probability=p.astype(np.float32),
            label=y,
        )


def _nll(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, NLL_CLIP, 1.0 - NLL_CLIP)
    return -np.where(y, np.log(clipped), np.log1p(-clipped))


def _bin_sums(index: np.ndarray, p: np.ndarray, y: np.ndarray, slots: int) -> np.ndarray:
    return np.stack(
        [
            np.bincount(index, minlength=slots),
            np.bincount(index, weights=p, minlength=slots),
            np.bincount(index, weights=y.astype(np.float64), minlength=slots),
        ],
        axis=1,
    ).astype(np.float64)


def binned_errors(sums: np.ndarray) -> tuple[float, float]:
    """(ECE, MCE) from per-bin (count, sum p, sum y); NaN when no voxel."""
    count = sums[..., 0]
    total = count.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(count > 0, np.abs(sums[..., 2] - sums[..., 1]) / np.maximum(count, 1), 0.0)
        ece = np.sum(gap * count, axis=-1) / total
    mce = np.where(count > 0, gap, -np.inf).max(axis=-1)
    return ece, np.where(np.isfinite(mce), mce, np.nan)


def pooled_metrics(cases: list[CaseStats], bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """Every metric pooled over `cases`, with patient-level bootstrap 95 % CIs (see module doc)."""
    voxels = np.array([c.voxels for c in cases], dtype=np.float64)
    if not cases or voxels.sum() == 0:
        return {m: {"value": None, "ci95": [None, None]} for m in METRICS} | {
            "voxels": 0,
            "cases": len(cases),
        }
    edges = adaptive_edges(np.concatenate([c.probability for c in cases]).astype(np.float64))
    adaptive = np.stack(
        [
            _bin_sums(
                np.searchsorted(edges, c.probability.astype(np.float64), side="right"),
                c.probability,
                c.label,
                edges.size + 1,
            )
            for c in cases
        ]
    )
    width = np.stack([c.width for c in cases])
    brier = np.array([c.brier_sum for c in cases])
    nll = np.array([c.nll_sum for c in cases])

    def metrics_of(weights: np.ndarray) -> dict[str, np.ndarray]:
        # weights: (R, n_cases) how often each case is drawn; R = 1 for the point estimate
        ece, mce = binned_errors(np.einsum("rc,cbk->rbk", weights, width))
        adaptive_ece, _ = binned_errors(np.einsum("rc,cbk->rbk", weights, adaptive))
        n = weights @ voxels
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "ece": ece,
                "adaptive_ece": adaptive_ece,
                "mce": mce,
                "brier": (weights @ brier) / n,
                "nll": (weights @ nll) / n,
            }

    point = metrics_of(np.ones((1, len(cases))))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(cases), size=(bootstrap, len(cases)))
    weights = np.zeros((bootstrap, len(cases)))
    np.add.at(weights, (np.repeat(np.arange(bootstrap), len(cases)), draws.ravel()), 1.0)
    resampled = metrics_of(weights) if bootstrap else {}
    out: dict = {"voxels": int(voxels.sum()), "cases": len(cases), "adaptive_bins": int(edges.size + 1)}
    for name in METRICS:
        value = float(np.asarray(point[name]).ravel()[0])
        ci = [None, None]
        if bootstrap:
            finite = np.asarray(resampled[name], dtype=float)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                ci = [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
        out[name] = {"value": value if np.isfinite(value) else None, "ci95": ci}
    return out


def reliability_table(cases: list[CaseStats], bins: int = BINS) -> list[dict]:
    """Rows of the reliability diagram: per equal-width bin, voxels, mean probability, observed frequency."""
    sums = np.sum([c.width for c in cases], axis=0) if cases else np.zeros((bins + 1, 3))
    rows = []
    for k, (count, sum_p, sum_y) in enumerate(sums):
        lo = k / bins
        hi = (k + 1) / bins if k < bins else 1.0
        rows.append(
            {
                "bin": k,
                "lower": round(lo, 6),
                "upper": round(hi, 6),
                "voxels": int(count),
                "mean_probability": float(sum_p / count) if count else None,
                "observed_frequency": float(sum_y / count) if count else None,
            }
        )
    return rows


def po_reliability(probability: np.ndarray, points, threshold: float = 0.5) -> list[dict]:
    """The predicted probability at each point of origin and whether the `threshold` ROI captures it
    (probability > threshold, `recur predict`'s rule), one row per PO."""
    return [
        {
            "po": p.component,
            "probability": float(probability[p.index_zyx]),
            "captured": bool(probability[p.index_zyx] > threshold),
        }
        for p in points
    ]


def plot_reliability(tables: dict[str, list[dict]], path, title: str = "") -> None:
    """Reliability diagram (observed relapse frequency against mean predicted probability per bin, one
    line per method, the diagonal is perfect calibration) with the voxel histogram below, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnunet_recur.atomic_io import atomic_path

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, rows in tables.items():
        used = [r for r in rows if r["voxels"]]
        top.plot(
            [r["mean_probability"] for r in used],
            [r["observed_frequency"] for r in used],
            marker="o",
            label=name,
        )
        centres = [(r["lower"] + r["upper"]) / 2 for r in rows]
        bottom.plot(centres, [max(r["voxels"], 1) for r in rows], marker=".", label=name)
    top.set_ylabel("observed relapse frequency")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(fontsize=8)
    top.set_title(title, fontsize=9)
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted relapse probability (15 equal-width bins)")
    bottom.set_ylabel("voxels")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
