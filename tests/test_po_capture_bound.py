"""bench/po_capture_bound.py bounds issue 14's PO criterion; check the bound's own logic on a few patients."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bound(load_bench):
    return load_bench("po_capture_bound")


@pytest.fixture(scope="module")
def rows(bound):
    return [bound.analyse_patient(31, i, "demo") for i in range(6)]


def test_best_mask_of_the_gtv_volume_captures_at_least_what_the_gtv_captures(rows):
    """The GTV is one mask of its own volume, so the best mask of that volume cannot capture less."""
    for r in rows:
        assert 0.0 < r["expected_capture_gtv"] <= 1.0
        assert r["expected_capture_best_1.0xGTV"] >= r["expected_capture_gtv"] - 1e-9
        assert r["expected_capture_best_0.5xGTV"] <= r["expected_capture_best_0.7xGTV"]
        assert r["expected_capture_best_0.7xGTV"] <= r["expected_capture_best_1.0xGTV"]


def test_generated_pos_are_placed_consistently_with_their_zones(rows):
    """A PO the generator put in pet_gtv / gtv_rest lies in the GTV; one in ctv1 / ctv3 / outside does not."""
    zones = [p for r in rows for p in r["points_of_origin"]]
    assert zones
    for p in zones:
        assert p["in_gtv"] == (p["zone"] in ("pet_gtv", "gtv_rest")), p


def test_cli_writes_json_and_markdown(bound, tmp_path):
    argv = ["--out", str(tmp_path), "--patients", "8", "--draws", "200", "--test-patients", "8"]
    assert bound.main(argv) == 0
    text = (tmp_path / "po_capture_bound.md").read_text()
    assert "GTV contour" in text and "0.7 x GTV" in text
    assert (tmp_path / "po_capture_bound.json").stat().st_size > 0
