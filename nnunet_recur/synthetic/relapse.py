"""The generative relapse rule: where a relapse starts (point of origin, PO) and what it looks like.

Zones around the pre-treatment GTV (GTV = GTVp union GTVn), on the CT grid, restricted to soft tissue of
the neck (no air, airway, bone, canal or brain; below the skull base):

====================  ===================================================================  ===========
zone                  voxels                                                               P(PO here)
====================  ===================================================================  ===========
``pet_gtv``           PET-avid core of the GTV: SUV >= 50 % of the lesion's SUVmax (pre-blur)  55 %
``gtv_rest``          the rest of the GTV                                                        12 %
``ctv1``              0 < distance to the GTV <= 10 mm (high-risk CTV1 minus GTV)                17 %
(CTV2 band)           10-15 mm: never a PO ("none originated specifically in CTV2")               0 %
``ctv3``              15 < distance <= 30 mm (low-risk CTV3 minus CTV2)                           6 %
``outside``           distance > 30 mm, neck soft tissue 5-115 mm below the skull base           10 %
====================  ===================================================================  ===========

(the paper's Figure 3 frequencies, Håkansson et al.). The zone is drawn first, then the PO voxel inside
it: uniformly, except in ``pet_gtv`` where the probability is proportional to SUV^4, so the PO sits in the
hottest part of the tumour. That is the signal a CNN that sees the PET can learn and the GTV contour
alone cannot give: the hot core is eccentric in the GTV.

Relapse volume: the patient's total drawn from a quantile curve (piecewise log-linear through 1.5, 6, 8,
18, 40, 60 cc at quantiles 0, .25, .5, .75, .95, 1: median 8 cc, IQR 6-18 cc as Table 1). With
probability 25 % the relapse has two components (the paper: 60 relapse volumes in 46 patients); the
first takes 55-80 % of the volume, the second has its own PO (own zone draw, restricted to voxels at
least its radius + 4 mm away from the first component; a zone with no such voxel is drawn again, which
slightly favours the outer zones for second components) and the two never touch. Each component is an
irregular blob (``blobs``) grown around its PO in the allowed soft tissue, so its centre of volume lies
close to the PO (recorded as ``centre_of_volume_mm`` with its own zone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_recur.synthetic.blobs import (
    box_around,
    box_coords_mm,
    equivalent_radius_mm,
    random_blob_field,
    top_n_connected,
)
from nnunet_recur.synthetic.geometry import Grid
from nnunet_recur.synthetic.lesions import draw_from_quantiles
from nnunet_recur.synthetic.phantom import FAT, GTVN, GTVP, PAROTID, SOFT, SUBMAND

ZONES = ("pet_gtv", "gtv_rest", "ctv1", "ctv3", "outside")
ZONE_PROBABILITIES = (0.55, 0.12, 0.17, 0.06, 0.10)
CTV1_MARGIN_MM = 10.0
CTV2_MARGIN_MM = 15.0
CTV3_MARGIN_MM = 30.0
OUTSIDE_S_RANGE = (-115.0, -5.0)
RELAPSE_VOLUME_KNOTS = ((0.0, 1.5), (0.25, 6.0), (0.5, 8.0), (0.75, 18.0), (0.95, 40.0), (1.0, 60.0))
TWO_COMPONENT_PROBABILITY = 0.25
PET_GTV_WEIGHT_POWER = 4
ROI_NAMES = ("Relapse Volume_T", "Relapse Volume_N")
RELAPSE_TISSUES = (FAT, SOFT, PAROTID, SUBMAND, GTVP, GTVN)
_BOX_MARGIN_MM = 60.0
_CTV2_CODE = 9


def draw_zone(rng: np.random.Generator) -> str:
    """One draw of the PO zone with the paper's Figure 3 frequencies."""
    return ZONES[int(rng.choice(len(ZONES), p=ZONE_PROBABILITIES))]


def draw_relapse_volume_cc(rng: np.random.Generator) -> float:
    return draw_from_quantiles(RELAPSE_VOLUME_KNOTS, rng)


@dataclass
class ZoneMap:
    """Zone codes (1..5 = ZONES, 9 = CTV2 band, 0 = not allowed) in a box of the CT grid."""

    codes: np.ndarray  # int8, box shape
    box: tuple[slice, slice, slice]

    def zone_at(self, index_zyx) -> str | None:
        local = tuple(int(i) - b.start for i, b in zip(index_zyx, self.box, strict=True))
        if any(v < 0 or v >= n for v, n in zip(local, self.codes.shape, strict=True)):
            return "outside"
        code = int(self.codes[local])
        if code == _CTV2_CODE:
            return "ctv2"
        return ZONES[code - 1] if code else None


def zone_map(
    labels: np.ndarray, gtv: np.ndarray, pet_avid: np.ndarray, grid: Grid, z_skull_base: float
) -> ZoneMap:
    """Zones of the relapse rule around the GTV (CT-grid arrays in, a boxed zone map out)."""
    idx = np.nonzero(gtv)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) for i in idx]
    reach = [_BOX_MARGIN_MM / grid.spacing[a] for a in (2, 1, 0)]
    box = tuple(
        slice(max(0, lo[d] - int(reach[d])), min(gtv.shape[d], hi[d] + int(reach[d]) + 1)) for d in range(3)
    )
    g = gtv[box]
    dist = ndimage.distance_transform_edt(~g, sampling=(grid.spacing[2], grid.spacing[1], grid.spacing[0]))
    s = grid.axis(2)[box[0]] - z_skull_base
    neck = (s < -3.0)[:, None, None]
    allowed = np.isin(labels[box], RELAPSE_TISSUES) & neck
    codes = np.zeros(g.shape, dtype=np.int8)
    core = pet_avid[box] & g
    codes[g & core] = 1
    codes[g & ~core] = 2
    ring = allowed & ~g
    codes[ring & (dist <= CTV1_MARGIN_MM)] = 3
    codes[ring & (dist > CTV1_MARGIN_MM) & (dist <= CTV2_MARGIN_MM)] = _CTV2_CODE
    codes[ring & (dist > CTV2_MARGIN_MM) & (dist <= CTV3_MARGIN_MM)] = 4
    in_outside_s = ((s >= OUTSIDE_S_RANGE[0]) & (s <= OUTSIDE_S_RANGE[1]))[:, None, None]
    codes[ring & (dist > CTV3_MARGIN_MM) & in_outside_s] = 5
    return ZoneMap(codes=codes, box=box)


def sample_po(zones: ZoneMap, uptake: np.ndarray, zone: str, rng: np.random.Generator, eligible=None):
    """A PO voxel (global CT index) inside ``zone`` (and ``eligible``, box-shaped); None if there is none."""
    code = ZONES.index(zone) + 1
    inside = zones.codes == code
    if eligible is not None:
        inside &= eligible
    cand = np.nonzero(inside)
    if len(cand[0]) == 0:
        return None
    if zone == "pet_gtv":
        w = uptake[zones.box][cand].astype(np.float64) ** PET_GTV_WEIGHT_POWER
        pick = int(rng.choice(len(w), p=w / w.sum()))
    else:
        pick = int(rng.integers(len(cand[0])))
    return tuple(int(c[pick]) + b.start for c, b in zip(cand, zones.box, strict=True))


def po_probability(zones: ZoneMap, uptake: np.ndarray) -> np.ndarray:
    """P(the first PO is this voxel) under the rule, on the zone-map box (sums to 1).

    The exact density that :func:`draw_zone` + :func:`sample_po` sample from, for analysis: the best mask of
    a given volume captures the most POs in expectation by taking the voxels of highest probability. Edge
    cases: a zone with no voxel for this patient is redrawn by :func:`make_relapse`, so its probability goes
    to the other zones in proportion; second components (25 % of patients) follow a different, distance-
    restricted draw and are not covered; an all-zero map (no allowed voxel at all) is returned as zeros.
    """
    codes = zones.codes
    p = np.zeros(codes.shape, dtype=np.float64)
    present = np.array([np.any(codes == k + 1) for k in range(len(ZONES))])
    weights = np.array(ZONE_PROBABILITIES) * present
    if weights.sum() == 0:
        return p
    weights /= weights.sum()
    for k, zone in enumerate(ZONES):
        inside = codes == k + 1
        if not inside.any():
            continue
        if zone == "pet_gtv":
            w = uptake[zones.box][inside].astype(np.float64) ** PET_GTV_WEIGHT_POWER
            p[inside] = weights[k] * w / w.sum() if w.sum() > 0 else weights[k] / inside.sum()
        else:
            p[inside] = weights[k] / inside.sum()
    return p


def grow_relapse(
    labels: np.ndarray, grid: Grid, po, volume_cc: float, forbidden, rng, z_skull_base
) -> np.ndarray:
    """An irregular connected blob of ~volume_cc around the PO in neck soft tissue (CT-grid bool mask)."""
    radius = equivalent_radius_mm(volume_cc)
    reach = [2.6 * radius / grid.spacing[a] for a in (2, 1, 0)]
    box = box_around(po, reach, labels.shape)
    s = grid.axis(2)[box[0]] - z_skull_base
    allowed = np.isin(labels[box], RELAPSE_TISSUES) & (s < -3.0)[:, None, None]
    if forbidden is not None:
        allowed &= ~forbidden[box]
    local_po = tuple(p - b.start for p, b in zip(po, box, strict=True))
    allowed[local_po] = True
    coords = box_coords_mm(box, grid.spacing, grid.origin)
    centre = grid.index_to_point(po)
    field = random_blob_field(
        (centre[2], centre[1], centre[0]), coords, radius, rng, n_bumps=5, roughness=1.0
    )
    n = int(round(volume_cc / grid.voxel_volume_cc))
    mask = np.zeros(labels.shape, dtype=bool)
    mask[box] = top_n_connected(field, allowed, local_po, n)
    return mask


def make_relapse(
    labels: np.ndarray,
    gtv: np.ndarray,
    pet_avid: np.ndarray,
    uptake: np.ndarray,
    grid: Grid,
    z_skull_base: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[dict]]:
    """Relapse labels on the CT grid (0, 1 = first component, 2 = second) and one record per component."""
    zones = zone_map(labels, gtv, pet_avid, grid, z_skull_base)
    total = draw_relapse_volume_cc(rng)
    two = rng.uniform() < TWO_COMPONENT_PROBABILITY
    volumes = [total] if not two else [total * (f := rng.uniform(0.55, 0.8)), total * (1 - f)]
    relapse = np.zeros(labels.shape, dtype=np.uint8)
    records: list[dict] = []
    for comp, vol in enumerate(volumes, start=1):
        eligible = None
        if comp > 1:  # room for a separate blob: PO at least R2 + 4 mm from the first component
            dist = ndimage.distance_transform_edt(
                relapse[zones.box] == 0, sampling=(grid.spacing[2], grid.spacing[1], grid.spacing[0])
            )
            eligible = dist >= equivalent_radius_mm(vol) + 4.0
        po = zone = None
        for _ in range(20):  # a zone without an eligible voxel is drawn again
            zone = draw_zone(rng)
            po = sample_po(zones, uptake, zone, rng, eligible)
            if po is not None:
                break
        if po is None:
            continue  # no room for a separate second component: stays a one-component relapse
        forbidden = None
        if comp > 1:  # keep the components apart (not even 26-connected)
            forbidden = ndimage.binary_dilation(relapse > 0, structure=np.ones((3, 3, 3), bool), iterations=2)
        mask = grow_relapse(labels, grid, po, vol, forbidden, rng, z_skull_base)
        relapse[mask] = comp
        k, j, i = np.nonzero(mask)
        centre_idx = (k.mean(), j.mean(), i.mean())
        records.append(
            {
                "component": comp,
                "roi": ROI_NAMES[comp - 1],
                "zone": zone,
                "target_volume_cc": round(vol, 3),
                "po_index_zyx": [int(v) for v in po],
                "position_mm": [round(v, 3) for v in grid.index_to_point(po)],
                "volume_cc": round(float(mask.sum()) * grid.voxel_volume_cc, 3),
                "centre_of_volume_mm": [round(v, 3) for v in grid.index_to_point(centre_idx)],
                "centre_of_volume_zone": zones.zone_at(tuple(int(round(c)) for c in centre_idx)),
            }
        )
    for r in records:
        r["volume_cc"] = round(float(np.count_nonzero(relapse == r["component"])) * grid.voxel_volume_cc, 3)
    return relapse, records
