"""Atomic file writes: a temporary name in the target's folder, then ``os.replace``.

Every output of the project goes through here, so an interrupted run never leaves a half-written file where
nnU-Net, a planning system or a report reader looks, and a rerun finds either the old file or the new one.
On a storage error (disk full) the temporary file is removed and an ``OSError`` with one plain line (the path
and the reason) is raised. Light on purpose: numpy is the only import beyond the standard library.

JSON layouts: every file keeps the bytes it had before the writers were merged here (users and tests compare
them), so the callers pass the layout they always wrote:

- evaluation reports (summary.json, stats.json, best.json, status files): indent 2, NaN refused (defaults);
- converter (dataset.json, splits_final.json, reports): indent 4 (``nnunet_writer.write_json_atomic``);
- nnUNetRecurPlans.json: indent 4, no final newline; recur_best.json / seed_selection.json and
  training_curves.json: indent 2, no final newline; workflow journal and job specs: indent 1, no final
  newline (these allow NaN, as ``json.dumps`` did);
- synthetic ground truth: indent 2, sorted keys.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

# Suffixes that writers pick their format from (SimpleITK, nibabel): the temporary name keeps them.
_KEPT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".dcm", ".png", ".json", ".csv", ".npz", ".b2nd")


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` unique to this process that keeps the format suffix."""
    path = Path(path)
    suffix = next((s for s in _KEPT_SUFFIXES if path.name.endswith(s)), "")
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on any error it is removed.

    For writers that take a file name (``sitk.WriteImage``, ``Dataset.save_as``, ``savefig``)."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError) and exc.filename == str(tmp):
            raise
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`data` to `path`, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """`text` (UTF-8) to `path`, flushed to disk before the rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_default(value):
    """numpy scalars and arrays, and paths, as plain JSON values (json.dumps' `default`)."""
    import numpy as np  # noqa: PLC0415 - keep the module import-light

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(
    data, *, indent: int = 2, sort_keys: bool = False, allow_nan: bool = False, final_newline: bool = True
) -> str:
    """The project's JSON layout: fixed indent and key order so reruns write the same bytes.

    NaN/inf are refused by default (strict JSON readers reject them); pass ``allow_nan=True`` where a
    non-finite value is a documented result (e.g. an undefined metric), or map them to None first.
    `indent`, `sort_keys` and `final_newline` let each existing output keep its bytes (callers say why)."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, default=json_default)
    return text + "\n" if final_newline else text


def write_json_atomic(
    path: Path,
    data,
    *,
    indent: int = 2,
    sort_keys: bool = False,
    allow_nan: bool = False,
    final_newline: bool = True,
):
    """`data` as JSON (see :func:`json_text`) to `path`, atomically."""
    write_text_atomic(
        path,
        json_text(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, final_newline=final_newline),
    )


def finite_or_none(value):
    """A float for JSON: None where it is NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
