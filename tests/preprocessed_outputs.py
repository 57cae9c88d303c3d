"""What nnU-Net planning and preprocessing wrote, comparable between two runs: shared by the in-process
planning test and bench/plan_speed.py, which both check that the two paths write the same outputs."""

from __future__ import annotations

from pathlib import Path


def preprocessed_outputs(folder: Path) -> dict[str, object]:
    """Every file's bytes; for blosc2 arrays (.b2nd) the decoded array (dtype, shape, bytes), as their
    container bytes differ between two runs of the same path (measured in bench/plan_speed.py)."""
    import blosc2

    found = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".b2nd":
            array = blosc2.open(str(path), mode="r")[:]
            found[str(path.relative_to(folder))] = (array.dtype.str, array.shape, array.tobytes())
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found
