"""Where the tests find the shared real test data (../shared/testdata/real), and a clean skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "real"


def real(sub: str) -> Path:
    """`REAL / sub`, or skip the test when this checkout has no shared real data."""
    path = REAL / sub
    if not path.exists():
        pytest.skip(f"real test data not available: {path}")
    return path
