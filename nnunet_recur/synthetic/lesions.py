"""Primary tumour (GTVp) and nodal tumour (GTVn): shape, place and heterogeneous FDG uptake.

- GTVp: in the lateral oropharyngeal wall (tonsil region) 28-50 mm below the skull base; volume drawn
  from a log-linear quantile curve (median 22 cc, IQR 13-45 cc) so that GTVp + GTVn has the paper's GTV
  contour median of ~28 cc (Table 1: 28 cc, IQR 17-71). Uptake: a rim of SUV 2.5-4.5 rising towards an
  *eccentric* hot core (centre 30-65 % of the equivalent radius away from the GTV centroid) with a
  nominal SUVmax of 8-32 (log-uniform), sometimes a second smaller hot lobe. The blurred PET therefore
  shows SUVmax of about 6-25.
- GTVn (60 % of patients, 85 % ipsilateral): a level II/III node, 1.5-30 cc (median 6 cc), SUV 2-4 rising
  to 4-12 at its centre.

The PET-avid core of a lesion (the paper's PET-GTV) is the set of its voxels whose pre-blur SUV is at least
50 % of the lesion's maximum; the relapse rule (``relapse``) uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_recur.synthetic.blobs import (
    box_around,
    box_coords_mm,
    equivalent_radius_mm,
    random_blob_field,
    top_n_connected,
)
from nnunet_recur.synthetic.geometry import Grid
from nnunet_recur.synthetic.phantom import GTVN, GTVP, SOFT_TISSUES, Anatomy

GTVP_VOLUME_KNOTS = ((0.0, 4.0), (0.25, 13.0), (0.5, 22.0), (0.75, 45.0), (1.0, 100.0))
GTVN_VOLUME_KNOTS = ((0.0, 1.5), (0.5, 6.0), (1.0, 30.0))
NODE_PROBABILITY = 0.6
PET_AVID_FRACTION = 0.5


def draw_from_quantiles(knots, rng: np.random.Generator) -> float:
    """Inverse-CDF draw from a quantile curve that is piecewise linear in log(value)."""
    q, v = np.array(knots, dtype=float).T
    return float(np.exp(np.interp(rng.uniform(), q, np.log(v))))


@dataclass
class Lesion:
    name: str  # "GTVp" or "GTVn"
    mask: np.ndarray  # bool, phantom grid
    uptake: np.ndarray  # float32 SUV of the mask voxels, same order as np.nonzero(mask)
    hot_core_mm: tuple[float, float, float]
    suvmax_nominal: float

    @property
    def pet_avid(self) -> np.ndarray:
        """Boolean mask (phantom grid) of the lesion's PET-avid core."""
        core = np.zeros_like(self.mask)
        idx = np.nonzero(self.mask)
        keep = self.uptake >= PET_AVID_FRACTION * float(self.uptake.max())
        core[tuple(i[keep] for i in idx)] = True
        return core


def _point_to_index(grid: Grid, point_xyz) -> tuple[int, int, int]:
    return tuple(
        int(np.clip(round((point_xyz[a] - grid.origin[a]) / grid.spacing[a]), 0, grid.size[a] - 1))
        for a in (2, 1, 0)
    )


def _grow(labels, grid: Grid, centre_xyz, volume_cc, rng, n_bumps) -> np.ndarray:
    radius = equivalent_radius_mm(volume_cc)
    seed = _point_to_index(grid, centre_xyz)
    reach = [2.4 * radius / grid.spacing[a] for a in (2, 1, 0)]
    box = box_around(seed, reach, labels.shape)
    allowed = np.isin(labels[box], SOFT_TISSUES)
    local_seed = tuple(s - b.start for s, b in zip(seed, box, strict=True))
    allowed[local_seed] = True
    coords = box_coords_mm(box, grid.spacing, grid.origin)
    centre_zyx = (centre_xyz[2], centre_xyz[1], centre_xyz[0])
    field = random_blob_field(centre_zyx, coords, radius, rng, n_bumps=n_bumps, roughness=0.8)
    n = int(round(volume_cc / grid.voxel_volume_cc))
    local = top_n_connected(field, allowed, local_seed, n)
    mask = np.zeros(labels.shape, dtype=bool)
    mask[box] = local
    return mask


def _coords_of(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, 3) physical x, y, z of the mask voxels, in np.nonzero order."""
    k, j, i = np.nonzero(mask)
    return np.stack(
        [
            grid.origin[0] + i * grid.spacing[0],
            grid.origin[1] + j * grid.spacing[1],
            grid.origin[2] + k * grid.spacing[2],
        ],
        axis=1,
    )


def _primary_uptake(pts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple, float]:
    centroid = pts.mean(axis=0)
    d = np.linalg.norm(pts - centroid, axis=1)
    radius = float(np.sqrt(np.mean(d**2)) * np.sqrt(5 / 3))  # sphere: rms distance = R * sqrt(3/5)
    frac = rng.uniform(0.3, 0.65)
    ring = np.nonzero(np.abs(d - frac * radius) < 0.2 * radius)[0]
    hot = pts[rng.choice(ring)] if len(ring) else centroid
    sigma1 = radius * rng.uniform(0.35, 0.5)
    base = rng.uniform(2.5, 4.5)
    peak = float(np.exp(rng.uniform(np.log(8.0), np.log(32.0))))
    g = np.exp(-np.sum((pts - hot) ** 2, axis=1) / (2 * sigma1**2))
    if rng.uniform() < 0.5 and len(pts) > 1:
        hot2 = pts[rng.integers(len(pts))]
        sigma2 = radius * rng.uniform(0.2, 0.3)
        g = g + rng.uniform(0.3, 0.6) * np.exp(-np.sum((pts - hot2) ** 2, axis=1) / (2 * sigma2**2))
    uptake = base + (peak - base) * np.minimum(g, 1.0)
    return uptake.astype(np.float32), tuple(float(v) for v in hot), peak


def _node_uptake(pts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple, float]:
    centroid = pts.mean(axis=0)
    d = np.linalg.norm(pts - centroid, axis=1)
    radius = float(np.sqrt(np.mean(d**2)) * np.sqrt(5 / 3)) + 1e-3
    base = rng.uniform(2.0, 4.0)
    peak = float(rng.uniform(4.0, 12.0))
    uptake = base + (peak - base) * np.exp(-(d**2) / (2 * (0.55 * radius) ** 2))
    return uptake.astype(np.float32), tuple(float(v) for v in centroid), peak


def place_lesions(labels: np.ndarray, grid: Grid, an: Anatomy, rng: np.random.Generator) -> list[Lesion]:
    """Draw GTVp (always) and GTVn (sometimes), write them into ``labels`` (in place), return them."""
    lesions: list[Lesion] = []
    side = 1 if rng.uniform() < 0.5 else -1
    vol_p = draw_from_quantiles(GTVP_VOLUME_KNOTS, rng)
    r_p = equivalent_radius_mm(vol_p)
    s_p = rng.uniform(-50, -28)
    centre_p = (
        an.cx + side * (an.airway_rx + 4 + 0.45 * r_p),
        an.cy - 0.2 * an.neck_b + rng.uniform(-3, 5),
        an.z_skull_base + s_p,
    )
    mask_p = _grow(labels, grid, centre_p, vol_p, rng, n_bumps=4)
    labels[mask_p] = GTVP
    uptake, hot, peak = _primary_uptake(_coords_of(mask_p, grid), rng)
    lesions.append(Lesion("GTVp", mask_p, uptake, hot, peak))
    if rng.uniform() < NODE_PROBABILITY:
        side_n = side if rng.uniform() < 0.85 else -side
        vol_n = draw_from_quantiles(GTVN_VOLUME_KNOTS, rng)
        r_n = equivalent_radius_mm(vol_n)
        s_n = rng.uniform(-75, -50)
        x_n = an.cx + side_n * 0.58 * an.neck_a
        y_n = an.cy - 0.08 * an.neck_b
        while (
            np.linalg.norm(np.subtract((x_n, y_n, an.z_skull_base + s_n), centre_p)) < r_p + r_n + 6
            and s_n > -110
        ):
            s_n -= 4.0
        mask_n = _grow(labels, grid, (x_n, y_n, an.z_skull_base + s_n), vol_n, rng, n_bumps=2) & ~mask_p
        if mask_n.any():
            labels[mask_n] = GTVN
            uptake_n, hot_n, peak_n = _node_uptake(_coords_of(mask_n, grid), rng)
            lesions.append(Lesion("GTVn", mask_n, uptake_n, hot_n, peak_n))
    return lesions
