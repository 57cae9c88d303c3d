"""The synthetic treatment plan: prescriptions, an analytic planned dose, the RT Dose grid it is exported on.

Why analytic: the ground truth must say what dose each point of origin received without reading the
exported file back (a reader bug would otherwise confirm itself). The dose is a closed-form function of
one number, d = the distance (mm) from a point to the nearest GTV voxel centre (0 inside the GTV, the same
distance that defines the relapse zones of ``relapse.py``):

    D(d) = 50 S(d; e3) + 10 S(d; e2) + A1 S(d; e1) + bath(d) (1 - S(d; e3)),
    S(d; e) = erfc((d - e) / (sqrt(2) sigma)) / 2,   bath(d) = 15 Gy exp(-max(d - 30, 0) / 40 mm)

- Prescriptions (34 fractions): 68 Gy to GTV + 5 mm, 60 Gy to the band up to 15 mm, 50 Gy to the elective
  neck up to 30 mm. The edges e1 < e2 < e3 are solved so that the 95 % isodose of each level lies at
  ``ISODOSE_95_MM`` = 8, 16 and 30 mm: each target is covered by its 95 % isodose, the 68 Gy one with the
  spill a planner leaves past GTV + 5 mm.
- Penumbra: every edge is an error function with sigma 4.2 mm, so a full fall-off drops from 80 % to 20 %
  over 1.683 sigma = 7.1 mm (the 6-8 mm of a photon beam edge). Beyond the elective neck a low-dose bath
  decays from 15 Gy; D falls monotonically with d.
- Where relapse zones land (docs/synthetic_cohort.md): pet_gtv, gtv_rest (d = 0, D ~ 68.8 Gy) in-field;
  ctv1 (0 < d <= 10) in-field up to 8 mm (~70 % of its voxels); ctv3 (15 < d <= 30) elective
  (>= 47.5 Gy); outside (d > 30) out of field (< 47.5 Gy).

The RT Dose grid is the plan's own: 2.5-3 mm, covering the body's bounding box on the CT, with its origin
shifted from the CT voxel centres by a random fraction of its spacing; pixels uint16 or uint32 with
DoseGridScaling; GridFrameOffsetVector relative for about 70 % of patients, absolute for the others.
These choices come from their own random stream (``SeedSequence([seed, index, PLAN_STREAM])``), so adding
the plan changed no image of any patient.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from nnunet_recur.synthetic.geometry import Grid

PRESCRIPTIONS_GY = (68.0, 60.0, 50.0)
FRACTIONS = 34
TARGET_OUTER_MM = (5.0, 15.0, 30.0)  # outer edge of each target, as distance from the GTV
ISODOSE_95_MM = (8.0, 16.0, 30.0)  # where each level's 95 % isodose lies
PENUMBRA_SIGMA_MM = 4.2
HIGH_STEP_GY = 9.0  # 60 -> 68 step amplitude; > 8 so the GTV gets ~101 % of 68 Gy
BATH_GY = 15.0
BATH_DECAY_MM = 40.0
BEAM_WEIGHTS = (0.24, 0.22, 0.2, 0.18, 0.16)  # five beams; their doses sum to the plan dose
DOSE_SPACINGS_MM = (2.5, 2.75, 3.0)
ABSOLUTE_OFFSETS_PROBABILITY = 0.3
PLAN_STREAM = 0x0D05E
# Export quirks of --defects (none excludes the patient; the converter must handle each):
DOSE_QUIRKS = ("beam_doses", "fraction_dose", "descending_nonuniform_offsets")


def _step(d, edge: float):
    from scipy.special import erfc

    return 0.5 * erfc((np.asarray(d, dtype=np.float64) - edge) / (math.sqrt(2.0) * PENUMBRA_SIGMA_MM))


def _profile(d, edges) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    bath = BATH_GY * np.exp(-np.maximum(d - TARGET_OUTER_MM[2], 0.0) / BATH_DECAY_MM)
    outer = _step(d, edges[2])
    low, mid, high = PRESCRIPTIONS_GY[2], PRESCRIPTIONS_GY[1] - PRESCRIPTIONS_GY[2], HIGH_STEP_GY
    return low * outer + mid * _step(d, edges[1]) + high * _step(d, edges[0]) + bath * (1.0 - outer)


# (e1, e2, e3): solved once (fixed-point rounds of 1-D roots, see tests/test_synthetic_plan.py) so that the
# 95 % isodoses lie at ISODOSE_95_MM; hard-coded because scipy.optimize costs 0.6 s to import.
DOSE_EDGES_MM = (8.227566, 17.860393, 36.137101)


def dose_edges() -> tuple[float, float, float]:
    return DOSE_EDGES_MM


def dose_of_distance(d) -> np.ndarray:
    """The planned dose (Gy) at distance d (mm) from the GTV (the closed form of the module docstring)."""
    return _profile(d, dose_edges())


@dataclass
class SyntheticPlan:
    """One patient's plan: the GTV voxel centres the dose is built on, and its RT Dose grid choices."""

    gtv_points_mm: np.ndarray  # (n, 3) x, y, z of the GTV voxel centres
    grid: Grid  # the RT Dose grid (identity direction, z ascending)
    bits: int  # 16 or 32
    offsets_form: str  # "relative" or "absolute"

    def distance_mm(self, points_mm) -> np.ndarray:
        """Euclidean distance (mm) from each point to the nearest GTV voxel centre."""
        from scipy.spatial import cKDTree

        points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        return cKDTree(self.gtv_points_mm).query(points, workers=1)[0]

    def dose_at(self, points_mm) -> np.ndarray:
        """The analytic planned dose (Gy) at points (n, 3) in mm."""
        return dose_of_distance(self.distance_mm(points_mm))

    @functools.cached_property
    def dose_on_grid(self) -> np.ndarray:
        """The analytic dose at the RT Dose grid's points, ``[z, y, x]`` float64 (Gy); computed once."""
        zz, yy, xx = np.meshgrid(self.grid.axis(2), self.grid.axis(1), self.grid.axis(0), indexing="ij")
        points = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
        return self.dose_at(points).reshape(self.grid.shape)

    def as_dict(self) -> dict:
        return {
            "prescriptions_gy": list(PRESCRIPTIONS_GY),
            "fractions": FRACTIONS,
            "target_outer_mm": list(TARGET_OUTER_MM),
            "isodose_95_mm": list(ISODOSE_95_MM),
            "penumbra_sigma_mm": PENUMBRA_SIGMA_MM,
            "penumbra_80_20_mm": round(2 * 0.8416 * PENUMBRA_SIGMA_MM, 2),
            "dose_grid": self.grid.as_dict(),
            "bits": self.bits,
            "offsets_form": self.offsets_form,
        }


def make_plan(seed: int, index: int, ct: Grid, gtv: np.ndarray, body: np.ndarray) -> SyntheticPlan:
    """The plan of one patient: GTV (CT-grid bool array) -> dose model; body box -> RT Dose grid."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), PLAN_STREAM]))
    k, j, i = np.nonzero(gtv)
    points = np.column_stack(
        [ct.origin[0] + i * ct.spacing[0], ct.origin[1] + j * ct.spacing[1], ct.origin[2] + k * ct.spacing[2]]
    )
    inplane = float(rng.choice(DOSE_SPACINGS_MM))
    spacing = (inplane, inplane, float(rng.choice(DOSE_SPACINGS_MM)))
    bk, bj, bi = np.nonzero(body) if body.any() else np.nonzero(np.ones_like(body))
    lo = np.array([bi.min(), bj.min(), bk.min()], dtype=float)
    hi = np.array([bi.max(), bj.max(), bk.max()], dtype=float)
    lo_mm = np.array(ct.origin) + lo * np.array(ct.spacing)
    hi_mm = np.array(ct.origin) + hi * np.array(ct.spacing)
    shift = rng.uniform(0.15, 0.85, size=3) * np.array(spacing)  # off the CT voxel centres
    origin = lo_mm - shift
    size = tuple(int(math.ceil((h - o) / s)) + 1 for h, o, s in zip(hi_mm, origin, spacing, strict=True))
    grid = Grid(size, spacing, tuple(round(float(v), 3) for v in origin))
    bits = int(rng.choice((16, 32)))
    form = "absolute" if rng.uniform() < ABSOLUTE_OFFSETS_PROBABILITY else "relative"
    return SyntheticPlan(gtv_points_mm=points, grid=grid, bits=bits, offsets_form=form)


def assign_dose_quirks(cases: int, seed: int, taken: set[int]) -> dict[int, str]:
    """Patient index -> dose quirk for --defects: clean patients only (not in ``taken``), deterministic.

    With >= 10 cases every quirk hits one patient; with fewer, ``cases // 4`` quirks do."""
    count = len(DOSE_QUIRKS) if cases >= 10 else min(len(DOSE_QUIRKS), cases // 4)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), PLAN_STREAM])).permutation(cases)
    free = [int(i) for i in order if int(i) not in taken]
    return {free[j]: DOSE_QUIRKS[j] for j in range(min(count, len(free)))}
