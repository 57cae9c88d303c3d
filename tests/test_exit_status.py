"""One exit status for bad input across `recur` and `recur-eval` (nnunet_recur/exit_status.py, issue 18 §4):
each command, given bad input, exits BAD_INPUT (2) with one `error` line and no traceback; `--device` takes
auto|cpu|cuda|mps everywhere."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from nnunet_recur.cli import app as recur
from nnunet_recur.device_choice import DEVICE_CHOICES, DeviceError, resolve_device
from nnunet_recur.evaluation.cli import app as recur_eval
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES


def bad_input_line(result) -> str:
    """The one `error` line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == BAD_INPUT, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_exit_statuses_are_the_documented_ones():
    assert (BAD_INPUT, FAILED_CASES) == (2, 1)


def test_convert_refuses_bad_input_with_exit_2(tmp_path, monkeypatch):
    runner = CliRunner()
    patient = tmp_path / "patient"
    patient.mkdir()
    no_dataset = tmp_path / "Dataset502_X"
    no_dataset.mkdir()
    result = runner.invoke(recur, ["convert", "new-patient", str(patient), "--dataset", str(no_dataset),
                                   "--out", str(tmp_path / "o")])  # fmt: skip
    assert "no dataset.json" in bad_input_line(result)  # was exit 1
    empty = tmp_path / "empty_pet"
    empty.mkdir()
    result = runner.invoke(recur, ["convert", "pet", str(empty), "--out", str(tmp_path / "pet.nii.gz")])
    assert str(empty) in bad_input_line(result)  # was exit 1


def test_trainers_and_evaluation_refuse_bad_input_with_exit_2(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.delenv("nnUNet_results", raising=False)
    assert "nnUNet_results is not set" in bad_input_line(runner.invoke(recur, ["best-seed", "999"]))  # was 1
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    assert "999" in bad_input_line(runner.invoke(recur, ["best-seed", "999"]))  # no such dataset; was 1
    result = runner.invoke(recur_eval, ["training-curves", "--run", "no-label", "--out", str(tmp_path / "c")])
    assert "expected LABEL=FOLD_DIR" in bad_input_line(result)  # was 1


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "patient", "--device", "gpu"],
        ["demo", "--device", "gpu"],
        ["cv", "502", "--device", "gpu"],
        ["study", "run", "study.toml", "--device", "gpu"],
    ],
)
def test_every_device_option_takes_the_same_values(argv):
    result = CliRunner().invoke(recur, argv)
    assert result.exit_code == BAD_INPUT  # a usage error: typer lists the choices
    assert "auto" in result.output and "mps" in result.output


def test_device_choice_resolves_auto_and_refuses_a_missing_gpu(monkeypatch):
    assert DEVICE_CHOICES == ("auto", "cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto", runs_here=False) == "cuda"  # Slurm jobs run on GPU nodes
    assert resolve_device("mps", runs_here=False) == "mps"
    with pytest.raises(DeviceError, match="choose auto, cpu, cuda or mps"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_cv_with_a_gpu_this_machine_lacks_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    result = CliRunner().invoke(recur, ["cv", "502", "--device", "cuda"])
    assert result.exit_code == BAD_INPUT and "no CUDA device" in result.output
