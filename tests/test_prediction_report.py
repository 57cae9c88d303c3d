"""report.html: orientation markers on both axes of every view, a probability colour scale that is not
bone-like, the patient identifier only on request, and the dose-painting section with its figure."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from nnunet_recur.prediction import report
from nnunet_recur.prediction.dose_painting import DoseMapOptions, dose_map

IDENTITY = np.eye(3)
FEET_FIRST_FLIPPED = np.diag([-1.0, -1.0, -1.0])


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        (
            IDENTITY,
            {
                "axial": (("R", "L"), ("A", "P")),
                "coronal": (("R", "L"), ("S", "I")),
                "sagittal": (("A", "P"), ("S", "I")),
            },
        ),
        (
            FEET_FIRST_FLIPPED,
            {
                "axial": (("L", "R"), ("P", "A")),
                "coronal": (("L", "R"), ("I", "S")),
                "sagittal": (("P", "A"), ("I", "S")),
            },
        ),
    ],
)
def test_every_view_marks_both_axes_from_the_ct_direction(direction, expected):
    views = report._views((1, 2, 3), (1.0, 1.0, 2.0), direction)
    assert {title: (sides, ends) for title, _, _, sides, ends in views} == expected


def test_probability_colour_scale_cannot_be_taken_for_bone():
    cmap = matplotlib.colormaps[report.PROBABILITY_CMAP]
    top = np.asarray(cmap(1.0)[:3])
    assert report.PROBABILITY_CMAP not in {"hot", "gray", "bone", "Greys", "afmhot", "gist_heat"}
    assert top.min() < 0.5  # the top of the scale is a saturated colour, not the white of bone in the window


def _summary_and_png():
    probability = np.zeros((6, 16, 16), np.float32)
    probability[2:4, 5:10, 5:10] = 0.8
    gtv = probability > 0.5
    ct = np.zeros_like(probability)
    png = report.overlay_png(
        ct, probability, gtv, [("Recur_p50", gtv, (255, 0, 0))], (1.0, 1.0, 2.0), IDENTITY
    )
    summary = {
        "levels": [],
        "model": {"id": "m", "folds": [0], "fold_choice": "best", "tta": False},
        "gtv": {"volume_ml": 1.0, "suvmax": 5.0},
        "crop": {"size_voxels": None},
        "created": "now",
        "provenance": {},
    }
    return summary, png, probability, gtv, ct


def test_patient_identifier_appears_only_when_asked_for():
    summary, png, *_ = _summary_and_png()
    assert png.startswith(b"\x89PNG")
    assert "Patient ID" not in report.render_html(summary, png)
    page = report.render_html(summary, png, patient_id="HN-0042")
    assert "Patient ID: HN-0042" in page


def test_dose_section_shows_the_prescription_the_levels_and_the_histogram():
    summary, png, probability, gtv, ct = _summary_and_png()
    result = dose_map(probability, gtv, DoseMapOptions(levels=3), voxel_ml=0.002)
    summary["dose_map"] = result.summary
    figure = report.dose_png(ct, result.dose, result.region, (1.0, 1.0, 2.0), IDENTITY, 0.002)
    page = report.render_html(summary, png, figure)
    assert "Dose painting prescription" in page and "prescription-volume histogram" in page
    assert "NOT a calculated dose" in page and result.summary["levels"][0]["roi"] in page
    assert "Dose painting" not in report.render_html({**summary, "dose_map": None}, png)
