"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


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
