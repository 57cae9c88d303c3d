"""What in a cohort folder is not a patient, and patient names that cannot be told apart on screen.

A patient is a (non-hidden) folder of SRC. Everything else (a `PAT_X.zip` delivered instead of a folder,
a spreadsheet, a hidden folder) is skipped, but never without a word: each entry is listed in the report
with its reason, so that a patient who arrived as an archive is noticed. Two folders whose names differ
only in Unicode normalisation (NFC "é" vs NFD "e" + combining accent, as macOS and Windows produce) or in
leading/trailing spaces are two patients whose report rows look identical; they are converted, warned
about, and their names are shown escaped (`ascii()`) so that the rows can be told apart.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_ENDINGS = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar", ".gz")
HIDDEN_FOLDER_REASON = "dot-prefixed (hidden) folder: not converted; rename it without the dot to convert it"


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of SRC that is not converted, and why (one row of cases.csv with status `skipped`)."""

    name: str
    reason: str


def _reason(path: Path) -> str | None:
    """Why `path` (an entry of SRC) is not a patient folder; None when it is one."""
    name = path.name
    if path.is_dir():
        return HIDDEN_FOLDER_REASON if name.startswith(".") else None
    if path.is_symlink() and not path.exists():
        return "dangling symlink, not a patient folder"
    lowered = name.lower()
    for ending in ARCHIVE_ENDINGS:
        if lowered.endswith(ending):
            return f"{ending[1:]} archive, not a patient folder: unpack it first (one folder per patient)"
    if not path.is_file():
        return "not a regular file or folder (FIFO, socket or device)"
    if name.startswith("."):
        return "hidden file, not a patient folder"
    return "plain file, not a patient folder (a patient is a folder of DICOM or NIfTI files)"


def skipped_entries(src: str | Path) -> list[SkippedEntry]:
    """Every entry of SRC that is not converted as a patient, with its reason, sorted by name."""
    found = []
    for path in sorted(Path(src).iterdir()):
        reason = _reason(path)
        if reason is not None:
            found.append(SkippedEntry(path.name, reason))
    return found


def _plain(name: str) -> bool:
    return name.isascii() and name.isprintable() and name == name.strip()


def shown_name(name: str) -> str:
    """The name as the report shows it: unchanged when plain printable ASCII without surrounding spaces,
    else escaped by `ascii()` (quotes included), so `PAT_1 ` and NFD `Pe\\u0301` are visible as such."""
    return name if _plain(name) else ascii(name)


def _look(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip()


def lookalike_groups(names: Iterable[str]) -> list[list[str]]:
    """Groups (of two or more) of names that differ only by Unicode normalisation or surrounding spaces,
    each sorted; the groups sorted by their first name."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_look(name), []).append(name)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def lookalike_warning(group: list[str]) -> str:
    shown = ", ".join(ascii(n) for n in group)
    return (
        f"patient folders {shown} differ only by Unicode normalisation (NFC/NFD), surrounding "
        "spaces: converted as separate patients; check that they are not the same patient"
    )
