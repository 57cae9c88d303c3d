"""Foundation checks: the package installs, the console scripts answer, torch is the pinned build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_torch_and_torchvision_are_the_pinned_pair():
    """An unpinned install swaps torch for a build whose torchvision import fails (see constraints.txt)."""
    import torch
    import torchvision

    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchvision.__version__.split("+")[0] == pins["torchvision"]


def test_nnunet_trainer_lookup_imports_torchvision_cleanly():
    """nnU-Net's -tr look-up walks every trainer module (timm -> torchvision); it must not crash."""
    code = (
        "import nnunetv2, os\n"
        "from nnunetv2.utilities.find_objects import recursive_find_python_class\n"
        "d = os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer')\n"
        "c = recursive_find_python_class(d, 'nnUNetTrainer', 'nnunetv2.training.nnUNetTrainer')\n"
        "print(c.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("nnUNetTrainer")


@pytest.mark.parametrize(
    "argv",
    [
        ["recur", "--help"],
        ["recur-eval", "--help"],
        ["nnUNetv2_train", "-h"],
        ["nnUNetv2_predict", "-h"],
        ["nnUNetv2_plan_and_preprocess", "-h"],
    ],
)
def test_console_scripts_answer_help(argv):
    exe = BIN / argv[0]
    assert exe.exists(), f"{exe} not installed"
    out = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage" in out.stdout.lower()


RECUR_COMMANDS = {
    "synth",
    "convert",
    "plan",
    "env",
    "best-seed",
    "demo",
    "cv",
    "predict",
    "study",
    "calibrate",
    "federated",
}
RECUR_EVAL_COMMANDS = {
    "suvmax-sweep",
    "suvmax-predict",
    "gtv-predict",
    "compare",
    "training-curves",
    "dose-pattern",
    "dp-qa",
    "calibration",
    "site-summary",
    "pool",
}


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("nnunet_recur.cli", "recur", RECUR_COMMANDS),
        ("nnunet_recur.evaluation.cli", "recur-eval", RECUR_EVAL_COMMANDS),
    ],
)
def test_every_subcommand_is_registered_and_answers(module, name, expected):
    """The commands the typer app registers (not words in its help text), each invoked with --help."""
    import importlib

    import typer
    from typer.testing import CliRunner

    app = importlib.import_module(module).app
    group = typer.main.get_command(app)
    assert set(group.commands) == expected
    runner = CliRunner()
    for command in sorted(expected):
        result = runner.invoke(app, [command, "--help"], prog_name=name)
        assert result.exit_code == 0, (command, result.output)
        assert f"Usage: {name} {command}" in " ".join(result.output.split()), command


def test_subpackages_mirror_nnunet_names():
    """The house layout: each area is its own package under nnunet_recur/, imported from this checkout."""
    import importlib

    for name in ("synthetic", "dataset_conversion", "trainers", "evaluation", "prediction", "workflow"):
        package = importlib.import_module(f"nnunet_recur.{name}")
        assert Path(package.__file__).resolve() == REPO / "nnunet_recur" / name / "__init__.py", name
        assert list(package.__path__) == [str(REPO / "nnunet_recur" / name)], name


def test_recur_version_and_research_tool_note():
    import nnunet_recur

    out = subprocess.run([str(BIN / "recur"), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"nnunet-recur {nnunet_recur.__version__}"
    shown = subprocess.run([str(BIN / "recur"), "--help"], capture_output=True, text=True, timeout=60)
    help_text = shown.stdout
    assert "not a medical device" in " ".join(help_text.split())
    assert "not a medical device" in (REPO / "README.md").read_text()


def test_evaluation_imports_no_trainer_and_no_converter_to_read_a_volume(tmp_path):
    """What evaluation/__init__.py says: importing every evaluation module loads no trainer and no converter
    module, and reading a volume (the NIfTI guard of nnunet_recur.nifti_header) loads none either."""
    code = (
        "import pkgutil, importlib, sys\n"
        "import nnunet_recur.evaluation as e\n"
        "for m in pkgutil.iter_modules(e.__path__):\n"
        "    importlib.import_module(f'nnunet_recur.evaluation.{m.name}')\n"
        "prefixes = ('nnunet_recur.dataset_conversion', 'nnunet_recur.trainers')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
        "e.volumes.require_complete(sys.argv[1])\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
    )
    import numpy as np
    import SimpleITK as sitk

    path = tmp_path / "probe.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), str(path))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.splitlines()
    assert before == "[]"
    assert after == "[]"
