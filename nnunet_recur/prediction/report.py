"""Per-patient report: report.html (opens offline, PNG overlays embedded as base64) beside summary.json.

Overlays: axial, coronal and sagittal planes through the voxel of highest probability, CT (window
-160..240 HU) with the probability map (viridis, transparent below 0.05: a purple-to-yellow scale that
cannot be taken for bone, which the grey CT window shows white), the GTV outline (white) and the ROIs
(coloured outlines), with a legend naming each outline colour and a colour bar. Each view marks both of its
axes with the patient's side, read from the CT's direction: L/R, A/P and S/I. With --dose-map a second
figure shows the prescription (Gy) on the same planes and the prescription-volume histogram of the region.
The patient identifier appears only with --report-patient-id (a printout cannot then be mixed up).
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


PROBABILITY_CMAP = "viridis"  # not "hot"/"gray"-like: its top is yellow, never the white of bone
DOSE_CMAP = "plasma"
GTV_RGB = (255, 255, 255)


def _ap_labels(direction: np.ndarray) -> tuple[str, str]:
    """(top, bottom) of an image whose rows run along image axis y: A on top when rows grow toward P."""
    return ("A", "P") if direction[1, 1] > 0 else ("P", "A")


def _si_labels(direction: np.ndarray) -> tuple[str, str]:
    """(top, bottom) of a plane shown with z reversed (highest slice index on top)."""
    return ("S", "I") if direction[2, 2] > 0 else ("I", "S")


def _views(peak: tuple[int, int, int], spacing_xyz, direction: np.ndarray):
    """(title, take, aspect, (left, right), (top, bottom)) of the three planes through `peak` (z, y, x)."""
    z, y, x = peak
    sx, sy, sz = spacing_xyz
    sagittal_lr = ("A", "P") if direction[1, 1] > 0 else ("P", "A")
    return [
        ("axial", lambda a: a[z], sy / sx, _lr_labels(direction, 0), _ap_labels(direction)),
        ("coronal", lambda a: a[::-1, y, :], sz / sx, _lr_labels(direction, 0), _si_labels(direction)),
        ("sagittal", lambda a: a[::-1, :, x], sz / sy, sagittal_lr, _si_labels(direction)),
    ]


def _mark_sides(ax, sides: tuple[str, str], ends: tuple[str, str]) -> None:
    style = {"transform": ax.transAxes, "color": "yellow", "fontsize": 14, "weight": "bold"}
    ax.text(0.02, 0.5, sides[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, sides[1], ha="right", va="center", **style)
    ax.text(0.5, 0.98, ends[0], ha="center", va="top", **style)
    ax.text(0.5, 0.02, ends[1], ha="center", va="bottom", **style)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def overlay_png(
    ct: np.ndarray,
    probability: np.ndarray,
    gtv: np.ndarray | None,
    rois: list[tuple[str, np.ndarray, tuple[int, int, int]]],
    spacing_xyz: tuple[float, float, float],
    direction: np.ndarray,
) -> bytes:
    """One PNG with the three planes through the voxel of highest probability, a legend and a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    peak = np.unravel_index(int(np.argmax(probability)), probability.shape)
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.4))
    shown = None
    for ax, (title, take, aspect, sides, ends) in zip(
        axes, _views(peak, spacing_xyz, direction), strict=True
    ):
        ax.imshow(take(ct), cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="nearest")
        prob = np.ma.masked_less(take(probability), 0.05)
        shown = ax.imshow(
            prob, cmap=PROBABILITY_CMAP, vmin=0, vmax=1, alpha=0.6, aspect=aspect, interpolation="nearest"
        )
        if gtv is not None and take(gtv).any():
            ax.contour(take(gtv), levels=[0.5], colors="white", linewidths=0.8)
        for _, mask, color in rois:
            plane = take(mask)
            if plane.any():
                ax.contour(plane, levels=[0.5], colors=[tuple(c / 255 for c in color)], linewidths=1.0)
        _mark_sides(ax, sides, ends)
        ax.set_title(title)
        ax.set_axis_off()
    handles = (
        [Line2D([], [], color=tuple(c / 255 for c in GTV_RGB), lw=2, label="GTV")] if gtv is not None else []
    )
    handles += [
        Line2D([], [], color=tuple(c / 255 for c in color), lw=2, label=name) for name, _, color in rois
    ]
    if handles:
        legend = fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=True)
        legend.get_frame().set_facecolor("#555555")
        for text in legend.get_texts():
            text.set_color("white")
    bar = fig.colorbar(shown, ax=list(axes), fraction=0.02, pad=0.01)
    bar.set_label("relapse probability (shown from 0.05)")
    fig.suptitle(RESEARCH_STATEMENT, fontsize=10)
    return _png(fig)


def dose_png(
    ct: np.ndarray,
    dose: np.ndarray,
    region: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    direction: np.ndarray,
    voxel_ml: float,
) -> bytes:
    """The prescription (Gy) inside the region on the three planes through its highest dose, and the
    prescription-volume histogram (cumulative: volume of the region receiving at least D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inside = np.where(region, dose, -np.inf)
    peak = np.unravel_index(int(np.argmax(inside)), dose.shape)
    values = dose[region].astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    fig, axes = plt.subplots(
        1, 4, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1, 1, 1, 1.1]}, layout="constrained"
    )
    shown = None
    for ax, (title, take, aspect, sides, ends) in zip(
        axes[:3], _views(peak, spacing_xyz, direction), strict=True
    ):
        ax.imshow(take(ct), cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="nearest")
        plane = np.ma.masked_where(~take(region), take(dose))
        shown = ax.imshow(
            plane,
            cmap=DOSE_CMAP,
            vmin=lo,
            vmax=max(hi, lo + 1e-3),
            alpha=0.7,
            aspect=aspect,
            interpolation="nearest",
        )
        if take(region).any():
            ax.contour(take(region), levels=[0.5], colors="white", linewidths=0.8)
        _mark_sides(ax, sides, ends)
        ax.set_title(f"prescription, {title}")
        ax.set_axis_off()
    bar = fig.colorbar(shown, ax=axes[2], fraction=0.05, pad=0.02)
    bar.set_label("prescription (Gy)")
    grid = np.linspace(lo - 0.5, hi + 0.5, 300)
    ordered = np.sort(values)
    volume = (ordered.size - np.searchsorted(ordered, grid, side="left")) * voxel_ml
    axes[3].plot(grid, volume, color="black")
    axes[3].set(
        xlabel="dose D (Gy)",
        ylabel="region volume prescribed >= D (ml)",
        title="prescription-volume histogram",
    )
    axes[3].grid(alpha=0.3)
    fig.suptitle(f"PRESCRIPTION, NOT A CALCULATED DOSE. {RESEARCH_STATEMENT}", fontsize=10)
    return _png(fig)


def render_html(
    summary: dict, png: bytes, dose_png: bytes | None = None, patient_id: str | None = None
) -> str:
    """A self-contained HTML page: summary tables and the embedded overlays (the patient identifier line
    only when `patient_id` is given: --report-patient-id)."""
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
    patient_line = (
        f'<p class="patient">Patient ID: {html.escape(patient_id)}</p>' if patient_id is not None else ""
    )
    dose_section = _dose_section(summary.get("dose_map"), dose_png)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recur predict report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #bbb;padding:3px 8px;text-align:left}}
.warn{{background:#fee;border:2px solid #c00;padding:0.6em;font-weight:bold}}
.patient{{font-size:1.3em;font-weight:bold;border:2px solid #333;padding:0.3em}}</style></head><body>
<p class="warn">{RESEARCH_STATEMENT}. Predicted relapse risk for research use; every ROI must be reviewed by a
clinician before any use in treatment planning.</p>
<h1>Relapse risk prediction</h1>
{patient_line}
<table>{fact_rows}</table>
<h2>ROIs</h2>
<table><tr><th>ROI</th><th>rule</th><th>probability cut</th><th>volume (ml)</th><th>fraction in GTV</th>
<th>volume SD over folds (ml)</th></tr>{rows}</table>
<h2>Overlays</h2>
<p>CT with the relapse probability (viridis colour scale, purple to yellow; below 0.05 not shown), GTV
(white) and ROI outlines (legend under the images), through the voxel of highest probability. L/R, A/P and
S/I mark the patient's left/right, anterior/posterior and superior/inferior.</p>
<img alt="axial, coronal and sagittal overlays" src="data:image/png;base64,{image}" style="max-width:100%">
{dose_section}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Provenance</h2><pre>{html.escape(json.dumps(summary["provenance"], indent=2))}</pre>
</body></html>
"""


def _dose_section(dose_map: dict | None, png: bytes | None) -> str:
    """The dose-painting part of the report: parameters, region figures, levels, overlay and PVH."""
    if not dose_map:
        return ""
    region = dose_map["region"]
    parameters = dose_map["parameters"]
    facts = {
        "mapping": dose_map["mapping"],
        "probability used": dose_map["probability_source"],
        "mode": "iso-mean redistribution" if parameters["iso_mean"] else "escalation",
        "D_low / D_high (Gy)": f"{dose_map['d_low_gy']:.2f} / {dose_map['d_high_gy']:.2f}",
        "p_lo / p_hi": f"{parameters['p_lo']:g} / {parameters['p_hi']:g}",
        "region": f"{region['definition']}, {region['volume_ml']} ml",
        "region dose mean / min / max (Gy)": f"{region['mean_gy']} / {region['min_gy']} / {region['max_gy']}",
        "outside the region (Gy)": f"{parameters['base_gy']:g}",
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    levels = "".join(
        f"<tr><td>{html.escape(row['roi'])}</td><td>{row['dose_gy']}</td><td>{row['volume_ml']}</td></tr>"
        for row in dose_map.get("levels", [])
    )
    level_table = (
        f"<table><tr><th>level ROI</th><th>dose (Gy)</th><th>volume (ml)</th></tr>{levels}</table>"
        if levels
        else ""
    )
    image = (
        f'<img alt="prescription overlay and prescription-volume histogram" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" style="max-width:100%">'
        if png
        else ""
    )
    return f"""<h2>Dose painting prescription</h2>
<p class="warn">A PRESCRIPTION derived from the predicted relapse probability, NOT a calculated dose.
{RESEARCH_STATEMENT}.</p>
<table>{rows}</table>{level_table}
{image}"""
