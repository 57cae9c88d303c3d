"""The environment of the tests' tiny nnU-Net runs: their own three folders, one export worker, no compile."""

from __future__ import annotations

import os
from pathlib import Path


def tiny_nnunet_env(root: Path, threads: int = 2, preprocessed: str = "preprocessed") -> dict:
    """This process's environment without the user's nnU-Net folders, trainer path, augmentation-worker count
    or seed (the test sets what it needs), plus the folders under `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "RECUR_SEED"}
    env.update(
        nnUNet_raw=str(Path(root) / "raw"),
        nnUNet_preprocessed=str(Path(root) / preprocessed),
        nnUNet_results=str(Path(root) / "results"),
        nnUNet_def_n_proc="1",
        nnUNet_compile="false",
        OMP_NUM_THREADS=str(threads),
    )
    return env
