"""nnunet_names: one place for nnU-Net's names and for the environment of every nnU-Net job."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from nnunet_recur import nnunet_names as names


def test_folder_names():
    assert names.dataset_folder_name(2, "X") == "Dataset002_X"
    assert names.trainer_folder_name("nnUNetTrainerRecur") == "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur"
    assert names.dataset_id("Dataset502_RecurOPSCC") == 502
    with pytest.raises(ValueError):
        names.dataset_id("Task502_Old")


def test_find_dataset_by_id_full_name_and_name(tmp_path):
    (tmp_path / "Dataset501_A").mkdir()
    (tmp_path / "Dataset502_B").mkdir()
    (tmp_path / "Dataset502_Copy").mkdir()
    assert names.find_dataset_folder(tmp_path, 501).name == "Dataset501_A"
    assert names.find_dataset_folder(tmp_path, "Dataset502_B").name == "Dataset502_B"
    assert names.find_dataset_folder(tmp_path, "A").name == "Dataset501_A"
    with pytest.raises(names.DatasetNotFoundError, match="several folders"):
        names.find_dataset_folder(tmp_path, "502")  # ambiguous, as nnU-Net refuses it
    with pytest.raises(names.DatasetNotFoundError, match="Dataset503_"):
        names.find_dataset_folder(tmp_path, 503)


def test_one_rule_for_the_users_own_ext_trainer_in_study_cv_and_demo(tmp_path, monkeypatch):
    """Ours first, the user's folders kept: before, `recur cv` and `recur study` dropped ours."""
    from nnunet_recur.workflow import cv, demo, study

    ours = str(names.ext_trainer_folder())
    for variable in names.FOLDER_VARIABLES:
        monkeypatch.setenv(variable, str(tmp_path / variable))
    monkeypatch.setenv("nnUNet_extTrainer", "/opt/mine")
    expected = f"{ours}{os.pathsep}/opt/mine"
    assert cv.cv_environment("cpu")["nnUNet_extTrainer"] == expected
    assert demo.nnunet_environment(tmp_path, "cpu")["nnUNet_extTrainer"] == expected
    assert study.nnunet_paths(SimpleNamespace(paths={}), os.environ)["nnUNet_extTrainer"] == expected
    assert study.ext_trainer_path() == expected
    env = names.job_environment({v: "x" for v in names.FOLDER_VARIABLES}, {"nnUNet_extTrainer": ours}, "cpu")
    assert env == {
        **{v: "x" for v in names.FOLDER_VARIABLES},
        "nnUNet_extTrainer": ours,
        "nnUNet_def_n_proc": "1",
    }
    assert "nnUNet_def_n_proc" not in names.job_environment(env, {}, "cuda")


def test_names_and_job_environment_import_no_torch():
    code = (
        "import sys, nnunet_recur.nnunet_names, nnunet_recur.workflow.study; "
        "import nnunet_recur.trainers.environment; "
        "print(','.join(m for m in ('torch', 'nnunetv2', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
