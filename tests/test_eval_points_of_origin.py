"""Points of origin: components, erosion, snapping and both capture criteria on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_recur.evaluation import points_of_origin as po
from nnunet_recur.evaluation.volumes import Grid, Volume


def volume(array, spacing_xyz=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    grid = Grid(
        size=tuple(reversed(array.shape)),
        spacing=spacing_xyz,
        origin=origin,
        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
    )
    return Volume(array, grid)


def test_two_components_one_captured():
    reference = np.zeros((20, 20, 20), dtype=np.uint8)
    reference[2:7, 2:7, 2:7] = 1  # 5x5x5 cube, centre (4, 4, 4)
    reference[12:17, 10:15, 11:16] = 1  # second cube, centre (14, 12, 13)
    points = po.points_of_origin(volume(reference, origin=(10.0, -5.0, 2.0), spacing_xyz=(2.0, 1.0, 3.0)))
    assert [p.index_zyx for p in points] == [(4, 4, 4), (14, 12, 13)]
    assert [p.voxels for p in points] == [125, 125]
    assert [p.eroded_voxels for p in points] == [27, 27]
    assert points[0].physical_mm == pytest.approx((10.0 + 4 * 2.0, -5.0 + 4 * 1.0, 2.0 + 4 * 3.0))
    assert points[0].index_xyz == (4, 4, 4)
    prediction = np.zeros_like(reference)
    prediction[3:6, 3:6, 3:6] = 1  # covers the first PO only
    assert [po.captured(p, prediction) for p in points] == [True, False]
    assert [po.captured_published(p, prediction) for p in points] == [True, False]


def test_thin_component_uses_the_component_when_erosion_empties_it():
    reference = np.zeros((10, 12, 12), dtype=bool)
    reference[4:6, 2:9, 3:8] = True  # two slices thick: a 3x3x3 erosion removes everything
    (point,) = po.points_of_origin(volume(reference))
    assert point.eroded_voxels == 0
    assert point.voxels == 2 * 7 * 5
    assert reference[point.index_zyx]  # snapped inside the component
    assert point.index_zyx[1:] == (5, 5)
    assert point.index_zyx[0] in (4, 5)
    assert point.core.sum() == point.voxels  # the published criterion then uses the component


def test_corner_touching_voxels_form_one_component_26_connectivity():
    reference = np.zeros((6, 6, 6), dtype=bool)
    reference[1, 1, 1] = True
    reference[2, 2, 2] = True  # touches the first by a corner only
    reference[4, 4, 4] = True  # separate
    points = po.points_of_origin(volume(reference))
    assert len(points) == 2
    assert points[0].voxels == 2


def test_ring_po_is_snapped_into_the_component():
    reference = np.zeros((9, 15, 15), dtype=bool)
    reference[2:7, 2:13, 2:13] = True
    reference[:, 5:10, 5:10] = False  # a thick ring: the centre of volume lies in the hole
    (point,) = po.points_of_origin(volume(reference))
    assert point.eroded_voxels > 0
    assert reference[point.index_zyx]
    assert point.index_zyx[0] == 4


def test_snapping_uses_physical_distance():
    # an L-shape whose nearest voxel to the centroid is on one arm in index space, the other in mm
    reference = np.zeros((3, 9, 9), dtype=bool)
    reference[1, 1:8, 1] = True
    reference[1, 7, 1:7] = True
    centre = np.argwhere(reference).mean(axis=0)
    (iso,) = po.points_of_origin(volume(reference))
    (aniso,) = po.points_of_origin(volume(reference, spacing_xyz=(5.0, 1.0, 1.0)))  # x is 5 mm

    def dist(index, spacing):
        return float(np.sum(((np.array(index) - centre) * spacing) ** 2))

    voxels = np.argwhere(reference)
    best_aniso = min(dist(v, (1.0, 1.0, 5.0)) for v in voxels)
    assert dist(aniso.index_zyx, (1.0, 1.0, 5.0)) == pytest.approx(best_aniso)
    assert iso.index_zyx == (1, 5, 1) and aniso.index_zyx == (1, 7, 2)


def test_equidistant_tie_is_broken_by_the_documented_rule_not_round_off():
    # the same symmetric L in two array orders: the centroid is equally far from both arms. Old code:
    # argmin of float distances, so round-off picked the arm; now ties go to the first in array order.
    reference = np.zeros((3, 9, 9), dtype=bool)
    reference[1, 1:8, 1] = True
    reference[1, 7, 1:8] = True
    (point,) = po.points_of_origin(volume(reference))
    assert point.index_zyx == (1, 5, 1)
    transposed = np.ascontiguousarray(reference.transpose(0, 2, 1))
    (other,) = po.points_of_origin(volume(transposed))
    assert other.index_zyx == (1, 1, 5)  # first in array order of the transposed L: same rule, not luck


def test_po_snaps_into_the_eroded_core_preferring_the_deepest_voxel():
    # a thick ring: the core's centre lies in the hole; the nearest *component* voxel is on the inner
    # rim (old code: (4, 4, 7)), the nearest *core* voxel one step deeper (four tie: array order)
    reference = np.zeros((9, 15, 15), dtype=bool)
    reference[2:7, 2:13, 2:13] = True
    reference[:, 5:10, 5:10] = False
    (point,) = po.points_of_origin(volume(reference))
    assert point.index_zyx == (4, 3, 7)
    # centre of a 2x2x... core is equidistant to 2^3 voxels: the deepest wins, then array order
    cube = np.zeros((8, 8, 8), dtype=bool)
    cube[1:7, 1:7, 1:7] = True  # 6^3 cube, eroded core 4^3: centre (3.5, 3.5, 3.5) is a tie of 8 voxels
    (tied,) = po.points_of_origin(volume(cube))
    assert tied.index_zyx == (3, 3, 3)


def test_distance_from_po_to_prediction_in_mm():
    reference = np.zeros((5, 5, 20), dtype=bool)
    reference[2, 2, 2] = True
    prediction = np.zeros_like(reference)
    prediction[2, 2, 7] = True  # 5 voxels away along x, spacing x = 2 mm -> 10 mm
    vol = volume(reference, spacing_xyz=(2.0, 1.0, 1.0))
    points = po.points_of_origin(vol)
    assert po.distances_to_prediction_mm(points, prediction, vol.grid) == [pytest.approx(10.0)]
    assert po.distances_to_prediction_mm(points, reference, vol.grid) == [0.0]
    assert po.distances_to_prediction_mm(points, np.zeros_like(reference), vol.grid) == [None]


def test_published_criterion_differs_from_po_voxel():
    reference = np.zeros((12, 12, 12), dtype=np.uint8)
    reference[2:9, 2:9, 2:9] = 1  # 7^3 cube, eroded core 5^3 around (5, 5, 5)
    (point,) = po.points_of_origin(volume(reference))
    assert point.index_zyx == (5, 5, 5)
    prediction = np.zeros_like(reference)
    prediction[3, 3, 3] = 1  # inside the eroded core, away from the PO
    assert not po.captured(point, prediction)
    assert po.captured_published(point, prediction)
    prediction[:] = 0
    prediction[2, 2, 2] = 1  # in the relapse but eroded away: neither criterion
    assert not po.captured(point, prediction)
    assert not po.captured_published(point, prediction)


def test_empty_reference_has_no_po():
    assert po.points_of_origin(volume(np.zeros((4, 4, 4), dtype=np.uint8))) == []


def test_component_at_the_volume_edge():
    reference = np.zeros((8, 8, 8), dtype=bool)
    reference[0:3, 0:3, 0:3] = True  # erosion treats outside the volume as background
    (point,) = po.points_of_origin(volume(reference))
    assert point.eroded_voxels == 1
    assert point.index_zyx == (1, 1, 1)


@pytest.mark.parametrize("seed", range(3))
def test_distance_search_in_growing_boxes_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(5, 40, 3))
        prediction = rng.random(shape) < rng.choice([0.0, 0.0005, 0.01, 0.2])
        spacing = rng.uniform(0.5, 6.0, 3)
        index = tuple(int(rng.integers(0, n)) for n in shape)
        points = np.argwhere(prediction)
        expected = None
        if points.size:
            expected = float(np.sqrt((((points - index) * spacing) ** 2).sum(axis=1).min()))
        got = po._nearest_mm(prediction, index, spacing)
        assert (got is None and expected is None) or got == pytest.approx(expected, abs=1e-9)
