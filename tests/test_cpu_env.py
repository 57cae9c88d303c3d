"""The CPU environment for nnUNetv2_train: what it sets, and that the user's own values win."""

from __future__ import annotations

from nnunet_recur.workflow.cpu_env import cpu_training_env


def test_sets_threads_passive_openmp_allocator_and_nnunet_workers():
    env = cpu_training_env(cores=2, environ={})
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) >= 2**30 and int(env["MALLOC_TRIM_THRESHOLD_"]) >= 2**30
    assert env["nnUNet_n_proc_DA"] == "0" and env["nnUNet_def_n_proc"] == "1"


def test_values_the_user_exported_are_left_alone():
    env = cpu_training_env(cores=4, environ={"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_NUM_THREADS" not in env and "OMP_WAIT_POLICY" not in env
    assert env["MKL_NUM_THREADS"] == "4"


def test_at_least_one_thread():
    assert cpu_training_env(cores=0, environ={})["OMP_NUM_THREADS"] == "1"
