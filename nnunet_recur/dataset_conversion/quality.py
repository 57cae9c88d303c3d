"""Quality checks that exclude a patient, and the exclusion report (exclusions.csv, summary line).

The causes are the paper's III.A exclusions (PET missing, relapse contour missing, PET corrupted,
uneven in-plane spacing, missing slices) plus the converter's own (see errors.py). A check raises
`ConversionError(cause, message, path)`; the cohort converter turns that into one exclusions.csv row.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import CAUSES, UNEVEN_SPACING, ConversionError

IN_PLANE_SPACING_REL_TOL = 1e-3

# How each cause reads in the one-line summary.
CAUSE_WORDS = {
    "pet_missing": "PET missing",
    "relapse_missing": "relapse missing",
    "pet_corrupt": "PET corrupt",
    "uneven_spacing": "uneven spacing",
    "missing_slice": "missing slice",
    "ct_missing": "CT missing",
    "ct_corrupt": "CT corrupt",
    "gtv_missing": "GTV missing",
    "rtstruct_missing": "RTSTRUCT missing",
    "frame_of_reference_mismatch": "frame of reference mismatch",
    "relapse_outside_image": "relapse outside image",
    "gtv_outside_pet": "GTV outside PET",
    "oblique_series": "oblique series",
    "suv_not_computable": "SUV not computable",
    "unreadable": "unreadable",
    "pet_not_corrected": "PET not attenuation/decay corrected",
    "pet_series_ambiguous": "PET series ambiguous",
    "ct_series_ambiguous": "CT series ambiguous",
    "suv_implausible": "SUV implausible",
    "non_finite_values": "non-finite values",
    "image_too_large": "image too large",
    "invalid_spacing": "invalid spacing",
    "unsupported_image": "unsupported image",
    "contour_invalid": "invalid contour",
    "not_a_file": "not a file",
    "dose_invalid": "dose invalid",
    "dose_ambiguous": "dose ambiguous",
    "dose_not_covering_gtv": "dose not covering GTV",
    "dose_missing": "dose missing",
    "write_failed": "write failed",
    "oom/killed": "worker killed (out of memory?)",
}
assert set(CAUSE_WORDS) == set(CAUSES)


def check_in_plane_spacing(image: sitk.Image, what: str, path: str | None) -> None:
    """Uneven in-plane spacing (row != column) is one of the paper's exclusions."""
    sx, sy = image.GetSpacing()[:2]
    if abs(sx - sy) > IN_PLANE_SPACING_REL_TOL * max(sx, sy):
        raise ConversionError(
            UNEVEN_SPACING, f"{what} in-plane spacing is uneven ({sx:.4f} x {sy:.4f} mm)", path
        )


def voxel_count(mask: sitk.Image) -> int:
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))


def require_nonempty(mask: sitk.Image | None, cause: str, what: str, path: str | None) -> sitk.Image:
    if mask is None:
        raise ConversionError(cause, f"no {what} found", path)
    if voxel_count(mask) == 0:
        raise ConversionError(cause, f"{what} is empty", path)
    return mask


@dataclass(frozen=True)
class Exclusion:
    patient: str
    cause: str
    detail: str


def exclusions_csv(rows: Sequence[Exclusion]) -> str:
    """exclusions.csv content: columns patient,cause,detail; one row per excluded patient, sorted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "cause", "detail"])
    for row in sorted(rows, key=lambda r: r.patient):
        writer.writerow(safe_csv_row([row.patient, row.cause, row.detail]))
    return buffer.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_csv_cell(value) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ (or tab/CR) gets a leading quote.

    A patient folder named `=HYPERLINK(...)` would otherwise become a live formula in cases.csv
    (CSV/formula injection, OWASP)."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def safe_csv_row(values) -> list[str]:
    return [safe_csv_cell(v) for v in values]


def summary_line(n_total: int, n_converted: int, causes: Iterable[str]) -> str:
    """`37 of 46 patients converted; 9 excluded: 3 PET missing, 2 relapse missing, ...`"""
    counts = Counter(causes)
    line = f"{n_converted} of {n_total} patients converted"
    n_excluded = sum(counts.values())
    if n_excluded == 0:
        return line + "; none excluded"
    order = list(CAUSE_WORDS)
    parts = [
        f"{counts[c]} {CAUSE_WORDS.get(c, c)}"
        for c in sorted(counts, key=lambda c: (order.index(c) if c in order else len(order), c))
    ]
    return f"{line}; {n_excluded} excluded: {', '.join(parts)}"
