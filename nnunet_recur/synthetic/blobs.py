"""Irregular, connected blobs of a prescribed volume (tumours and relapses).

A blob is the connected set of voxels, around a seed voxel, where a smooth random field is highest:
an anisotropic quadratic bowl centred on the seed plus a few Gaussian bumps at about one radius from
it, which give lobes. Taking the top-n voxels of the field among the allowed ones fixes the volume
exactly in voxels; the component that holds the seed is kept (and n enlarged a few times if pieces fell
off), so each blob is one 6-connected region.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def equivalent_radius_mm(volume_cc: float) -> float:
    return float((3 * volume_cc * 1000 / (4 * np.pi)) ** (1 / 3))


def box_around(center_zyx, radius_vox, shape) -> tuple[slice, slice, slice]:
    return tuple(
        slice(max(0, int(c) - int(r) - 1), min(n, int(c) + int(r) + 2))
        for c, r, n in zip(center_zyx, radius_vox, shape, strict=True)
    )


def random_blob_field(
    center_mm, coords_mm, radius_mm: float, rng: np.random.Generator, n_bumps: int = 4, roughness: float = 1.0
) -> np.ndarray:
    """Smooth random field (higher = more inside) on the coordinate grids ``coords_mm = (Z, Y, X)``."""
    Z, Y, X = coords_mm
    cz, cy, cx = center_mm
    axes = radius_mm * rng.uniform(0.75, 1.3, size=3)
    field = -(((X - cx) / axes[0]) ** 2 + ((Y - cy) / axes[1]) ** 2 + ((Z - cz) / axes[2]) ** 2)
    for _ in range(n_bumps):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        q = np.array(center_mm) + direction * radius_mm * rng.uniform(0.6, 1.1)
        tau = radius_mm * rng.uniform(0.35, 0.6)
        amp = roughness * rng.uniform(0.4, 1.0)
        field = field + amp * np.exp(-(((X - q[2]) ** 2 + (Y - q[1]) ** 2 + (Z - q[0]) ** 2) / (2 * tau**2)))
    return field


def top_n_connected(field: np.ndarray, allowed: np.ndarray, seed_zyx, n: int) -> np.ndarray:
    """The component containing ``seed_zyx`` of the ``n`` highest-field allowed voxels (about n voxels)."""
    values = np.where(allowed, field, -np.inf).ravel()
    n_allowed = int(np.count_nonzero(allowed))
    target = max(1, n)
    mask = np.zeros(field.shape, dtype=bool)
    take = min(target, n_allowed)
    for _ in range(6):
        if take <= 0:
            break
        idx = np.argpartition(-values, take - 1)[:take]
        chosen = np.zeros(values.shape, dtype=bool)
        chosen[idx] = True
        chosen = chosen.reshape(field.shape)
        chosen[tuple(seed_zyx)] = True
        lab, _ = ndimage.label(chosen)
        mask = lab == lab[tuple(seed_zyx)]
        got = int(mask.sum())
        if got >= 0.97 * target or take >= n_allowed:
            break
        take = min(n_allowed, take + (target - got))
    return mask


def box_coords_mm(box, spacing_xyz, origin_xyz):
    """Physical (Z, Y, X) coordinate grids (broadcastable) of a box of array indices."""
    zs = origin_xyz[2] + spacing_xyz[2] * np.arange(box[0].start, box[0].stop)
    ys = origin_xyz[1] + spacing_xyz[1] * np.arange(box[1].start, box[1].stop)
    xs = origin_xyz[0] + spacing_xyz[0] * np.arange(box[2].start, box[2].stop)
    return zs[:, None, None], ys[None, :, None], xs[None, None, :]
