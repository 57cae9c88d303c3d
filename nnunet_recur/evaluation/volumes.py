"""Reading evaluation inputs from disk: volumes with their geometry, case lists, dataset folders.

Evaluation reads files only (nnU-Net naming) and imports neither the trainers nor the converter; the
NIfTI header parser and truncation guard come from the neutral `nnunet_recur/nifti_header.py`, which
the converter uses too, so that both sides of the pipeline refuse a cut-short file by the same rule (ITK
silently zero-fills it). On top of it `read_volume` refuses non-finite voxels: a NaN would otherwise
count as background in a mask and as "no uptake" in a PET. Every volume travels with its grid
(`Volume`), and grids are compared in exactly one place (`require_same_grid`) with one tolerance, so a
resampling slip upstream is refused, not averaged.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.atomic_io import atomic_path, write_json_atomic, write_text_atomic
from nnunet_recur.nifti_header import (
    NiftiHeader,
    count_nonfinite,
    inspect_nifti,
    read_plain_float_voxels,
)
from nnunet_recur.nnunet_names import DatasetNotFoundError, find_dataset_folder

#: What reading a damaged NIfTI can raise (NiftiCheckError is a ValueError).
_STREAM_ERRORS = (OSError, EOFError, ValueError, struct.error, zlib.error)

#: One tolerance for every grid comparison: spacing and origin in mm, direction cosines unitless.
#: NIfTI stores the affine in float32, so 1e-3 comfortably covers round-off on 500 mm origins while
#: any real resampling or cropping mistake (>= a fraction of a voxel) is caught.
GEOMETRY_TOLERANCE = 1e-3

NIFTI = ".nii.gz"
PET_CHANNEL = "_0001"
CT_CHANNEL = "_0000"
GTV_SUFFIX = "_gtv"
BRAIN_SUFFIX = "_brain"


class EvaluationError(Exception):
    """Bad input for the evaluation: the message names the file(s) and the problem."""


class GeometryMismatchError(EvaluationError):
    """Two volumes that must share a voxel grid do not (shape, spacing, origin or direction)."""


class MissingCaseError(EvaluationError):
    """A case present in the reference is missing from a method's predictions."""


@dataclass(frozen=True)
class Grid:
    """The voxel grid of an image, in SimpleITK conventions (sizes and spacing in x, y, z order)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image) -> Grid:
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape as `SimpleITK.GetArrayFromImage` returns it (z, y, x)."""
        return tuple(reversed(self.size))

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        return tuple(reversed(self.spacing))

    @property
    def voxel_volume_cc(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_physical(self, index_zyx: Sequence[float]) -> tuple[float, ...]:
        """Physical point in mm (LPS) of an array index (z, y, x), exactly as ITK maps indices."""
        ijk = np.asarray(index_zyx, dtype=np.float64)[::-1]
        dim = len(self.size)
        direction = np.asarray(self.direction, dtype=np.float64).reshape(dim, dim)
        point = np.asarray(self.origin) + direction @ (ijk * np.asarray(self.spacing))
        return tuple(float(v) for v in point)

    def differences(self, other: Grid, tolerance: float = GEOMETRY_TOLERANCE) -> list[str]:
        """Human-readable list of what differs between two grids (empty when they match)."""
        problems = []
        if self.size != other.size:
            problems.append(f"size {self.size} vs {other.size}")
            return problems
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if a.shape != b.shape or not np.allclose(a, b, rtol=0.0, atol=tolerance):
                fmt = lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")"  # noqa: E731
                problems.append(f"{name} {fmt(a)} vs {fmt(b)}")
        return problems


@dataclass(frozen=True)
class Volume:
    """A voxel array (z, y, x) with the grid it lives on and the file it came from."""

    array: np.ndarray
    grid: Grid
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<in-memory volume>"


def _nifti_error(path: Path, exc: BaseException) -> EvaluationError:
    lines = str(exc).strip().splitlines()
    return EvaluationError(
        f"{path}: unreadable or truncated NIfTI ({lines[0] if lines else type(exc).__name__})"
    )


def inspect_header(path: Path) -> NiftiHeader:
    """The NIfTI header, after the shared truncation guard (header's voxel bytes vs the gzip stream), as
    an EvaluationError; one open of the file. A zero-byte or non-NIfTI file fails here too."""
    try:
        return inspect_nifti(Path(path))
    except _STREAM_ERRORS as exc:
        raise _nifti_error(path, exc) from exc


def require_complete(path: Path) -> None:
    """`inspect_header` for callers that only need the check."""
    inspect_header(path)


def require_finite(array: np.ndarray, name: str) -> None:
    """Refuse NaN / +-inf voxels, naming the file and how many there are (integer arrays pass as is)."""
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise EvaluationError(f"{name}: {bad} non-finite voxel(s) (NaN or inf); refusing to score them")


def _guarded_float_voxels(path: Path, header: NiftiHeader, allow_nan: bool = False) -> np.ndarray | None:
    """One pass over a NIfTI's voxel stream: NaN / inf refused; unscaled float voxels returned.

    Returns the voxels (1-D, file order) of an unscaled float32/float64 file, decompressed once, so
    the NaN check costs no second decompression and ITK is left only the header. None for other files:
    integer voxels cannot hold NaN; scaled or complex floats are scanned here and then read by ITK.
    `allow_nan` (a dose's "not covered" voxels): NaN is kept, inf still refused; a scaled float file
    then refuses NaN too, because ITK would turn it into 0 on reading it.
    """
    if header.float_dtype is None:
        return None
    try:
        if not header.plain_float:
            _refuse_nonfinite(count_nonfinite(path, header), path)
            return None
        values = read_plain_float_voxels(path, header)
    except _STREAM_ERRORS as exc:
        raise _nifti_error(path, exc) from exc
    if allow_nan:
        infinite = int(np.count_nonzero(np.isinf(values)))
        if infinite:
            raise EvaluationError(f"{path}: {infinite} infinite voxel(s); refusing to score them")
        return values
    _refuse_nonfinite(int(values.size - np.count_nonzero(np.isfinite(values))), path)
    return values


def _refuse_nonfinite(count: int, path: Path) -> None:
    if count:
        raise EvaluationError(f"{path}: {count} non-finite voxel(s) (NaN or inf); refusing to score them")


def read_volume(path: Path, dtype=None, allow_nan: bool = False) -> Volume:
    """Read one NIfTI (or any SimpleITK format) file, refusing missing, truncated and non-finite files.

    Every failure is an EvaluationError naming the file. Unscaled float NIfTI voxels are decompressed
    once by us (and checked for NaN / inf on the way); ITK then only reads the header for the grid.
    `allow_nan=True` is for a dose only (NaN = "not covered by the dose grid"); inf is refused anyway.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: file not found")
    if path.name.endswith((".nii", NIFTI)):
        values = _guarded_float_voxels(path, inspect_header(path), allow_nan)
        if values is not None:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            try:
                reader.ReadImageInformation()
            except RuntimeError as exc:
                raise EvaluationError(
                    f"{path}: unreadable image ({str(exc).strip().splitlines()[-1]})"
                ) from exc
            grid = Grid(
                size=tuple(int(s) for s in reader.GetSize()),
                spacing=tuple(float(s) for s in reader.GetSpacing()),
                origin=tuple(float(o) for o in reader.GetOrigin()),
                direction=tuple(float(d) for d in reader.GetDirection()),
            )
            if reader.GetNumberOfComponents() == 1 and values.size == int(np.prod(grid.size)):
                array = values.reshape(grid.shape)
                if dtype is not None and array.dtype != dtype:
                    array = array.astype(dtype)
                return Volume(array=array, grid=grid, path=path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise EvaluationError(f"{path}: unreadable image ({str(exc).strip().splitlines()[-1]})") from exc
    array = sitk.GetArrayFromImage(image)
    require_finite(array, str(path))
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return Volume(array=array, grid=Grid.of(image), path=path)


def volume_from_array(array: np.ndarray, like: Volume | Grid, path: Path | None = None) -> Volume:
    grid = like.grid if isinstance(like, Volume) else like
    if tuple(array.shape) != grid.shape:
        raise GeometryMismatchError(f"array of shape {array.shape} does not fit grid of shape {grid.shape}")
    return Volume(array=array, grid=grid, path=path)


def require_same_grid(volume: Volume, reference: Volume, tolerance: float = GEOMETRY_TOLERANCE) -> None:
    """Refuse two volumes on different grids; the message names both files and what differs."""
    problems = reference.grid.differences(volume.grid, tolerance)
    if problems:
        raise GeometryMismatchError(
            f"geometry mismatch between {reference.name} and {volume.name}: " + "; ".join(problems)
        )


def write_mask(mask: np.ndarray, grid: Grid, path: Path) -> None:
    """Write a uint8 0/1 mask on `grid`, atomically (atomic_io)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (atomic_io)."""
    write_text_atomic(path, text)


def write_json(path: Path, payload) -> None:
    """The evaluation's JSON layout: indent 2, insertion order, NaN refused (atomic_io's defaults)."""
    write_json_atomic(path, payload)


# ---------------------------------------------------------------------------------------------------
# Case lists
# ---------------------------------------------------------------------------------------------------


def cases_in(folder: Path, suffix: str = "") -> list[str]:
    """Case ids of `<case><suffix>.nii.gz` files in a folder, sorted; hidden/temp files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: folder not found")
    tail = suffix + NIFTI
    found = sorted(
        p.name[: -len(tail)]
        for p in folder.iterdir()
        if p.name.endswith(tail) and not p.name.startswith(".") and len(p.name) > len(tail)
    )
    refuse_case_duplicates(found, folder)
    return found


def refuse_case_duplicates(cases: Iterable[str], where) -> None:
    """Case ids that differ only in letter case (RECUR_001, recur_001) are one patient twice: refused.

    They would count as two cases, and on a case-insensitive file system they are one file.
    """
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(case.casefold(), []).append(case)
    clashes = [sorted(set(g)) for g in groups.values() if len(set(g)) > 1]
    if clashes:
        listed = "; ".join(" / ".join(g) for g in clashes)
        raise EvaluationError(f"{where}: case ids that differ only in letter case: {listed}")


def parse_cases(value: str | None) -> list[str] | None:
    """`--cases`: a comma-separated list, or a file with one case per line (# comments allowed)."""
    if value is None or not value.strip():
        return None
    candidate = Path(value)
    if candidate.is_file():
        lines = candidate.read_text(encoding="utf-8").splitlines()
        cases = [line.split("#", 1)[0].strip() for line in lines]
    else:
        cases = [part.strip() for part in value.split(",")]
    cases = [c for c in cases if c]
    if not cases:
        raise EvaluationError(f"--cases {value!r} names no case")
    refuse_case_duplicates(cases, f"--cases {value!r}")
    return cases


def cases_from_splits(splits_file: Path, fold: int) -> list[str]:
    """The validation cases of one fold of nnU-Net's `splits_final.json`."""
    splits_file = Path(splits_file)
    if not splits_file.is_file():
        raise EvaluationError(f"{splits_file}: splits file not found")
    try:
        splits = json.loads(splits_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{splits_file}: not valid JSON ({exc})") from exc
    if not isinstance(splits, list) or not 0 <= fold < len(splits):
        raise EvaluationError(f"{splits_file}: no fold {fold} (it holds {len(splits)} folds)")
    val = splits[fold].get("val") if isinstance(splits[fold], dict) else None
    if not val:
        raise EvaluationError(f"{splits_file}: fold {fold} has no 'val' cases")
    return [str(c) for c in val]


def select_cases(available: Iterable[str], requested: list[str] | None, where: Path) -> list[str]:
    """`requested` (in its order) if given, else all `available`; a requested case absent is an error."""
    available = list(available)
    if requested is None:
        if not available:
            raise EvaluationError(f"{where}: no cases (*.nii.gz) found")
        return available
    missing = [c for c in requested if c not in set(available)]
    if missing:
        raise MissingCaseError(f"{where}: case(s) {', '.join(missing)} not found")
    return list(dict.fromkeys(requested))


# ---------------------------------------------------------------------------------------------------
# nnU-Net raw dataset folders
# ---------------------------------------------------------------------------------------------------


def find_dataset(path_or_id: str) -> Path:
    """An nnU-Net raw dataset folder from a path, a numeric id (3) or a name (Dataset003_Recur).

    Ids and names are looked up in $nnUNet_raw, as nnU-Net itself does.
    """
    candidate = Path(path_or_id)
    if candidate.is_dir():
        return candidate
    raw = os.environ.get("nnUNet_raw")
    if not raw or not Path(raw).is_dir():
        raise EvaluationError(f"dataset {path_or_id!r}: not a folder, and $nnUNet_raw is not set to a folder")
    try:
        return find_dataset_folder(Path(raw), path_or_id)
    except DatasetNotFoundError as exc:
        raise EvaluationError(f"dataset {path_or_id!r}: {exc}") from exc


def dataset_folders(dataset: Path, split: str) -> dict[str, Path]:
    """`images`, `labels`, `masks` folders of a raw dataset for split 'Tr' or 'Ts'."""
    folders = {
        "images": dataset / f"images{split}",
        "labels": dataset / f"labels{split}",
        "masks": dataset / f"masks{split}",
    }
    return folders


def preprocessed_splits(dataset: Path) -> Path:
    """$nnUNet_preprocessed/<dataset name>/splits_final.json for a raw dataset folder."""
    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise EvaluationError("--fold without --splits needs $nnUNet_preprocessed (or pass --splits FILE)")
    return Path(pre) / dataset.name / "splits_final.json"


# File naming in nnU-Net raw folders.
def label_path(labels_dir: Path, case: str) -> Path:
    return Path(labels_dir) / f"{case}{NIFTI}"


def pet_path(images_dir: Path, case: str) -> Path:
    return Path(images_dir) / f"{case}{PET_CHANNEL}{NIFTI}"


def ct_path(images_dir: Path, case: str) -> Path:
    return Path(images_dir) / f"{case}{CT_CHANNEL}{NIFTI}"


def gtv_path(masks_dir: Path, case: str) -> Path:
    return Path(masks_dir) / f"{case}{GTV_SUFFIX}{NIFTI}"


def brain_path(masks_dir: Path, case: str) -> Path:
    return Path(masks_dir) / f"{case}{BRAIN_SUFFIX}{NIFTI}"
