"""Where a report came from: package version, git commit, command line, and a hash of every input.

A report read months later must say what produced it; two reports that disagree can then be traced
to different code or different inputs without rerunning anything.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_HASH_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_version() -> str:
    """The installed distribution's version, else the package's own `__version__`."""
    from importlib import metadata

    try:
        return metadata.version("nnunet-recur")
    except metadata.PackageNotFoundError:
        import nnunet_recur

        return str(getattr(nnunet_recur, "__version__", "unknown"))


def git_commit() -> str | None:
    """Commit of the source tree the package runs from (+dirty when modified); None outside git."""
    source = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def provenance(inputs: Iterable[str | Path], argv: list[str] | None = None) -> dict:
    """The `provenance` block of summary.json / best.json: version, commit, command line, input hashes."""
    files = sorted(dict.fromkeys(str(p) for p in inputs))
    return {
        "package": "nnunet-recur",
        "version": package_version(),
        "git_commit": git_commit(),
        "command_line": list(sys.argv if argv is None else argv),
        "python": sys.version.split()[0],
        "input_sha256": {path: sha256_of(Path(path)) for path in files if Path(path).is_file()},
    }
