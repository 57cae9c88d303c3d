"""`recur predict` checks the patient folder (PET present, GTV found) before it loads the model: a bad
folder fails with its one-line reason even when the model could not be loaded at all."""

from __future__ import annotations

import shutil
import time

import pydicom
import pytest
from typer.testing import CliRunner

from nnunet_recur.cli import app
from nnunet_recur.prediction.precheck import check_patient_folder


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    from nnunet_recur.synthetic.cohort import make_cohort

    out = tmp_path_factory.mktemp("precheck")
    make_cohort(out, 1, 2, "inhouse-dicom", "small", False)
    return next((out / "patients").iterdir())


def _without(patient, target, modality: str):
    shutil.copytree(patient, target)
    for path in target.rglob("*"):
        if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).Modality == modality:
            path.unlink()
    return target


def test_a_folder_without_pet_fails_before_the_model_is_touched(patient, tmp_path):
    no_pet = _without(patient, tmp_path / "NO_PET", "PT")
    started = time.perf_counter()
    result = CliRunner().invoke(
        app,
        ["predict", str(no_pet), "--model", str(tmp_path / "no_such_model"), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.startswith(("FAIL", "error"))]
    assert len(lines) == 1 and lines[0].startswith("FAIL NO_PET [pet_missing]"), result.output
    assert "model" not in lines[0] and time.perf_counter() - started < 30
    assert not (tmp_path / "o").exists()


def test_precheck_names_the_missing_gtv_and_passes_a_good_folder(patient, tmp_path):
    assert check_patient_folder(patient) is None
    no_structure = _without(patient, tmp_path / "NO_RS", "RTSTRUCT")
    assert check_patient_folder(no_structure)[0] == "rtstruct_missing"
    cause, message = check_patient_folder(patient, roi_gtv="^NOTHING$")
    assert cause == "gtv_missing" and "ROIs:" in message and "\n" not in message
