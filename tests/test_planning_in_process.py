"""``recur plan`` with one process runs nnU-Net's integrity check, fingerprint and preprocessing in this
process (:func:`nnunet_recur.trainers.inprocess_pool.nnunet_in_process`): no worker is started, and it writes
the same plans and fingerprints (bytes) and preprocessed arrays as nnU-Net's own process pools."""

import multiprocessing.process
from pathlib import Path

import pytest
from preprocessed_outputs import preprocessed_outputs
from test_trainers_nnunet import write_dataset

from nnunet_recur.trainers import inprocess_pool, planning

RELAPSE_ID, HECKTOR_ID = 993, 994
RELAPSE = f"Dataset{RELAPSE_ID}_RecurInProc"
HECKTOR = f"Dataset{HECKTOR_ID}_HecktorInProc"


def test_in_process_pool_runs_in_order_and_raises_at_get():
    pool = inprocess_pool.InProcessPool(4)
    with pool as p:
        assert p.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert p.starmap_async(pow, [(2, 5)]).get() == [32]
        failed = p.starmap_async(int, [("not a number",)])
        assert failed.ready() and all(worker.is_alive() for worker in p._pool)
        with pytest.raises(ValueError, match="not a number"):
            failed.get()


def test_override_is_scoped_to_planning():
    import nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor as fingerprint_module
    import nnunetv2.preprocessing.preprocessors.default_preprocessor as preprocessor_module
    import nnunetv2.utilities.utils as utils_module

    pool, spawn = utils_module.Pool, fingerprint_module.multiprocessing
    # several processes: nnU-Net's spawn pools, no fork pool for listing
    with inprocess_pool.nnunet_in_process(2):
        assert utils_module.Pool is inprocess_pool.InProcessPool
        assert fingerprint_module.multiprocessing is spawn
    with pytest.raises(RuntimeError), inprocess_pool.nnunet_in_process(1):
        assert preprocessor_module.multiprocessing is not multiprocessing
        raise RuntimeError("restored even when planning fails")
    assert utils_module.Pool is pool and fingerprint_module.multiprocessing is spawn
    assert preprocessor_module.multiprocessing is multiprocessing


def _plan(monkeypatch, raw: Path, preprocessed: Path, processes: int) -> int:
    """Plan RELAPSE with HECKTOR as pre-training dataset; return how many processes were started."""
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))
    started = []
    original_start = multiprocessing.process.BaseProcess.start

    def counting_start(process):
        started.append(process)
        return original_start(process)

    with monkeypatch.context() as patch:
        patch.setattr(multiprocessing.process.BaseProcess, "start", counting_start)
        planning.plan_with_pretraining(RELAPSE_ID, HECKTOR_ID, processes)
    return len(started)


@pytest.mark.slow
def test_one_process_plans_in_process_with_the_pool_outputs(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_dataset(raw, RELAPSE, "relapse", "RECUR", 4, 0, (16, 24, 24), seed=1)
    write_dataset(raw, HECKTOR, "GTVp", "HECK", 3, 0, (16, 24, 24), seed=2)
    pool_started = _plan(monkeypatch, raw, tmp_path / "pool", processes=2)
    in_process_started = _plan(monkeypatch, raw, tmp_path / "in_process", processes=1)
    assert pool_started > 0  # the counter sees nnU-Net's workers...
    assert in_process_started == 0  # ...and none start with one process

    # plans, fingerprints, dataset.json, gt_segmentations, properties (.pkl): same bytes; same arrays (.b2nd)
    pool, in_process = preprocessed_outputs(tmp_path / "pool"), preprocessed_outputs(tmp_path / "in_process")
    assert sorted(in_process) == sorted(pool)
    assert sum(name.endswith(".b2nd") for name in pool) == 2 * (4 + 3)  # data and seg per case
    for name, content in pool.items():
        assert in_process[name] == content, name
