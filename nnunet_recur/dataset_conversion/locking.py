"""An exclusive lock per dataset id, so two conversions never write one dataset at the same time.

Two runs with different seeds into one dataset id both exited 0 and left a case in both imagesTr and
imagesTs. The lock is an fcntl.flock on `$nnUNet_raw/.DatasetXXX.lock` (per id, not per name: nnU-Net
finds a dataset by its number). It is released by the kernel when the process ends, however it ends,
so a killed run never leaves a stale lock. The second run refuses at once with a message naming the
holder; it does not wait (a queued conversion would silently overwrite the first one's split).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from nnunet_recur.dataset_conversion.nnunet_writer import DatasetLocationError


class DatasetBusyError(DatasetLocationError):
    """Another process holds the dataset's lock."""


@contextmanager
def dataset_lock(root: Path, dataset_id: int):
    """Hold the exclusive lock of dataset `dataset_id` under `root` for the duration of the block."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".Dataset{int(dataset_id):03d}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="ignore").strip() or "another process"
            raise DatasetBusyError(
                f"{path}: dataset {int(dataset_id):03d} is being written by {holder}; "
                "wait for that conversion to finish, then run again"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"recur convert (pid {os.getpid()})".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
