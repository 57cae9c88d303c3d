"""The process environment for ``nnUNetv2_train`` / ``nnUNetv2_predict`` on a CPU.

Why (measured with bench/cpu_threads.py; figures in docs/benchmarks_demo.md):

* OpenMP waiting. torch's CPU kernels run on libgomp threads, which *spin* at every barrier before they
  sleep. When anything else wants the same cores (another process, nnU-Net's own workers, the kernel), a
  spinning thread steals the time slice of the thread it waits for: at the demo's patch a training
  iteration burnt 3.0 CPU-s with the default and 0.54 CPU-s with ``OMP_WAIT_POLICY=PASSIVE`` (same work,
  2 threads), and was 4-6x faster in wall time. On an idle machine PASSIVE cost nothing measurable.
* The allocator. A 3D U-Net iteration allocates and frees a few large buffers. glibc serves blocks above
  its mmap threshold with a fresh ``mmap`` and gives them back with ``munmap``, so every iteration faults
  hundreds of MB of pages back in and the kernel zeroes them: 81 k page faults and 14 % system time per
  iteration at 32 x 48 x 48. Raising the mmap and trim thresholds keeps the buffers in the heap: 0 faults,
  < 1 % system time, 17 % less wall time.
* nnU-Net's worker processes (augmentation, export, preprocessing) each start a Python with torch and
  compete for the cores on a small machine; flip-only augmentation is cheap in the main process.

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
        # one intra-op thread per core (torch's default too, but MKL/OpenMP in helpers may differ) ...
        "OMP_NUM_THREADS": str(n),
        "MKL_NUM_THREADS": str(n),
        # ... that sleeps instead of spinning while it waits for the others
        "OMP_WAIT_POLICY": "PASSIVE",
        # nnU-Net: augmentation in the main process (flip only: cheap), one export/preprocessing worker
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
    }
    return {k: v for k, v in wanted.items() if k not in environ}
