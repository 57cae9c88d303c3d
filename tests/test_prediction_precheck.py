"""`recur predict` checks the patient folder (PET present, GTV found) before it loads the model: a bad
folder fails with its one-line reason even when the model could not be loaded at all."""

from __future__ import annotations

import json
import shutil
import time

import pydicom
import pytest
from typer.testing import CliRunner

from nnunet_recur.cli import app
from nnunet_recur.prediction.precheck import check_patient_folder


@pytest.fixture(scope="module")
def patient(synthetic_dicom_patient):
    return synthetic_dicom_patient


def _without(patient, target, modality: str):
    shutil.copytree(patient, target)
    for path in target.rglob("*"):
        if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).Modality == modality:
            path.unlink()
    return target


def unloadable_model(root):
    """A model folder that resolves (plans, dataset.json with the converter's channels and crop box) but
    whose weights cannot load: a zero-byte checkpoint."""
    folder = root / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    (folder / "plans.json").write_text("{}")
    dataset = {
        "channel_names": {"0": "CT", "1": "PET", "2": "PET_zscore_patient"},
        "recur_crop": {"size_voxels": [32, 32, 16], "mode": "gtv_centre"},
    }
    (folder / "dataset.json").write_text(json.dumps(dataset))
    return folder


def test_a_folder_without_pet_fails_before_the_weights_are_read(patient, tmp_path):
    model = unloadable_model(tmp_path / "model")
    no_pet = _without(patient, tmp_path / "NO_PET", "PT")
    runner = CliRunner()
    started = time.perf_counter()
    result = runner.invoke(app, ["predict", str(no_pet), "--model", str(model), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.startswith(("FAIL", "error"))]
    assert len(lines) == 1 and lines[0].startswith("FAIL NO_PET [pet_missing]"), result.output
    assert time.perf_counter() - started < 30 and not (tmp_path / "o").exists()
    assert "model" not in result.output  # the weights (a zero-byte checkpoint) were never read


def test_precheck_names_the_missing_gtv_and_passes_a_good_folder(patient, tmp_path):
    assert check_patient_folder(patient) is None
    no_structure = _without(patient, tmp_path / "NO_RS", "RTSTRUCT")
    assert check_patient_folder(no_structure)[0] == "rtstruct_missing"
    cause, message = check_patient_folder(patient, roi_gtv="^NOTHING$")
    assert cause == "gtv_missing" and "ROIs:" in message and "\n" not in message
