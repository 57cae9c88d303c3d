"""The converter's worker pool now lives in the neutral ``nnunet_recur/worker_pool.py`` (prediction's batch
uses it too); this name stays so the converter's imports keep working."""

from nnunet_recur.worker_pool import run_jobs  # noqa: F401 - re-export
