"""The process environment for ``nnUNetv2_train`` / ``nnUNetv2_predict`` on a CPU.

Why: on a small CPU machine a 3D U-Net iteration is dominated by a few large convolution buffers that
are allocated and freed every iteration. glibc serves allocations above its mmap threshold with a fresh
``mmap`` and returns them with ``munmap`` at ``free``, so every iteration faults hundreds of MB of pages
back in and the kernel zeroes them: system time, not arithmetic (bench/cpu_threads.py measures it;
figures in docs/benchmarks_demo.md). Raising the mmap and trim thresholds keeps those buffers in the heap
for reuse. nnU-Net's own worker processes (augmentation, export) only add start-up time and compete for
the cores on a small machine, so they are turned off or kept to one.

The variables are plain environment variables read at process start (glibc reads ``MALLOC_*_`` when the
process starts, OpenMP reads ``OMP_NUM_THREADS`` when torch loads), so they must be set for the
subprocess, not from inside it. Values the user already exported win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: glibc: serve large blocks from the heap and keep freed memory (4 GiB: above any buffer of the demo).
MALLOC_KEEP_BYTES = str(4 * 1024**3)


def cpu_training_env(cores: int | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables to add for ``nnUNetv2_train``/``nnUNetv2_predict`` with ``-device cpu``.

    ``cores``: the CPU cores this process may use (default: the process's affinity mask). Variables set in
    ``environ`` (default ``os.environ``) are left to the user and not returned.
    """
    environ = os.environ if environ is None else environ
    n = max(1, cores if cores is not None else len(os.sched_getaffinity(0)))
    wanted = {
        # glibc allocator: no mmap/munmap round trip (and page faults) for the big per-iteration buffers
        "MALLOC_MMAP_THRESHOLD_": MALLOC_KEEP_BYTES,
        "MALLOC_TRIM_THRESHOLD_": MALLOC_KEEP_BYTES,
        # one intra-op thread per core (torch's default too, but MKL/OpenMP in helpers may differ)
        "OMP_NUM_THREADS": str(n),
        "MKL_NUM_THREADS": str(n),
        # nnU-Net: augmentation in the main process (flip only: cheap), one export/preprocessing worker
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
    }
    return {k: v for k, v in wanted.items() if k not in environ}
