"""Grids of the synthetic cohort: the CT grid, the PET grid and the working ("phantom") grid.

Deliberately independent of ``nnunet_recur.dataset_conversion``: the generator and the converter must
not share geometry code, otherwise a round trip through one wrong helper would look right.

Conventions: patient coordinates in mm, DICOM/LPS (x to the patient's left, y to posterior, z to
superior), identity direction, the origin is the centre of the first voxel. Arrays are indexed
``[z, y, x]`` as SimpleITK's ``GetArrayFromImage`` returns them; sizes/spacings/origins are ``(x, y, z)``.

Sizes (``size`` argument of :func:`grids_for`):

- ``paper``: CT 512 x 512 x 120 at 0.9765 x 0.9765 x 2.0 mm (500 x 500 x 240 mm), PET 240 x 240 x 126 at
  2.036 x 2.036 x 2.0 mm (488.6 x 488.6 x 252 mm), the paper's spacings.
- ``small``: both in-plane spacings scaled (CT x3 -> 2.9295 mm, PET x2 -> 4.072 mm) and both slice
  spacings x2 (4.0 mm); CT 72 x 72 x 45 (233 k voxels), PET 50 x 50 x 48. PET keeps a finer voxel than
  a x3 scaling would give so that its hot tumour core is still resolved.
- ``demo``: the ``small`` field of view at twice its CT voxel size (5.859 x 5.859 x 8.0 mm): CT 36 x 36 x 23
  (30 k voxels), PET 34 x 34 x 26 at 6.0 x 6.0 x 8.0 mm. Made for ``recur demo`` on a CPU: the network's
  patch shrinks ~8x, so many more epochs fit the same minutes. Volumes in cc follow the same distributions
  (a median 8 cc relapse is ~29 CT voxels).

In both sizes the PET grid has its own origin and extent: a smaller in-plane field of view shifted by a
fraction of a voxel, and 1.5 slices more at each end in z (its slice planes fall half-way between the CT
planes), so the converter really has to resample PET onto CT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZES = ("small", "demo", "paper")

#: (CT size xyz, CT spacing xyz, PET size xyz, PET spacing xyz) per size profile.
_PROFILES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float], tuple[int, int, int], tuple]] = {
    "paper": ((512, 512, 120), (0.9765, 0.9765, 2.0), (240, 240, 126), (2.036, 2.036, 2.0)),
    "small": ((72, 72, 45), (2.9295, 2.9295, 4.0), (50, 50, 48), (4.072, 4.072, 4.0)),
    "demo": ((36, 36, 23), (5.859, 5.859, 8.0), (34, 34, 26), (6.0, 6.0, 8.0)),
}

#: extra working-grid slices below/above the CT so the PET field of view is covered.
PHANTOM_Z_PAD = 4


@dataclass(frozen=True)
class Grid:
    """A regular, axis-aligned voxel grid (identity direction)."""

    size: tuple[int, int, int]  # (nx, ny, nz)
    spacing: tuple[float, float, float]  # mm
    origin: tuple[float, float, float]  # mm, centre of voxel (0, 0, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)``."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_volume_cc(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def axis(self, i: int) -> np.ndarray:
        """Physical coordinates (mm) of the voxel centres along axis ``i`` (0 = x, 1 = y, 2 = z)."""
        return self.origin[i] + self.spacing[i] * np.arange(self.size[i], dtype=np.float64)

    def index_to_point(self, index_zyx) -> tuple[float, float, float]:
        """Array index ``(k, j, i)`` -> physical point ``(x, y, z)`` in mm."""
        k, j, i = (float(v) for v in index_zyx)
        return (
            self.origin[0] + i * self.spacing[0],
            self.origin[1] + j * self.spacing[1],
            self.origin[2] + k * self.spacing[2],
        )

    def to_image(self, array: np.ndarray):
        """Wrap an ``[z, y, x]`` array as a SimpleITK image carrying this grid."""
        import SimpleITK as sitk

        if array.shape != self.shape:
            raise ValueError(f"array shape {array.shape} does not match grid shape {self.shape}")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing([float(v) for v in self.spacing])
        image.SetOrigin([float(v) for v in self.origin])
        return image

    def as_dict(self) -> dict:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": [round(v, 4) for v in self.origin],
        }


@dataclass(frozen=True)
class PatientGrids:
    """CT grid, PET grid, and the working grid = CT grid padded in z (the phantom is rendered there)."""

    ct: Grid
    pet: Grid
    phantom: Grid

    @property
    def ct_slices_in_phantom(self) -> slice:
        """The phantom-grid slices that are the CT slices."""
        return slice(PHANTOM_Z_PAD, PHANTOM_Z_PAD + self.ct.size[2])


def grids_for(size: str, rng: np.random.Generator) -> PatientGrids:
    """Draw one patient's CT/PET grids for a size profile (couch position and PET offsets vary)."""
    if size not in _PROFILES:
        raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")
    ct_size, ct_sp, pet_size, pet_sp = _PROFILES[size]
    # CT: in-plane field of view centred on the scanner axis (as a real reconstruction), couch height z.
    z0 = round(float(rng.uniform(-420.0, -220.0)), 1)
    ct_origin = (
        -0.5 * ct_sp[0] * (ct_size[0] - 1),
        -0.5 * ct_sp[1] * (ct_size[1] - 1),
        z0,
    )
    ct = Grid(ct_size, ct_sp, ct_origin)
    # PET: own field of view, shifted by a fraction of a voxel, 1.5 slices beyond the CT at each end.
    shift_x, shift_y = (round(float(v), 3) for v in rng.uniform(-0.45, 0.45, size=2) * pet_sp[0])
    pet_origin = (
        -0.5 * pet_sp[0] * (pet_size[0] - 1) + shift_x,
        -0.5 * pet_sp[1] * (pet_size[1] - 1) + shift_y,
        z0 - 1.5 * pet_sp[2],
    )
    pet = Grid(pet_size, pet_sp, pet_origin)
    phantom = Grid(
        (ct_size[0], ct_size[1], ct_size[2] + 2 * PHANTOM_Z_PAD),
        ct_sp,
        (ct_origin[0], ct_origin[1], z0 - PHANTOM_Z_PAD * ct_sp[2]),
    )
    return PatientGrids(ct=ct, pet=pet, phantom=phantom)


def resample_linear(values: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Trilinear interpolation of an axis-aligned grid onto another (0 outside the source)."""
    out = values.astype(np.float32, copy=False)
    for axis_xyz, axis_arr in ((2, 0), (1, 1), (0, 2)):
        pos = (target.axis(axis_xyz) - source.origin[axis_xyz]) / source.spacing[axis_xyz]
        n = source.size[axis_xyz]
        inside = (pos >= -1e-6) & (pos <= n - 1 + 1e-6)
        pos = np.clip(pos, 0, n - 1)
        lo = np.minimum(np.floor(pos).astype(np.int64), max(n - 2, 0))
        w = (pos - lo).astype(np.float32)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis_arr] = -1
        w = w.reshape(shape)
        a = np.take(out, lo, axis=axis_arr)
        b = np.take(out, hi, axis=axis_arr)
        out = a * (1 - w) + b * w
        out = out * inside.reshape(shape).astype(np.float32)
    return out
