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
    CONTOUR_OUTSIDE_CT,
    CONTOURS_UNPLACEABLE,
    FRAME_OF_REFERENCE_MISMATCH,
    OBLIQUE_SERIES,
    RTSTRUCT_MISSING,
    UNREADABLE,
    ConversionError,
)

Z_MATCH_FRACTION = 0.1  # contours this close (fraction of the slice step) form one contour plane
# A GTV/relapse ROI may lose at most this fraction of its contour area off the CT (a contour clipped by the
# image edge by a voxel is fine; a relapse whose top planes lie above the last CT slice is not).
MAX_OUTSIDE_FRACTION = 0.05
# More than this fraction of an ROI's contours unplaceable (< 3 points, not planar, not polygons): the ROI
# that remains is not the one drawn.
MAX_FAILED_FRACTION = 0.5
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
    # SeriesInstanceUID -> the SOP Instance UIDs of its ContourImageSequence (RTReferencedSeriesSequence):
    # the image slices the contours were drawn on (dicom_crosscheck checks they are all present).
    referenced_images: dict[str, list[str]] = field(default_factory=dict)

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
    # Alike in shape to rtplan.py's read: an RTSTRUCT is read with force=True (files without the preamble too)
    # and fails as a ConversionError with the UNREADABLE cause.
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
    referenced_images = _referenced_images(ds)
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
        referenced_images=referenced_images,
    )


def _referenced_images(ds) -> dict[str, list[str]]:
    """SeriesInstanceUID -> referenced SOP Instance UIDs, from every RTReferencedSeriesSequence item."""
    found: dict[str, list[str]] = {}
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                uid = str(series.get("SeriesInstanceUID", "")).strip()
                sops = [
                    str(item.get("ReferencedSOPInstanceUID", "")).strip()
                    for item in series.get("ContourImageSequence") or []
                ]
                if uid:
                    found.setdefault(uid, []).extend(s for s in sops if s)
    return found


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


@dataclass
class RoiPlacement:
    """How much of an ROI could be put on the reference grid (filled in by `rasterise_roi`).

    Areas are polygon areas in index units (pixels) summed over contours; `outside_area` is the part of
    the contours that lies outside the grid (whole contour planes beyond the first/last slice, and the
    in-plane part beyond the image edges)."""

    n_contours: int = 0
    n_failed: int = 0  # contours that cannot be placed (< 3 points, not planar)
    total_area: float = 0.0
    outside_area: float = 0.0

    @property
    def outside_fraction(self) -> float:
        return self.outside_area / self.total_area if self.total_area > 0 else 0.0

    @property
    def failed_fraction(self) -> float:
        return self.n_failed / self.n_contours if self.n_contours else 0.0


def _area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_to_box(polygon: np.ndarray, low: tuple[float, float], high: tuple[float, float]) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon ((N, 2)) to the box [low, high]; its area is the area inside
    the box (the clip region is convex, so the area stays exact for concave polygons too)."""
    points = polygon
    for axis, bound, keep_below in (
        (0, low[0], False),
        (0, high[0], True),
        (1, low[1], False),
        (1, high[1], True),
    ):
        if len(points) == 0:
            break
        nxt = np.roll(points, -1, axis=0)
        inside = points[:, axis] <= bound if keep_below else points[:, axis] >= bound
        inside_next = np.roll(inside, -1)
        out = []
        for p, q, p_in, q_in in zip(points, nxt, inside, inside_next, strict=True):
            if p_in:
                out.append(p)
            if p_in != q_in:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append(p + t * (q - p))
        points = np.asarray(out, dtype=float).reshape(-1, 2)
    return points


def _outside_in_plane(polygon: np.ndarray, nx: int, ny: int) -> float:
    """Area of a polygon (index units) outside the image's in-plane extent (voxel edges at -0.5, n-0.5)."""
    low, high = (-0.5, -0.5), (nx - 0.5, ny - 0.5)
    if polygon[:, 0].min() >= low[0] and polygon[:, 1].min() >= low[1]:
        if polygon[:, 0].max() <= high[0] and polygon[:, 1].max() <= high[1]:
            return 0.0
    return max(0.0, _area(polygon) - _area(_clip_to_box(polygon, low, high)))


def _contour_planes(entries: list[tuple[float, np.ndarray]]) -> list[tuple[float, list[np.ndarray]]]:
    """Contours grouped by plane: positions (continuous slice index) closer than Z_MATCH_FRACTION of a
    slice step are one plane (real files scatter ~0.02 mm); returns (plane position, polygons), sorted."""
    planes: list[tuple[float, list[np.ndarray]]] = []
    members: list[float] = []
    for k, polygon in sorted(entries, key=lambda e: e[0]):
        if planes and k - members[-1] <= Z_MATCH_FRACTION:
            planes[-1][1].append(polygon)
            members.append(k)
            planes[-1] = (float(np.mean(members)), planes[-1][1])
        else:
            members = [k]
            planes.append((k, [polygon]))
    return planes


def rasterise_roi(
    contours: list[np.ndarray],
    reference,
    warnings_out: list[str] | None = None,
    roi_name: str = "ROI",
    placement_out: RoiPlacement | None = None,
):
    """uint8 SimpleITK mask of `contours` ((N, 3) mm arrays) on the grid of `reference`.

    Placement rule (docs/conversion.md, "Contours between slices"): contours whose z positions agree
    within 10 % of the slice step form one contour plane. Each CT slice takes the polygons of the contour
    plane nearest to its centre, when that plane lies within half a slice step of it (the plane's slab:
    [z - step/2, z + step/2), so a plane exactly half-way goes to the upper slice); polygons of one plane
    are XOR-ed (a hole). Contours drawn on another scan's planes (a relapse carried over by rigid
    registration) are thus placed on the nearest CT slice instead of being dropped. A plane beyond the
    first/last slice's slab is outside the CT. Contours with fewer than 3 points or that are not planar
    cannot be placed. All of it is reported in `warnings_out` and measured in `placement_out`.
    Raises ConversionError(oblique_series) when the reference grid is not axial.
    """
    import SimpleITK as sitk

    matrix, origin = _index_transform(reference)
    nx, ny, nz = reference.GetSize()
    report = warnings_out if warnings_out is not None else []
    placement = placement_out if placement_out is not None else RoiPlacement()

    entries: list[tuple[float, np.ndarray]] = []
    not_planar: list[float] = []
    for points in contours:
        placement.n_contours += 1
        if len(points) < 3:
            placement.n_failed += 1
            report.append(
                f"{roi_name}: skipped a contour with {len(points)} point(s) at z={points[0, 2]:.2f} mm"
            )
            continue
        index = (points - origin) @ matrix.T
        if np.ptp(index[:, 2]) > 2 * Z_MATCH_FRACTION:
            placement.n_failed += 1
            not_planar.append(float(np.mean(points[:, 2])))
            continue
        polygon = index[:, :2]
        if self_intersects(polygon):
            report.append(
                f"{roi_name}: contour at z={float(np.mean(points[:, 2])):.2f} mm crosses itself (bow-tie); "
                "filled by the even-odd rule, check the contour"
            )
        area = _area(polygon)
        placement.total_area += area
        placement.outside_area += _outside_in_plane(polygon, nx, ny)
        entries.append((float(np.mean(index[:, 2])), polygon))
    if not_planar:
        zs = ", ".join(f"{z:.2f}" for z in sorted(not_planar)[:8])
        report.append(
            f"{roi_name}: {len(not_planar)} contour(s) not in one axial plane (z ~ {zs} mm): skipped"
        )

    planes: list[tuple[float, list[np.ndarray]]] = []
    outside: list[float] = []
    for k, polygons in _contour_planes(entries):
        if not -0.5 <= k < nz - 0.5:  # beyond the slab of the first/last slice
            outside.extend(float(origin[2] + k * reference.GetSpacing()[2]) for _ in polygons)
            placement.outside_area += sum(_area(p) for p in polygons) - sum(
                _outside_in_plane(p, nx, ny) for p in polygons
            )
            continue
        planes.append((k, polygons))
    if outside:
        zs = ", ".join(f"{z:.2f}" for z in sorted(set(np.round(outside, 2)))[:8])
        more = " ..." if len(set(np.round(outside, 2))) > 8 else ""
        report.append(
            f"{roi_name}: {len(outside)} contour(s) match no slice of the reference image "
            f"(z = {zs}{more} mm, outside its z extent): skipped"
        )

    mask = np.zeros((nz, ny, nx), dtype=np.uint8)
    filled_planes: dict[int, np.ndarray] = {}

    def plane_mask(i: int) -> np.ndarray:
        if i not in filled_planes:
            out = np.zeros((ny, nx), dtype=np.uint8)
            filled = _fill_slice(planes[i][1], nx, ny)
            if filled is not None:
                rows, y_min = filled
                out[y_min : y_min + rows.shape[0], :] = rows
            filled_planes[i] = out
        return filled_planes[i]

    positions = np.asarray([k for k, _ in planes], dtype=float)
    used: set[int] = set()
    between = extruded = 0
    for z in range(nz) if len(planes) else ():
        upper = int(np.searchsorted(positions, z))  # first plane at or above the slice centre
        lower = upper - 1
        near = [i for i in (lower, upper) if 0 <= i < len(planes)]
        nearest = min(near, key=lambda i: (abs(positions[i] - z), -positions[i]))
        offset = positions[nearest] - z
        if abs(offset) <= Z_MATCH_FRACTION:  # a plane on this slice: its polygons, as drawn
            mask[z] = plane_mask(nearest)
            used.add(nearest)
        elif (
            lower >= 0
            and upper < len(planes)
            and z - positions[lower] < 1.0
            and positions[upper] - z < 1.0
            and _off_slice(positions[lower])
            and _off_slice(positions[upper])
        ):  # between two planes drawn off the CT's slices, less than a slice step away each
            weight = (z - positions[lower]) / (positions[upper] - positions[lower])
            mask[z] = _shape_interpolation(plane_mask(lower), plane_mask(upper), weight)
            used.update((lower, upper))
            between += 1
        elif -0.5 <= offset < 0.5:  # the end of the ROI: its last plane's slab covers the slice centre
            mask[z] = plane_mask(nearest)
            used.add(nearest)
            extruded += 1
    if between or extruded:
        report.append(
            f"{roi_name}: contours lie between CT slices: {between} slice(s) interpolated between the two "
            f"nearest contour planes (shape-based), {extruded} placed from the nearest plane within half a "
            "slice step"
        )
    if len(used) < len(planes):
        report.append(
            f"{roi_name}: {len(planes) - len(used)} contour plane(s) not used: contours drawn finer than the "
            "CT (each slice takes the plane on it, or interpolates the nearest planes around it)"
        )
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(reference)
    return image


def _off_slice(position: float) -> bool:
    return abs(position - round(position)) > Z_MATCH_FRACTION


def _shape_interpolation(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """The slice `weight` of the way from mask `a` to mask `b` by shape-based interpolation (signed
    distance maps interpolated linearly, inside where negative): the outline moves smoothly from one
    contour to the other, instead of jumping half-way as a nearest-plane copy does. An empty side gives
    the nearer plane's mask. Computed on the two masks' bounding box only."""
    from scipy.ndimage import distance_transform_edt

    if not a.any() or not b.any():
        return (a if weight < 0.5 else b).copy()
    union = (a | b).astype(bool)
    rows, cols = np.nonzero(union)
    margin = 2
    r0, r1 = max(0, rows.min() - margin), min(a.shape[0], rows.max() + margin + 1)
    c0, c1 = max(0, cols.min() - margin), min(a.shape[1], cols.max() + margin + 1)

    def signed(mask: np.ndarray) -> np.ndarray:
        inside = np.pad(mask[r0:r1, c0:c1].astype(bool), 1)  # background all around the box
        return (distance_transform_edt(~inside) - distance_transform_edt(inside))[1:-1, 1:-1]

    out = np.zeros_like(a)
    out[r0:r1, c0:c1] = ((1.0 - weight) * signed(a) + weight * signed(b)) < 0
    return out


def check_placement(placement: RoiPlacement, what: str, path: str | None) -> None:
    """Exclude the patient when a used ROI (GTV, relapse) could not be placed on the CT: most of its
    contours unplaceable (contours_unplaceable), or more than MAX_OUTSIDE_FRACTION of its contour area
    outside the CT (contour_outside_ct: a CT too short, or contours of another scan's extent)."""
    if placement.failed_fraction > MAX_FAILED_FRACTION:
        raise ConversionError(
            CONTOURS_UNPLACEABLE,
            f"{what}: {placement.n_failed} of {placement.n_contours} contours cannot be placed on the CT "
            "(fewer than 3 points, not in one axial plane, or not a closed polygon)",
            path,
        )
    if placement.outside_fraction > MAX_OUTSIDE_FRACTION:
        raise ConversionError(
            CONTOUR_OUTSIDE_CT,
            f"{what}: {100 * placement.outside_fraction:.0f} % of its contour area lies outside the CT "
            f"(limit {100 * MAX_OUTSIDE_FRACTION:.0f} %): the CT does not cover the ROI",
            path,
        )


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
