"""`recur-eval dose-pattern`: an analytic phantom, every classification boundary, "not covered", the
statistics against published values, the guarded dose reader, and the command end to end.

The phantom's dose is linear in patient x (D = D0 + G x_mm): trilinear interpolation reproduces a linear
function exactly, so the dose at a PO and at a centroid is known in closed form, and so is every voxel's
dose (computed here from numpy coordinates, not through the module under test).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hostile_eval_corpus import write as write_on_grid
from typer.testing import CliRunner

from nnunet_recur.evaluation import dose_pattern as dp
from nnunet_recur.evaluation import dose_report, stats
from nnunet_recur.evaluation.cli import app
from nnunet_recur.evaluation.volumes import EvaluationError, Grid, Volume, read_volume
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES

SHAPE = (12, 24, 40)  # z, y, x
SPACING = (2.0, 2.5, 3.0)  # x, y, z mm
ORIGIN = (-40.0, -30.0, 10.0)
D0, SLOPE = 40.0, 0.5  # Gy, Gy/mm along patient x
RX = dp.Prescription(levels_gy=(68.0, 60.0, 50.0), source="test")

runner = CliRunner()


def grid() -> Grid:
    return Grid(size=SHAPE[::-1], spacing=SPACING, origin=ORIGIN, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def x_mm() -> np.ndarray:
    """Patient x of every voxel centre (z, y, x array), from the grid definition directly."""
    x = ORIGIN[0] + SPACING[0] * np.arange(SHAPE[2])
    return np.broadcast_to(x[None, None, :], SHAPE)


def linear_dose() -> np.ndarray:
    return (D0 + SLOPE * x_mm()).astype(np.float32)


def write(array: np.ndarray, path: Path) -> Path:
    """The phantom's grid on disk (the eval corpus's writer, on this module's own grid)."""
    return write_on_grid(array, path, SPACING, ORIGIN)


def sphere(centre_zyx, radius_mm: float) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    sz, sy, sx = SPACING[::-1]
    cz, cy, cx = centre_zyx
    return ((z - cz) * sz) ** 2 + ((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2 <= radius_mm**2


def phantom_label() -> np.ndarray:
    """Three relapses centred at x index 34, 15 and 5. Under the dose 20 + 1.2 (x + 40) Gy (2.4 Gy per x
    index) they receive about 102 Gy (in-field), 56 Gy (elective) and 32 Gy (out of field)."""
    label = np.zeros(SHAPE, np.uint8)
    label[sphere((6, 6, 34), 5.0)] = 1
    label[sphere((6, 17, 15), 6.0)] = 1
    label[sphere((6, 12, 5), 4.0)] = 1
    return label


# ------------------------------------------------------------------------------------------------
# Analytic phantom
# ------------------------------------------------------------------------------------------------


def test_phantom_dose_at_po_and_centroid_and_dvh_match_the_closed_form():
    slope = 1.2  # steeper, so the three relapses span in-field, elective and out of field
    dose = (20.0 + slope * (x_mm() + 40.0)).astype(np.float32)  # 20 Gy at x = -40 mm, 113.6 at x = 38 mm
    label = phantom_label()
    g = grid()
    rows = dp.analyse_case("P", Volume(label, g), Volume(dose, g), RX, nidus_mm=4.0)
    assert len(rows) == 3
    for found in rows:
        row = found.row
        expected_po = 20.0 + slope * (row["po_x_mm"] + 40.0)
        assert row["po_dose_gy"] == pytest.approx(expected_po, abs=1e-4)
        assert row["po_dose_pct_rx"] == pytest.approx(100 * expected_po / 68.0, abs=1e-3)
        # the component: the voxels of the label holding this PO (26-connected; the spheres are apart)
        from scipy import ndimage

        labels, _ = ndimage.label(label, structure=np.ones((3, 3, 3)))
        index = np.round(
            [
                (row["po_z_mm"] - ORIGIN[2]) / SPACING[2],
                (row["po_y_mm"] - ORIGIN[1]) / SPACING[1],
                (row["po_x_mm"] - ORIGIN[0]) / SPACING[0],
            ]
        ).astype(int)
        component = labels == labels[tuple(index)]
        values = 20.0 + slope * (x_mm()[component] + 40.0)
        assert row["voxels"] == component.sum()
        assert row["volume_cc"] == pytest.approx(component.sum() * 2.0 * 2.5 * 3.0 / 1000)
        assert row["dmean_gy"] == pytest.approx(values.mean(), abs=1e-4)
        assert row["dmin_gy"] == pytest.approx(values.min(), abs=1e-4)
        assert row["dmax_gy"] == pytest.approx(values.max(), abs=1e-4)
        centroid_x = x_mm()[component].mean()
        assert row["centroid_dose_gy"] == pytest.approx(20.0 + slope * (centroid_x + 40.0), abs=1e-4)
        # D50 lies within the dose span of one voxel step around the median
        assert abs(row["d50_gy"] - np.median(values)) <= slope * SPACING[0] + 1e-4
        # nidus: the coldest voxel within 4 mm of the PO is 1 voxel (2 mm) lower in x -> PO - 2 x 1.2 Gy
        assert row["nidus_min_gy"] == pytest.approx(expected_po - slope * 2 * SPACING[0], abs=1e-4)
        # V95: the voxels at or above 64.6 Gy
        assert row["v95_pct"] == pytest.approx(100 * np.mean(values >= 0.95 * 68 - 1e-4))
        assert row["covered_fraction"] == 1.0
    by_x = sorted(rows, key=lambda r: r.row["po_x_mm"])
    assert [r.row["po_class"] for r in by_x] == ["out-of-field", "elective", "in-field"]
    # hot sphere: entirely above 64.6 Gy -> Dawson in-field, MDACC A; cold one: E, out of field
    assert by_x[2].row["dawson_class"] == "in-field" and by_x[2].row["mdacc_type"] == "A"
    assert by_x[0].row["dawson_class"] == "out-of-field" and by_x[0].row["mdacc_type"] == "E"
    # middle sphere: 48.8-63.2 Gy, all inside the elective isodose only -> Dawson out of field, MDACC C
    assert by_x[1].row["dawson_class"] == "out-of-field" and by_x[1].row["mdacc_type"] == "C"


def test_dvh_levels_follow_the_documented_order_statistic():
    values = np.arange(1.0, 101.0)  # 100 voxels, 1..100 Gy
    assert dp.dose_at_level(values, 100) == 1.0  # D100 = Dmin
    assert dp.dose_at_level(values, 98) == 3.0  # 98 of the 100 voxels receive >= 3 Gy
    assert dp.dose_at_level(values, 95) == 6.0
    assert dp.dose_at_level(values, 50) == 51.0
    assert math.isnan(dp.dose_at_level(np.array([]), 50))
    # coldest 1 cc of 0.1 cc voxels: 10 voxels; the hottest of them
    assert dp.cold_volume_dose(values, 0.1) == 10.0
    assert dp.cold_volume_dose(values[:5], 0.1) == 5.0  # smaller than 1 cc: Dmax
    dvh = dp.cumulative_dvh(values, np.array([0.0, 1.0, 50.0, 100.0, 101.0]))
    assert dvh.tolist() == [100.0, 100.0, 51.0, 1.0, 0.0]


def test_interpolation_is_exact_on_a_linear_dose_and_nan_where_uncovered():
    dose = linear_dose()
    g = grid()
    point = (-12.3, -20.1, 17.7)
    assert dp.interpolate(dose, dp.physical_to_index(g, point)) == pytest.approx(
        D0 + SLOPE * point[0], abs=1e-4
    )
    holed = dose.copy()
    holed[:, :, 20] = np.nan
    x20 = ORIGIN[0] + 20 * SPACING[0]
    assert math.isnan(dp.interpolate(holed, dp.physical_to_index(g, (x20 - 1.0, -20.0, 17.0))))
    # a neighbour with weight 0 does not contaminate: voxel 21's centre exactly
    assert dp.interpolate(holed, (3.0, 4.0, 21.0)) == pytest.approx(D0 + SLOPE * (x20 + SPACING[0]), abs=1e-4)
    assert math.isnan(dp.interpolate(dose, (0.0, 0.0, SHAPE[2] - 0.5)))  # outside the array


def test_physical_to_index_inverts_index_to_physical_on_a_flipped_oblique_grid():
    c, s = math.cos(0.3), math.sin(0.3)
    oblique = Grid(size=SHAPE[::-1], spacing=SPACING, origin=ORIGIN, direction=(-c, -s, 0, s, -c, 0, 0, 0, 1))
    for index in [(0, 0, 0), (3, 7, 11), (11.5, 2.25, 39)]:
        back = dp.physical_to_index(oblique, oblique.index_to_physical(index))
        assert np.allclose(back, index, atol=1e-9)
    # a covered voxel centre next to an uncovered voxel keeps its dose despite the round trip
    dose = linear_dose()
    dose[:, :, 21] = np.nan
    point = oblique.index_to_physical((3, 4, 20))
    assert dp.interpolate(dose, dp.physical_to_index(oblique, point)) == dose[3, 4, 20]


# ------------------------------------------------------------------------------------------------
# Classification boundaries
# ------------------------------------------------------------------------------------------------


def test_po_dose_class_boundaries():
    at_high = float(np.float32(0.95 * 68.0))  # what a float32 dose file holds for exactly 64.6 Gy
    assert dp.po_dose_class(at_high, RX) == "in-field"
    assert dp.po_dose_class(64.59, RX) == "elective"
    assert dp.po_dose_class(float(np.float32(47.5)), RX) == "elective"
    assert dp.po_dose_class(47.49, RX) == "out-of-field"
    assert dp.po_dose_class(0.0, RX) == "out-of-field"
    assert dp.po_dose_class(math.nan, RX) == dp.NOT_COVERED
    single = dp.Prescription((70.0,), "--rx")  # one level: nothing can be elective
    assert dp.po_dose_class(60.0, single) == "out-of-field"


def test_dawson_boundaries_are_exact_and_uncovered_voxels_can_make_it_undecidable():
    assert dp.dawson_class(95, 0, 100) == "in-field"
    assert dp.dawson_class(94, 0, 100) == "marginal"
    assert dp.dawson_class(20, 0, 100) == "marginal"
    assert dp.dawson_class(19, 0, 100) == "out-of-field"
    assert dp.dawson_class(19, 0, 95) == "marginal"  # 19/95 = 20 % exactly
    assert dp.dawson_class(96, 2, 100) == "in-field"  # either way >= 95 %
    assert dp.dawson_class(94, 1, 100) == dp.NOT_COVERED  # 94 % or 95 %
    assert dp.dawson_class(0, 100, 100) == dp.NOT_COVERED


def test_mdacc_types_and_boundaries():
    high, low = float(np.float32(64.6)), float(np.float32(47.5))
    assert dp.mdacc_type(high, 95, 100, 0, 100, RX) == "A"
    assert dp.mdacc_type(high, 94, 100, 0, 100, RX) == "B"
    assert dp.mdacc_type(low, 10, 95, 0, 100, RX) == "C"
    assert dp.mdacc_type(low, 10, 94, 0, 100, RX) == "D"
    assert dp.mdacc_type(47.4, 0, 100, 0, 100, RX) == "E"
    assert dp.mdacc_type(math.nan, 100, 100, 0, 100, RX) == dp.NOT_COVERED
    assert dp.mdacc_type(70.0, 94, 94, 1, 100, RX) == dp.NOT_COVERED  # A or B


def test_a_po_outside_the_dose_grid_is_not_covered_never_zero_gy():
    dose = linear_dose() + 30.0  # everything in-field
    label = np.zeros(SHAPE, np.uint8)
    label[sphere((6, 12, 10), 5.0)] = 1
    dose[:, :, :12] = np.nan  # the dose grid stops at x index 12: the PO (x index 10) is outside
    g = grid()
    (found,) = dp.analyse_case("P", Volume(label, g), Volume(dose, g), RX)
    row = found.row
    assert math.isnan(row["po_dose_gy"]) and row["po_class"] == dp.NOT_COVERED
    assert row["dawson_class"] == dp.NOT_COVERED and row["mdacc_type"] == dp.NOT_COVERED
    assert 0 < row["covered_fraction"] < 1
    assert row["dmin_gy"] > 60  # DVH over covered voxels only: no 0 Gy from the uncovered ones


# ------------------------------------------------------------------------------------------------
# Statistics: published values, no scipy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # worked examples of Newcombe (1998), Stat Med 17:857, method 3 (Wilson score, no continuity correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe_1998(k, n, low, high):
    got = stats.wilson_ci(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5) and got[1] == pytest.approx(high, abs=5e-5)


def test_wilson_interval_edge_cases():
    assert stats.wilson_ci(0, 0) == (None, None)
    assert stats.wilson_ci(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        stats.wilson_ci(3, 2)


def _component(po_class: str, best: bool, gtv: bool) -> dp.ComponentDose:
    row = {"po_class": po_class, "dawson_class": "in-field", "mdacc_type": "A"}
    return dp.ComponentDose(row=row, dvh=np.zeros(1), captured={"CNN": best, "GTV": gtv})


def test_summary_crosstable_and_mcnemar_on_in_field_pos_only():
    # in-field: CNN only 6, GTV only 1, both 3, neither 2 -> exact McNemar p = 2 (1 + 7) / 2^7 = 0.125
    comps = (
        [_component("in-field", True, False)] * 6
        + [_component("in-field", False, True)]
        + [_component("in-field", True, True)] * 3
        + [_component("in-field", False, False)] * 2
        + [_component("out-of-field", False, True)] * 4  # discordant, but not in-field: not in the test
    )
    summary = dose_report.summarise([dp.CaseDose("c", comps, [])], ["CNN", "GTV"], "CNN", "GTV")
    test = summary["mcnemar_best_vs_gtv_infield"]
    assert (test["n_po"], test["only_a"], test["only_b"], test["both"]) == (12, 6, 1, 3)
    assert test["p_value"] == pytest.approx(0.125)
    assert summary["capture_by_po_class"]["CNN"]["in-field"]["count"] == 9
    assert summary["capture_by_po_class"]["GTV"]["out-of-field"]["count"] == 4
    assert summary["capture_by_po_class"]["GTV"]["all"]["n"] == 16
    counts = summary["classifications"]["po_class"]["counts"]
    assert counts["in-field"]["count"] == 12 and counts["out-of-field"]["count"] == 4
    assert counts["in-field"]["ci95_wilson"] == list(stats.wilson_ci(12, 16))


# ------------------------------------------------------------------------------------------------
# The guarded dose reader
# ------------------------------------------------------------------------------------------------


def test_dose_reader_keeps_nan_and_refuses_inf_negative_and_other_grids(tmp_path):
    dose = linear_dose()
    dose[0, 0, 0] = np.nan
    path = write(dose, tmp_path / "a.nii.gz")
    with pytest.raises(EvaluationError, match="non-finite"):
        read_volume(path)  # every other reader still refuses NaN
    read = dp.read_dose(path)
    assert math.isnan(read.array[0, 0, 0]) and read.array[1, 0, 0] == dose[1, 0, 0]
    bad = dose.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(EvaluationError, match=r"b\.nii\.gz: 1 infinite"):
        dp.read_dose(write(bad, tmp_path / "b.nii.gz"))
    bad = np.nan_to_num(dose) - 100.0
    with pytest.raises(EvaluationError, match=r"c\.nii\.gz: .*negative"):
        dp.read_dose(write(bad.astype(np.float32), tmp_path / "c.nii.gz"))
    other = Grid(size=SHAPE[::-1], spacing=(2.0, 2.5, 2.0), origin=ORIGIN, direction=grid().direction)
    with pytest.raises(EvaluationError, match="geometry mismatch"):
        dp.read_dose(path, Volume(np.empty(0), other))


def test_prescriptions_from_the_plan_json_or_rx(tmp_path):
    plan = tmp_path / "c.json"
    plan.write_text(json.dumps({"prescriptions_gy": [50, 68, 60], "prescription_source": "RTPLAN"}))
    got = dp.read_prescription(plan, (70.0,))
    assert got.levels_gy == (68.0, 60.0, 50.0) and got.source == "RTPLAN"
    plan.write_text(json.dumps({"prescriptions_gy": [], "prescription_source": None}))
    assert dp.read_prescription(plan, dp.parse_rx("70, 56")) == dp.Prescription((70.0, 56.0), "--rx")
    with pytest.raises(EvaluationError, match="give --rx"):
        dp.read_prescription(plan, None)
    plan.write_text(json.dumps({"prescriptions_gy": [68, -1]}))
    with pytest.raises(EvaluationError, match="positive"):
        dp.read_prescription(plan, None)
    with pytest.raises(EvaluationError, match="--rx"):
        dp.parse_rx("68,abc")


def test_target_location_and_signed_distance():
    g = grid()
    label = np.zeros(SHAPE, np.uint8)
    label[sphere((6, 12, 20), 4.0)] = 1
    gtv = np.zeros(SHAPE, bool)
    gtv[:, :, 18:] = True  # PO at x index 20: 3 voxels (6 mm) from the nearest outside voxel centre
    ctv = np.zeros(SHAPE, bool)
    ctv[:, :, 10:] = True
    (found,) = dp.analyse_case(
        "P", Volume(label, g), Volume(linear_dose(), g), RX, targets={"gtv": gtv, "ctv1": ctv}
    )
    assert found.row["target"] == "gtv"
    assert found.row["target_distance_mm"] == pytest.approx(-3 * SPACING[0])  # index 17 is outside
    assert found.row["gtv_distance_mm"] == pytest.approx(-3 * SPACING[0])
    far = np.zeros(SHAPE, bool)
    far[:, :, 30:] = True
    (found,) = dp.analyse_case("P", Volume(label, g), Volume(linear_dose(), g), RX, targets={"gtv": far})
    assert found.row["target"] == "gtv" and found.row["target_distance_mm"] == pytest.approx(10 * SPACING[0])


# ------------------------------------------------------------------------------------------------
# The command end to end
# ------------------------------------------------------------------------------------------------


def build_inputs(root: Path) -> dict[str, Path]:
    """Two cases: labels, doses (+ plan JSON on one), GTV targets, a CNN and a GTV-contour method."""
    dose = (20.0 + 1.2 * (x_mm() + 40.0)).astype(np.float32)
    for n, case in enumerate(["RECUR_001", "RECUR_002"]):
        label = phantom_label()
        write(label, root / "labels" / f"{case}.nii.gz")
        case_dose = dose.copy()
        if n == 1:
            case_dose[:, :, :8] = np.nan  # the cold relapse is outside this dose grid
        write(case_dose, root / "dose" / f"{case}.nii.gz")
        gtv = np.zeros(SHAPE, np.uint8)
        gtv[:, 3:10, 30:38] = 1
        write(gtv, root / "masks" / f"{case}_gtv.nii.gz")
        write(np.ones(SHAPE, np.uint8), root / "masks" / f"{case}_brain.nii.gz")  # not a target
        cnn = np.zeros(SHAPE, np.uint8)
        cnn[:, :, 15:] = 1  # holds the hot and the straddling relapse
        write(cnn, root / "cnn" / f"{case}.nii.gz")
        write(gtv, root / "gtvpred" / f"{case}.nii.gz")
    plan = {"prescriptions_gy": [68.0, 60.0, 50.0], "prescription_source": "RTPLAN"}
    (root / "dose" / "RECUR_001.json").write_text(json.dumps(plan))
    return {k: root / k for k in ("labels", "dose", "masks", "cnn", "gtvpred")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("dose_pattern"))


def _args(inputs, out, *extra):
    return [
        "dose-pattern",
        "--gt", str(inputs["labels"]),
        "--dose", str(inputs["dose"]),
        "--targets", str(inputs["masks"]),
        "--pred", f"CNN={inputs['cnn']}",
        "--pred", f"GTV contour={inputs['gtvpred']}",
        "--rx", "68,60,50",
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_dose_pattern_command_writes_the_whole_report(inputs, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, _args(inputs, out))
    assert result.exit_code == 0, result.output
    with open(out / "dose_pattern.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert {r["rx_source"] for r in rows} == {"RTPLAN", "--rx"}
    by_case = {(r["case"], r["po_class"]) for r in rows}
    assert ("RECUR_002", dp.NOT_COVERED) in by_case and ("RECUR_001", "out-of-field") in by_case
    hot = [r for r in rows if r["po_class"] == "in-field"]
    assert len(hot) == 2 and all(r["target"] == "gtv" and float(r["target_distance_mm"]) < 0 for r in hot)
    assert all(r["captured:CNN"] == "1" for r in hot)
    assert all(r["target"] != "brain" for r in rows)
    report = json.loads((out / "dose_pattern.json").read_text())
    assert report["n_components"] == 6 and report["gtv_method"] == "GTV contour"
    assert report["capture_by_po_class"]["CNN"]["in-field"]["count"] == 2
    assert report["mcnemar_best_vs_gtv_infield"]["n_po"] == 2
    uncovered = [c for c in report["components"] if c["po_class"] == dp.NOT_COVERED]
    assert uncovered and uncovered[0]["po_dose_gy"] is None  # NaN -> null, never 0
    text = (out / "dose_pattern.md").read_text()
    assert "Dawson" in text and "| CNN |" in text and "Exact McNemar" in text
    assert (out / "dose_pattern.png").stat().st_size > 1000
    assert json.loads((out / "dose-pattern.status.json").read_text())["state"] == "complete"


def test_dose_pattern_bad_input_is_one_line_and_exit_2(inputs, tmp_path):
    result = runner.invoke(app, _args(inputs, tmp_path / "o", "--rx", "68,x"))
    assert result.exit_code == BAD_INPUT
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error: --rx")
    args = _args(inputs, tmp_path / "o")
    args[args.index("--dose") + 1] = str(tmp_path / "nowhere")
    result = runner.invoke(app, args)
    assert result.exit_code == BAD_INPUT and "dose folder not found" in result.output


def test_a_bad_case_is_recorded_and_the_others_go_on(inputs, tmp_path):
    import shutil

    dose = tmp_path / "dose"
    shutil.copytree(inputs["dose"], dose)
    bad = np.full(SHAPE, 60.0, np.float32)
    bad[0, 0, 0] = np.inf
    write(bad, dose / "RECUR_002.nii.gz")
    args = _args(inputs, tmp_path / "o")
    args[args.index("--dose") + 1] = str(dose)
    result = runner.invoke(app, args)
    assert result.exit_code == FAILED_CASES, result.output
    assert "RECUR_002.nii.gz: 1 infinite" in result.output
    report = json.loads((tmp_path / "o" / "dose_pattern.json").read_text())
    assert report["cases"] == ["RECUR_001"] and "RECUR_002" in report["failed"]


def test_compare_with_dose_adds_the_in_field_column(inputs, tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        [
            "compare", "--gt", str(inputs["labels"]), "--pred", f"CNN={inputs['cnn']}",
            "--pred", f"GTV contour={inputs['gtvpred']}", "--dose", str(inputs["dose"]), "--rx", "68,60,50",
            "--no-hd95", "--no-curves", "--no-figures", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = (out / "table1.md").read_text()
    assert "In-field POs captured |" in table.splitlines()[0]
    assert "| Ground truth |" in table and " 2 / 2 |" in table  # CNN holds both in-field POs
    with open(out / "table1.csv", encoding="utf-8") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert rows["Ground truth"]["po_infield_total"] == "2"
    assert rows["CNN"]["po_infield_captured"] == "2"
    assert json.loads((out / "summary.json").read_text())["table1"][1]["po_infield_total"] == 2


def test_in_field_column_leaves_out_a_case_without_a_usable_dose(inputs, tmp_path):
    import shutil

    from nnunet_recur.evaluation import comparison

    dose = tmp_path / "dose"
    shutil.copytree(inputs["dose"], dose)
    (dose / "RECUR_002.nii.gz").unlink()
    (dose / "RECUR_001.json").write_text("{not json")
    methods = (comparison.Method.parse(f"CNN={inputs['cnn']}"),)
    job = comparison.CompareInputs(labels=inputs["labels"], methods=methods, hd95=False, curves=False)
    results = [comparison.evaluate_case(case, job) for case in ("RECUR_001", "RECUR_002")]
    infield = dose_report.infield_capture(results, inputs["labels"], dose, "68,60,50")
    assert infield["infield_total"] == 0 and infield["captured"] == {}
    assert set(infield["left_out"]) == {"RECUR_001", "RECUR_002"}
    assert "RECUR_001.json: not valid JSON" in infield["left_out"]["RECUR_001"]
    assert "RECUR_002.nii.gz: file not found" in infield["left_out"]["RECUR_002"]
    (dose / "RECUR_001.json").unlink()  # no plan JSON: --rx gives the prescriptions
    infield = dose_report.infield_capture(results, inputs["labels"], dose, "68,60,50")
    assert (infield["infield_total"], infield["captured"], list(infield["left_out"])) == (
        1,
        {"CNN": 1},
        ["RECUR_002"],
    )
    without_rx = dose_report.infield_capture(results[:1], inputs["labels"], dose, None)
    assert "give --rx" in without_rx["left_out"]["RECUR_001"]
