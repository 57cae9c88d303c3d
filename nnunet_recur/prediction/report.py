"""Per-patient report: report.html (opens offline, PNG overlays embedded as base64) beside summary.json.

Overlays: axial, coronal and sagittal planes through the voxel of highest probability, CT (window
-160..240 HU) with the probability map (transparent below 0.05), the GTV outline (white) and the ROIs
(coloured outlines); each view marks the patient's left (L) and right (R), read from the CT's direction.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np

from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT


def _lr_labels(direction: np.ndarray, axis_of_columns: int) -> tuple[str, str]:
    """(left-of-image, right-of-image) labels: which patient side the image's column axis runs to.

    `direction` is the 3x3 index->LPS matrix; the column axis of a displayed plane is image axis
    `axis_of_columns` (0 = x). Column index grows toward LPS +x (patient Left) when direction[0, axis] > 0.
    """
    return ("R", "L") if direction[0, axis_of_columns] > 0 else ("L", "R")


def overlay_png(
    ct: np.ndarray,
    probability: np.ndarray,
    gtv: np.ndarray | None,
    rois: list[tuple[str, np.ndarray, tuple[int, int, int]]],
    spacing_xyz: tuple[float, float, float],
    direction: np.ndarray,
) -> bytes:
    """One PNG with the three planes through the voxel of highest probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z, y, x = np.unravel_index(int(np.argmax(probability)), probability.shape)
    sx, sy, sz = spacing_xyz
    views = [
        ("axial", lambda a: a[z], sy / sx, 0),
        ("coronal", lambda a: a[::-1, y, :], sz / sx, 0),
        ("sagittal", lambda a: a[::-1, :, x], sz / sy, 1),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    for ax, (title, take, aspect, column_axis) in zip(axes, views, strict=True):
        ax.imshow(take(ct), cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="nearest")
        prob = np.ma.masked_less(take(probability), 0.05)
        ax.imshow(prob, cmap="hot", vmin=0, vmax=1, alpha=0.55, aspect=aspect, interpolation="nearest")
        if gtv is not None and take(gtv).any():
            ax.contour(take(gtv), levels=[0.5], colors="white", linewidths=0.8)
        for _, mask, color in rois:
            plane = take(mask)
            if plane.any():
                ax.contour(plane, levels=[0.5], colors=[tuple(c / 255 for c in color)], linewidths=1.0)
        if title == "sagittal":
            left, right = ("A", "P") if direction[1, 1] > 0 else ("P", "A")
        else:
            left, right = _lr_labels(direction, column_axis)
        for text, position in ((left, 0.02), (right, 0.95)):
            ax.text(position, 0.5, text, transform=ax.transAxes, color="yellow", fontsize=14, weight="bold")
        ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle(RESEARCH_STATEMENT, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def render_html(summary: dict, png: bytes) -> str:
    """A self-contained HTML page: summary tables and the embedded overlay."""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(level.get(k, '')))}</td>"
            for k in ("roi", "rule", "threshold", "volume_ml", "fraction_in_gtv", "volume_ml_sd_over_folds")
        )
        + "</tr>"
        for level in summary["levels"]
    )
    facts = {
        "model": summary["model"]["id"],
        "folds": ", ".join(map(str, summary["model"]["folds"])) + f" ({summary['model']['fold_choice']})",
        "test-time mirroring": summary["model"]["tta"],
        "calibration": summary.get("calibration", {}).get("note", "none"),
        "GTV volume (ml)": summary["gtv"]["volume_ml"],
        "SUVmax in GTV": summary["gtv"]["suvmax"],
        "SUVmax-threshold volume": summary["gtv"].get("suvmax_threshold_note", ""),
        "crop box (voxels x, y, z)": summary["crop"]["size_voxels"],
        "created": summary["created"],
    }
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recur predict report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #bbb;padding:3px 8px;text-align:left}}
.warn{{background:#fee;border:2px solid #c00;padding:0.6em;font-weight:bold}}</style></head><body>
<p class="warn">{RESEARCH_STATEMENT}. Predicted relapse risk for research use; every ROI must be reviewed by a
clinician before any use in treatment planning.</p>
<h1>Relapse risk prediction</h1>
<table>{fact_rows}</table>
<h2>ROIs</h2>
<table><tr><th>ROI</th><th>rule</th><th>probability cut</th><th>volume (ml)</th><th>fraction in GTV</th>
<th>volume SD over folds (ml)</th></tr>{rows}</table>
<h2>Overlays</h2>
<p>CT with the relapse probability (hot colours), GTV (white) and ROI outlines, through the voxel of highest
probability. L/R mark the patient's left and right.</p>
<img alt="axial, coronal and sagittal overlays" src="data:image/png;base64,{image}" style="max-width:100%">
<h2>Notes</h2><ul>{notes}</ul>
<h2>Provenance</h2><pre>{html.escape(json.dumps(summary["provenance"], indent=2))}</pre>
</body></html>
"""
