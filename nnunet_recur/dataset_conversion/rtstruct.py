"""RTSTRUCT -> binary masks on a reference image grid.

Contours are closed polygons in patient coordinates (mm), one per slice. A voxel belongs to the ROI
when its centre lies inside the polygons of its slice under the even-odd rule: polygons on the same
slice are XOR-ed, so an inner contour is a hole (union-filling loses holes). Contours are matched to
slices by z position with a tolerance, never by the referenced SOP Instance UIDs (exports are often
cropped, so the referenced images are absent; real contour z values sit ~0.02 mm off the slices).

Rasterisation is a vectorised scan-line crossing count (the pnpoly rule, voxel centres at integer
indices): for each slice, every polygon edge that crosses a voxel-centre row toggles the parity of
all voxels left of the crossing; a cumulative sum along the row gives inside/outside. No per-voxel
Python loop, so a 512 x 512 slice costs a few array operations.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from nnunet_recur.dataset_conversion.errors import (
    FRAME_OF_REFERENCE_MISMATCH,
    OBLIQUE_SERIES,
    RTSTRUCT_MISSING,
    UNREADABLE,
    ConversionError,
)

Z_MATCH_FRACTION = 0.1  # contour-to-slice tolerance, as a fraction of the slice spacing
AXIAL_MAX_ANGLE_DEG = 0.5  # same bound as the DICOM series reader


@dataclass
class RoiContours:
    """One ROI of a structure set: its number, name and closed planar contours ((N, 3) arrays, mm)."""

    number: int
    name: str
    contours: list[np.ndarray] = field(default_factory=list, repr=False)
    skipped: list[str] = field(default_factory=list)  # non-polygon contours (POINT, OPEN_PLANAR, ...)
    invalid: list[str] = field(default_factory=list)  # damaged contours (NaN/Inf coordinates)
    frame_of_reference_uid: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.contours


@dataclass
class RTStruct:
    path: Path
    rois: list[RoiContours]
    frame_of_reference_uid: str | None
    referenced_series_uid: str | None
    series_instance_uid: str | None = None

    def roi(self, name: str) -> RoiContours:
        for r in self.rois:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def roi_names(self) -> list[str]:
        return [r.name for r in self.rois]


@dataclass
class RTStructMasks:
    """Masks of the ROIs (name -> uint8 SimpleITK image on the reference grid) and what was odd."""

    masks: dict
    warnings: list[str]
    empty_rois: list[str]


_CONTOUR_DATA_TAG = 0x30060050


def _contour_points(contour) -> np.ndarray | None:
    """ContourData as a flat float array, parsed from the raw DS bytes when possible.

    Converting through pydicom's DSfloat objects costs ~20x more on large structure sets (a whole-body
    BODY ROI has hundreds of thousands of coordinates), hence the raw path.
    """
    if _CONTOUR_DATA_TAG not in contour:
        return None
    raw = contour.get_item(_CONTOUR_DATA_TAG)
    value = raw.value
    if isinstance(value, bytes):
        parts = [p for p in value.split(b"\\") if p.strip(b" \x00")]
        try:
            return np.array(parts, dtype=float)
        except ValueError:
            pass
        value = contour.ContourData
    if value is None:
        return None
    if isinstance(value, str | float | int):
        value = [value]
    return np.asarray([float(v) for v in value], dtype=float)


def read_rtstruct(path: str | os.PathLike) -> RTStruct:
    """Parse an RTSTRUCT file: ROI numbers, names, closed planar contours in mm, frame of reference."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise ConversionError(
            UNREADABLE, f"cannot read RTSTRUCT ({type(exc).__name__}: {exc})", str(path)
        ) from exc
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise ConversionError(
            RTSTRUCT_MISSING,
            f"not an RTSTRUCT (Modality {ds.get('Modality')!r}, no StructureSetROISequence)",
            str(path),
        )

    frame_of_reference = None
    referenced_series = None
    refs = ds.get("ReferencedFrameOfReferenceSequence")
    if refs:
        frame_of_reference = str(refs[0].get("FrameOfReferenceUID", "")) or None
        try:
            study = refs[0].RTReferencedStudySequence[0]
            referenced_series = str(study.RTReferencedSeriesSequence[0].SeriesInstanceUID)
        except (AttributeError, IndexError):
            referenced_series = None

    rois: dict[int, RoiContours] = {}
    for item in ds.StructureSetROISequence:
        number = int(item.ROINumber)
        rois[number] = RoiContours(
            number=number,
            name=str(item.get("ROIName", "")).strip(),
            frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID", "")) or frame_of_reference,
        )
    for item in ds.get("ROIContourSequence") or []:
        number = int(item.ReferencedROINumber)
        roi = rois.setdefault(number, RoiContours(number=number, name=f"ROI_{number}"))
        for contour in item.get("ContourSequence") or []:
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).strip().upper()
            points = _contour_points(contour)
            if points is None:
                roi.skipped.append("a contour without ContourData")
                continue
            if points.size % 3:
                roi.skipped.append(f"a contour with {points.size} coordinates (not a multiple of 3)")
                continue
            points = points.reshape(-1, 3)
            if not np.isfinite(points).all():
                bad = int(np.count_nonzero(~np.isfinite(points).all(axis=1)))
                roi.invalid.append(f"a contour with {bad} non-finite (NaN/Inf) point(s) of {len(points)}")
                continue
            if kind != "CLOSED_PLANAR":
                roi.skipped.append(f"a {kind} contour ({len(points)} points) that is not a closed polygon")
                continue
            roi.contours.append(points)
    return RTStruct(
        path=path,
        rois=sorted(rois.values(), key=lambda r: r.number),
        frame_of_reference_uid=frame_of_reference,
        referenced_series_uid=referenced_series,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")) or None,
    )


# --------------------------------------------------------------------------------------------------
# Rasterisation


def _index_transform(reference) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, origin) with continuous index = matrix @ (point - origin); refuses non-axial grids."""
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    normal = direction[:, 2] / np.linalg.norm(direction[:, 2])
    angle = np.degrees(np.arccos(min(1.0, abs(normal[2]))))
    if angle > AXIAL_MAX_ANGLE_DEG or abs(direction[2, 0]) > 1e-3 or abs(direction[2, 1]) > 1e-3:
        raise ConversionError(
            OBLIQUE_SERIES,
            f"reference image is not axial (slice normal {angle:.2f} degrees from z); "
            "contours cannot be matched to slices",
        )
    matrix = np.linalg.inv(direction * spacing[np.newaxis, :])
    return matrix, np.asarray(reference.GetOrigin(), dtype=float)


def self_intersects(polygon: np.ndarray) -> bool:
    """Whether a closed polygon ((N, 2) points) crosses itself (a bow-tie), by a vectorised proper-crossing
    test of every pair of non-adjacent edges. The even-odd fill of such a contour is well defined but is
    rarely what the planner drew, so the converter warns."""
    n = len(polygon)
    if n < 4:
        return False
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    step = max(1, 4_000_000 // n)  # bounded memory for long contours

    def orient(p, q, r):
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            r[..., 0] - p[..., 0]
        )

    for start in range(0, n, step):
        i = np.arange(start, min(n, start + step))[:, None]
        j = np.arange(n)[None, :]
        pairs = (j > i + 1) & ~((i == 0) & (j == n - 1))
        if not pairs.any():
            continue
        ii, jj = np.nonzero(pairs)
        ii = ii + start
        p1, p2, q1, q2 = a[ii], b[ii], a[jj], b[jj]
        d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
        d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
        if np.any((d1 * d2 < 0) & (d3 * d4 < 0)):
            return True
    return False


def _fill_slice(polygons: list[np.ndarray], nx: int, ny: int) -> tuple[np.ndarray, int] | None:
    """Even-odd fill of polygons given in (i, j) voxel-index coordinates; returns (rows, first_row).

    Voxel (i, j) is inside when an odd number of polygon edges cross the horizontal line y = j to the
    right of x = i (half-open rule on the edge end points, as pnpoly), counted over all polygons.
    """
    starts = np.concatenate([p for p in polygons])
    ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    y_min = max(0, int(np.ceil(starts[:, 1].min())))
    y_max = min(ny - 1, int(np.floor(starts[:, 1].max())))
    if y_max < y_min:
        return None
    rows = np.arange(y_min, y_max + 1, dtype=float)
    x0, y0 = starts[:, 0], starts[:, 1]
    x1, y1 = ends[:, 0], ends[:, 1]
    # crossing[r, e]: edge e crosses row r (one end strictly above, the other at or below).
    above0 = y0[np.newaxis, :] > rows[:, np.newaxis]
    above1 = y1[np.newaxis, :] > rows[:, np.newaxis]
    crossing = above0 != above1
    r_idx, e_idx = np.nonzero(crossing)
    if r_idx.size == 0:
        return None
    yr = rows[r_idx]
    xa, ya, xb, yb = x0[e_idx], y0[e_idx], x1[e_idx], y1[e_idx]
    x_cross = xa + (yr - ya) * (xb - xa) / (yb - ya)
    # Voxels i < x_cross get one more crossing to their right: toggle [0, ceil(x_cross)).
    stop = np.clip(np.ceil(x_cross), 0, nx).astype(np.intp)
    toggles = np.zeros((rows.size, nx + 1), dtype=np.uint8)
    np.add.at(toggles, (r_idx, np.zeros_like(stop)), 1)
    np.add.at(toggles, (r_idx, stop), 1)
    inside = (np.cumsum(toggles, axis=1, dtype=np.uint8) & 1)[:, :nx]
    return inside.astype(np.uint8), y_min


def rasterise_roi(
    contours: list[np.ndarray],
    reference,
    warnings_out: list[str] | None = None,
    roi_name: str = "ROI",
):
    """uint8 SimpleITK mask of `contours` ((N, 3) mm arrays) on the grid of `reference`.

    Contours are placed on the slice whose z matches within 10 % of the slice spacing; contours with
    fewer than 3 points, or whose z matches no slice, are skipped and reported in `warnings_out`.
    Raises ConversionError(oblique_series) when the reference grid is not axial.
    """
    import SimpleITK as sitk

    matrix, origin = _index_transform(reference)
    nx, ny, nz = reference.GetSize()
    z_tol = Z_MATCH_FRACTION  # in index units: a fraction of the slice spacing
    report = warnings_out if warnings_out is not None else []

    by_slice: dict[int, list[np.ndarray]] = {}
    off_grid: list[float] = []
    for points in contours:
        if len(points) < 3:
            report.append(
                f"{roi_name}: skipped a contour with {len(points)} point(s) at z={points[0, 2]:.2f} mm"
            )
            continue
        index = (points - origin) @ matrix.T
        k_values = index[:, 2]
        k = float(np.mean(k_values))
        k_round = int(round(k))
        if abs(k - k_round) > z_tol or np.ptp(k_values) > 2 * z_tol or not 0 <= k_round < nz:
            off_grid.append(float(np.mean(points[:, 2])))
            continue
        if self_intersects(index[:, :2]):
            report.append(
                f"{roi_name}: contour at z={float(np.mean(points[:, 2])):.2f} mm crosses itself (bow-tie); "
                "filled by the even-odd rule, check the contour"
            )
        by_slice.setdefault(k_round, []).append(index[:, :2])
    if off_grid:
        zs = ", ".join(f"{z:.2f}" for z in sorted(set(np.round(off_grid, 2)))[:8])
        more = " ..." if len(set(np.round(off_grid, 2))) > 8 else ""
        report.append(
            f"{roi_name}: {len(off_grid)} contour(s) match no slice of the reference image "
            f"(z = {zs}{more} mm): skipped"
        )

    mask = np.zeros((nz, ny, nx), dtype=np.uint8)
    for k, polygons in by_slice.items():
        filled = _fill_slice(polygons, nx, ny)
        if filled is None:
            continue
        rows, y_min = filled
        mask[k, y_min : y_min + rows.shape[0], :] ^= rows
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(reference)
    return image


def sanitise_roi_name(name: str, number: int | None = None) -> str:
    """A file-name-safe version of an ROI name (letters, digits, '.', '_', '-')."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return safe or (f"roi_{number}" if number is not None else "roi")


def rtstruct_to_masks(
    path: str | os.PathLike,
    reference,
    roi_filter=None,
    frame_of_reference_uid: str | None = None,
) -> RTStructMasks:
    """Every ROI of the RTSTRUCT (or those whose name passes `roi_filter`) as a mask on `reference`.

    `masks` keys are ROI names (made unique with a _<number> suffix if an RTSTRUCT repeats one).
    ROIs without any voxel end up in `empty_rois` (and still get an all-zero mask); everything odd
    (skipped contours, contours off the grid, non-polygon contours) is listed in `warnings`. When
    `frame_of_reference_uid` (of the reference series) is given, a different FrameOfReferenceUID in
    the RTSTRUCT raises ConversionError(frame_of_reference_mismatch).
    """
    import SimpleITK as sitk

    structure = read_rtstruct(path)
    if (
        frame_of_reference_uid
        and structure.frame_of_reference_uid
        and structure.frame_of_reference_uid != frame_of_reference_uid
    ):
        raise ConversionError(
            FRAME_OF_REFERENCE_MISMATCH,
            f"RTSTRUCT FrameOfReferenceUID {structure.frame_of_reference_uid} differs from the image's "
            f"{frame_of_reference_uid}",
            str(path),
        )
    masks: dict = {}
    report: list[str] = []
    empty: list[str] = []
    for roi in structure.rois:
        if roi_filter is not None and not roi_filter(roi.name):
            continue
        key = roi.name if roi.name not in masks else f"{roi.name}_{roi.number}"
        for what in roi.skipped + roi.invalid:
            report.append(f"{roi.name}: skipped {what}")
        if roi.is_empty:
            report.append(f"{roi.name}: ROI has no contours")
            empty.append(key)
            mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
            mask.CopyInformation(reference)
            masks[key] = mask
            continue
        mask = rasterise_roi(roi.contours, reference, report, roi_name=roi.name)
        if not sitk.GetArrayViewFromImage(mask).any():
            report.append(f"{roi.name}: no voxel of the reference grid lies inside the contours")
            empty.append(key)
        masks[key] = mask
    return RTStructMasks(masks=masks, warnings=report, empty_rois=empty)
