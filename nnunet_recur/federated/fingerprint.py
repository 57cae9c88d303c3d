"""A federated nnU-Net fingerprint: each site summarises its cases, the server merges the summaries.

nnU-Net plans from a dataset fingerprint (dataset_fingerprint.json): per-case spacings and shapes after
cropping, the median relative size after cropping, and per channel the mean, std, min, max, median and
0.5/99.5 percentiles of sampled foreground intensities. A site computes the same numbers with nnU-Net's own
`DatasetFingerprintExtractor.analyze_case` and shares only:

- the per-case spacings, shapes after cropping and relative sizes (lists without case ids, shuffled);
- per channel: the number of sampled foreground voxels, their mean, sum of squared deviations, min, max and
  1001 quantiles (a quantile sketch; no voxel value list).

Merging: the lists are concatenated (so the spacing and shape statistics equal the union's exactly); mean,
std, min and max are exact (pooled moments weighted by sample counts, i.e. by cases as nnU-Net samples the
same number per case); median and percentiles invert the count-weighted mixture of the sites' quantile
sketches, exact up to the sketch's resolution: within 0.2 % of the 0.5-99.5 percentile range for continuous
intensities, within one intensity unit for integer-valued images such as CT in HU, where the union's CDF
steps and the sketch interpolates (stated in docs/federated.md, tested end to end in
tests/test_federated_planning.py). nnU-Net samples voxels at random, so even a
central fingerprint differs from run to run by more than this.
"""

from __future__ import annotations

import math
import random

import numpy as np

LEVELS = np.linspace(0.0, 1.0, 1001)
FORMAT = "nnunet-recur fingerprint summary 1"


def channel_summary(values) -> dict:
    """Shareable statistics of one channel's sampled foreground intensities."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no foreground intensity sampled")
    if not np.all(np.isfinite(v)):
        raise ValueError("non-finite foreground intensities")
    mean = float(v.mean())
    return {
        "n": int(v.size),
        "mean": mean,
        "m2": float(np.sum((v - mean) ** 2)),
        "min": float(v.min()),
        "max": float(v.max()),
        "quantiles": np.quantile(v, LEVELS).tolist(),
    }


def _mixture_quantile(channels: list[dict], q: float) -> float:
    """x with count-weighted mixture CDF F(x) = q, each site's CDF linear between its sketch points."""
    grid = np.unique(np.concatenate([np.asarray(c["quantiles"], dtype=np.float64) for c in channels]))
    total = sum(c["n"] for c in channels)
    cdf = np.zeros_like(grid)
    for c in channels:  # sketch points are non-decreasing; np.interp takes ties as steps
        cdf += c["n"] / total * np.interp(grid, np.asarray(c["quantiles"], dtype=np.float64), LEVELS)
    return float(np.interp(q, cdf, grid))


def merge_channels(channels: list[dict]) -> dict:
    """nnU-Net's foreground intensity properties of the union of the sites' samples."""
    n = sum(c["n"] for c in channels)
    mean = sum(c["n"] * c["mean"] for c in channels) / n
    m2 = sum(c["m2"] + c["n"] * (c["mean"] - mean) ** 2 for c in channels)
    return {
        "mean": float(mean),
        "median": _mixture_quantile(channels, 0.5),
        "std": float(math.sqrt(m2 / n)),
        "min": float(min(c["min"] for c in channels)),
        "max": float(max(c["max"] for c in channels)),
        "percentile_99_5": _mixture_quantile(channels, 0.995),
        "percentile_00_5": _mixture_quantile(channels, 0.005),
    }


def site_summary(cases: list[tuple], seed: int = 0) -> dict:
    """A site's summary from `analyze_case` results (shape, spacing, intensities, _, relative size)."""
    if not cases:
        raise ValueError("no case to summarise")
    order = list(range(len(cases)))
    random.Random(seed).shuffle(order)  # the case order does not leak
    channels = len(cases[0][2])
    return {
        "format": FORMAT,
        "n_cases": len(cases),
        "shapes_after_crop": [list(map(int, cases[i][0])) for i in order],
        "spacings": [list(map(float, cases[i][1])) for i in order],
        "relative_sizes_after_cropping": [float(cases[i][4]) for i in order],
        "channels": [
            channel_summary(np.concatenate([np.ravel(c[2][k]) for c in cases])) for k in range(channels)
        ],
    }


def merge(summaries: list[dict]) -> dict:
    """dataset_fingerprint.json (nnU-Net's format) of the union of the sites' cases."""
    if not summaries:
        raise ValueError("no site summary to merge")
    channels = {len(s["channels"]) for s in summaries}
    if len(channels) != 1:
        raise ValueError(f"sites disagree on the number of channels: {sorted(channels)}")
    return {
        "spacings": [sp for s in summaries for sp in s["spacings"]],
        "shapes_after_crop": [sh for s in summaries for sh in s["shapes_after_crop"]],
        "foreground_intensity_properties_per_channel": {
            str(k): merge_channels([s["channels"][k] for s in summaries]) for k in range(channels.pop())
        },
        "median_relative_size_after_cropping": float(
            np.median([r for s in summaries for r in s["relative_sizes_after_cropping"]])
        ),
    }


def summarise_dataset(raw_dataset, samples_per_case: int = 10000, seed: int = 0) -> dict:
    """Run nnU-Net's per-case fingerprint analysis on a site's raw dataset and summarise it."""
    import json
    from pathlib import Path

    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    folder = Path(raw_dataset)
    dataset_json = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    dataset = get_filenames_of_train_images_and_targets(str(folder), dataset_json)
    first = next(iter(dataset.values()))
    reader = determine_reader_writer_from_dataset_json(dataset_json, first["images"][0])
    cases = [
        DatasetFingerprintExtractor.analyze_case(entry["images"], entry["label"], reader, samples_per_case)
        for entry in dataset.values()
    ]
    return site_summary(cases, seed)
