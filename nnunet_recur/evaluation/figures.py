"""Figures: the SUVmax sweep (paper Figure 4), PO overlays (like Figure 5), PO capture vs volume.

matplotlib runs with the Agg backend; every PNG is written to a temp name and moved into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_recur.atomic_io import atomic_path

REFERENCE_COLOUR = "#ff3fa4"  # pink, as the paper's Figure 5
METHOD_COLOURS = ["#1f77b4", "#2ca02c", "#e6c200", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return path


def method_colours(names: list[str]) -> dict[str, str]:
    return {name: METHOD_COLOURS[i % len(METHOD_COLOURS)] for i, name in enumerate(names)}


def plot_sweep(
    percents: np.ndarray,
    mean_dice: np.ndarray,
    best: tuple[int, float],
    path: Path,
    case_set: str = "validation cases",
) -> Path:
    """Mean Dice against % of SUVmax, the best percent marked (paper Figure 4), labelled with the case set
    actually swept (`case_set`, e.g. 'validation cases of fold 0, n = 7')."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter(percents, mean_dice, s=12, color="#1f77b4", label=f"mean Dice ({case_set})")
    ax.scatter([best[0]], [best[1]], s=80, facecolors="none", edgecolors="#d62728", linewidths=2)
    ax.annotate(
        f"best: {best[0]} % (Dice {best[1]:.2f})",
        (best[0], best[1]),
        textcoords="offset points",
        xytext=(8, 8),
        color="#d62728",
    )
    ax.set_xlabel("threshold (% of SUVmax inside the GTV)")
    ax.set_ylabel(f"mean Dice ({case_set})")
    ax.set_xlim(0, 101)
    ax.set_ylim(0, max(float(np.nanmax(mean_dice)), 0.01) * 1.2)
    ax.grid(alpha=0.3)
    ax.set_title("SUVmax threshold sweep")
    saved = _save(fig, path)
    plt.close(fig)
    return saved


def plot_capture_curves(
    curves: dict[str, dict],
    fixed: dict[str, tuple[float, int]],
    po_total: int,
    path: Path,
    colours: dict[str, str],
) -> Path:
    """POs captured against mean predicted volume, one curve per thresholdable method, a point per mask.

    The dose-painting trade-off: how small can the boosted volume get while still holding the PO?
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, curve in curves.items():
        volume = np.asarray(curve["mean_pred_cc"])
        captured = np.asarray(curve["po_captured"]) / max(curve["po_total"], 1)
        colour = colours.get(name, "#555555")
        ax.plot(volume, captured, "-", color=colour, label=f"{name} (threshold varied)")
    for name, (volume, captured) in fixed.items():
        ax.plot(
            [volume],
            [captured / max(po_total, 1)],
            "o",
            color=colours.get(name, "#555555"),
            markersize=8,
            label=f"{name} (as predicted)",
        )
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("mean predicted volume (cc)")
    ax.set_ylabel(f"fraction of POs captured (of {po_total})")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("PO capture vs predicted volume")
    saved = _save(fig, path)
    plt.close(fig)
    return saved


#: LPS patient axes: the letter an image edge shows when the axis points towards it (+) or away (-).
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))
_PLANES = ("sagittal", "coronal", "axial")  # the plane whose normal is the LPS axis x, y, z


def _letter(vector) -> str:
    """Patient direction letter(s) of a unit vector in LPS: the dominant axis first, e.g. 'L' or 'LA'."""
    v = np.asarray(vector, dtype=np.float64)
    order = np.argsort(-np.abs(v))
    letters = [_LPS_LETTERS[i][0 if v[i] > 0 else 1] for i in order if abs(v[i]) > 0.25]
    return "".join(letters[:2]) or "?"


def slice_orientation(direction) -> dict:
    """What an array slice `a[k]` (z index fixed) shows, from the grid's direction cosines.

    Returns the anatomical plane (from the dominant LPS axis of the slice normal, 'oblique' added when
    that axis is off by more than ~8 degrees) and the letters at the image edges as `imshow` draws the
    slice (columns = array x, rows = array y, row 0 at the top): left, right, top, bottom.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    column_axis, row_axis, normal = d[:, 0], d[:, 1], d[:, 2]
    dominant = int(np.argmax(np.abs(normal)))
    plane = _PLANES[dominant]
    if abs(normal[dominant]) < 0.99:
        plane += " (oblique)"
    return {
        "plane": plane,
        "left": _letter(-column_axis),
        "right": _letter(column_axis),
        "top": _letter(-row_axis),
        "bottom": _letter(row_axis),
    }


def _edge_labels(ax, orientation: dict) -> None:
    style = {"color": "yellow", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.02, 0.5, orientation["left"], ha="left", va="center", **style)
    ax.text(0.98, 0.5, orientation["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.98, orientation["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.02, orientation["bottom"], ha="center", va="bottom", **style)


def plot_po_overlays(case: str, slices: list[dict], colours: dict[str, str], out_dir: Path) -> list[Path]:
    """One PNG per PO: the slice through it (plane named from the grid's direction, edges labelled with
    patient directions), reference (pink) and each method's contour, as Figure 5."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    written = []
    for item in slices:
        names = list(item["methods"])
        columns = max(len(names), 1)
        fig, axes = plt.subplots(1, columns, figsize=(3.6 * columns, 3.9), squeeze=False)
        for ax, name in zip(axes[0], names or [None], strict=True):
            if item["ct"] is not None:
                ax.imshow(
                    item["ct"],
                    cmap="gray",
                    vmin=-200,
                    vmax=300,
                    aspect=item["aspect"],
                    interpolation="nearest",
                )
            else:
                ax.imshow(np.zeros_like(item["reference"], dtype=float), cmap="gray", aspect=item["aspect"])
            _contour(ax, item["reference"], REFERENCE_COLOUR)
            handles = [Line2D([], [], color=REFERENCE_COLOUR, label="relapse (reference)")]
            if name is not None:
                _contour(ax, item["methods"][name], colours[name])
                handles.append(Line2D([], [], color=colours[name], label=name))
            _, y, x = item["point"]
            ax.plot([x], [y], "+", color="white", markersize=10, markeredgewidth=2)
            _zoom(ax, item, x, y)
            handles.append(
                Line2D([], [], color="white", marker="+", linestyle="", label="PO", markeredgecolor="black")
            )
            ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.7)
            orientation = slice_orientation(item["direction"])
            _edge_labels(ax, orientation)
            ax.set_axis_off()
            ax.set_title(name or "reference", fontsize=9)
        fig.suptitle(f"{case}: PO {item['po']} ({orientation['plane']} slice k = {item['z']})", fontsize=10)
        written.append(_save(fig, Path(out_dir) / f"{case}_po{item['po']}.png"))
        plt.close(fig)
    return written


#: Half-width of the field of view around the PO in the overlays (mm), about the paper's Figure 5.
OVERLAY_HALF_WIDTH_MM = 50.0


def _zoom(ax, item: dict, x: int, y: int) -> None:
    """Show a window of +-OVERLAY_HALF_WIDTH_MM around the PO (clipped to the slice)."""
    rows, columns = item["reference"].shape
    half_x = OVERLAY_HALF_WIDTH_MM / item["spacing_xy"][0]
    half_y = OVERLAY_HALF_WIDTH_MM / item["spacing_xy"][1]
    ax.set_xlim(max(x - half_x, -0.5), min(x + half_x, columns - 0.5))
    ax.set_ylim(min(y + half_y, rows - 0.5), max(y - half_y, -0.5))


def _contour(ax, mask: np.ndarray, colour: str) -> None:
    if np.any(mask) and not np.all(mask):
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.4)
