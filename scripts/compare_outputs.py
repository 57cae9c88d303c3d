"""Compare two output folders file by file: are they byte-identical, apart from a few volatile things?

Why: a refactor that claims "behaviour unchanged" is checked by running the same command (e.g. the reduced
`recur demo`) before and after it and comparing everything it wrote. Most files must match byte for byte
(sha256); only the things below, which differ between any two runs of the same code, are masked. The rules
are few on purpose: every masked byte is a byte the check cannot see.

Ignore rules (nothing else is ignored):

1. Log and lock files are skipped (listed as "skipped", not compared): names ending in ``.log``,
   nnU-Net's ``training_log_*.txt`` (a wall-clock timestamp and epoch durations on every line) and
   ``.lock`` files (they hold the pid of the process that held them).
2. In text reports (``.json``, ``.csv``, ``.md``, ``.html``) before comparing:
   a. each side's own folder (the path given and its resolved form) becomes ``<RUN>``; extra pairs of
      absolute paths given with ``--alias LEFT RIGHT`` (e.g. the two source checkouts the runs used) become
      ``<ALIAS1>``, ``<ALIAS2>``, ...;
   b. ISO-8601 date-times (``2026-12-07T19:39:33``, optional fraction and zone; a space for the ``T``
      too) and the date-time in nnU-Net's log file name (``training_log_2026_12_7_19_41_34``) become
      ``<TIME>``; the memory address in a Python object's repr (``<... object at 0x7f53c64a7d90>``,
      nnU-Net's debug.json) becomes ``0x<ADDR>``;
   c. the value of a JSON member whose key is one of ``VOLATILE_KEYS`` (wall-clock stamps, durations,
      process ids, host names, the git commit of the code that ran, and the converter's input
      fingerprints, which hash each input file's absolute path and mtime) becomes ``"<VOLATILE>"`` when
      the value is a number, a string, null or a flat object (``"timing_s": {...}``);
   d. in a CSV file or a Markdown table, the cells of a column whose header is one of ``VOLATILE_KEYS``
      become ``<VOLATILE>``.
   (c and d do not apply to HTML: only paths and date-times are masked there.)
   The masked texts must then be identical byte for byte; layout (indent, key order, final newline,
   quoting) is compared, not normalised.

Every other file (images, NIfTI, DICOM, PNG, checkpoints, ...) is compared by sha256 only.

Run-to-run noise: some outputs differ between two runs of the *same* code (DICOM UIDs and content times,
anything downstream of nondeterministic training). ``--noise REPORT`` takes the JSON report of such a
pair (the base run against a rerun of it): files that differed there are listed as ``differing_noise``
instead of ``differing`` and do not fail the comparison. A change hidden in such a file is not seen, so
the noise list belongs in the record of the check, file by file, with its cause.

Usage: ``python scripts/compare_outputs.py LEFT RIGHT [--alias L R]... [--noise R.json] [--report R.json]``.
Exit 0 when the folders are equal under these rules, 1 when anything differs or is only in one folder,
2 for bad input (a folder that does not exist). The JSON report lists identical / differing / only-left /
only-right / skipped relative paths, the counts and the rules used.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script: the package lives beside scripts/
    sys.path.insert(0, str(REPO))

from nnunet_recur.atomic_io import write_json_atomic  # noqa: E402
from nnunet_recur.exit_status import BAD_INPUT  # noqa: E402

# JSON keys / CSV and Markdown column headers whose values differ between two runs of the same code.
VOLATILE_KEYS = frozenset(
    {
        # wall-clock stamps (the workflow journal, job specs and results)
        "submitted",
        "started",
        "ended",
        "finished",
        "timestamp",
        "time",
        "date",
        # durations
        "seconds",
        "wall_s",
        "wall_seconds",
        "elapsed",
        "duration",
        "timing_s",
        # processes and hosts
        "pid",
        "job_id",
        "node",
        "host",
        "hostname",
        # provenance: the commit of the code that ran (differs between any two commits by definition)
        "git_commit",
        # the converter's resume state: sha1 over each input file's absolute path, size and mtime
        "fingerprint",
        "output_key",
    }
)
TEXT_SUFFIXES = (".json", ".csv", ".md", ".html")
ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|(?<=training_log_)\d{4}(?:_\d{1,2}){5}"
)
OBJECT_ADDRESS = re.compile(r"(?<= object at )0x[0-9a-fA-F]+")
_KEY_ALT = "|".join(sorted(map(re.escape, VOLATILE_KEYS)))
_JSON_SCALAR_OR_FLAT_OBJECT = (
    r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|null|NaN|-?Infinity|\{[^{}]*\}'
)
JSON_VOLATILE = re.compile(rf'("(?:{_KEY_ALT})"\s*:\s*)(?:{_JSON_SCALAR_OR_FLAT_OBJECT})')
MASK = "<VOLATILE>"


def is_skipped(rel: str) -> bool:
    """Rule 1: log and lock files are not compared."""
    name = rel.rsplit("/", 1)[-1]
    return name.endswith((".log", ".lock")) or (name.startswith("training_log_") and name.endswith(".txt"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mask_columns(rows: list[list[str]]) -> list[list[str]]:
    """Rule 2d for parsed rows: the first row is the header."""
    if not rows:
        return rows
    volatile = [i for i, name in enumerate(rows[0]) if name.strip().lower() in VOLATILE_KEYS]
    return [rows[0]] + [[MASK if i in volatile else c for i, c in enumerate(row)] for row in rows[1:]]


def _mask_csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(n.strip().lower() in VOLATILE_KEYS for n in rows[0]):
        return text  # no volatile column: the text itself, quoting and all, is compared
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(_mask_columns(rows))
    return out.getvalue()


def _mask_markdown_tables(text: str) -> str:
    """Rule 2d for Markdown: a table is a run of lines starting with '|'; its first line is the header."""
    lines = text.split("\n")
    header: list[str] | None = None
    for n, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = line.split("|")
        if header is None:
            header = [c.strip().lower() for c in cells]
            continue
        volatile = {i for i, name in enumerate(header) if name in VOLATILE_KEYS}
        is_rule = not any(set(c.strip()) - set("-: ") for c in cells)  # the |---|---| line under the header
        if volatile and not is_rule:
            lines[n] = "|".join(f" {MASK} " if i in volatile else c for i, c in enumerate(cells))
    return "\n".join(lines)


def masked_text(data: bytes, suffix: str, roots: list[tuple[str, str]]) -> str:
    """Rule 2: the text with its volatile parts replaced; `roots` is [(absolute path, placeholder)]."""
    text = data.decode("utf-8", errors="surrogateescape")
    for path, placeholder in sorted(roots, key=lambda r: -len(r[0])):  # longest first: nested paths
        text = text.replace(path, placeholder)
    text = ISO_TIME.sub("<TIME>", text)
    text = OBJECT_ADDRESS.sub("0x<ADDR>", text)
    if suffix == ".json":
        return JSON_VOLATILE.sub(rf'\1"{MASK}"', text)
    if suffix == ".csv":
        return _mask_csv(text)
    if suffix == ".md":
        return _mask_markdown_tables(text)
    return text


def _roots(folder: Path, given: str, aliases: list[str]) -> list[tuple[str, str]]:
    pairs = {given.rstrip("/"): "<RUN>", str(folder.resolve()): "<RUN>"}
    for n, alias in enumerate(aliases, start=1):
        pairs[alias.rstrip("/")] = f"<ALIAS{n}>"
        pairs[str(Path(alias).resolve())] = f"<ALIAS{n}>"
    return [(p, ph) for p, ph in pairs.items() if p not in ("", "/")]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def compare(
    left: Path, right: Path, aliases: list[tuple[str, str]] = (), noise: set[str] = frozenset()
) -> dict:
    """The comparison of two folders under the module's rules, as the JSON report holds it; `noise` holds
    the relative paths known to differ between two runs of the same code."""
    left_roots = _roots(left, str(left), [a for a, _ in aliases])
    right_roots = _roots(right, str(right), [b for _, b in aliases])
    left_files, right_files = _files(left), _files(right)
    report: dict = {
        "identical": [],
        "identical_after_masking": [],
        "differing": [],
        "differing_noise": [],
        "skipped": [],
    }
    for rel in sorted(left_files & right_files):
        if is_skipped(rel):
            report["skipped"].append(rel)
            continue
        a, b = left / rel, right / rel
        if a.stat().st_size == b.stat().st_size and sha256(a) == sha256(b):
            report["identical"].append(rel)
            continue
        suffix = Path(rel).suffix.lower()
        if suffix in TEXT_SUFFIXES and masked_text(a.read_bytes(), suffix, left_roots) == masked_text(
            b.read_bytes(), suffix, right_roots
        ):
            report["identical_after_masking"].append(rel)
        else:
            report["differing_noise" if rel in noise else "differing"].append(rel)
    report["only_left"] = sorted(f for f in left_files - right_files if not is_skipped(f))
    report["only_right"] = sorted(f for f in right_files - left_files if not is_skipped(f))
    report["counts"] = {key: len(value) for key, value in report.items()}
    report["equal"] = not (report["differing"] or report["only_left"] or report["only_right"])
    report["left"], report["right"] = str(left), str(right)
    report["rules"] = {
        "skipped_files": "*.log, *.lock, training_log_*.txt",
        "masked_in": list(TEXT_SUFFIXES),
        "volatile_keys": sorted(VOLATILE_KEYS),
        "aliases": [list(pair) for pair in aliases],
        "noise_files": len(noise),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("left", type=Path)
    parser.add_argument("right", type=Path)
    parser.add_argument(
        "--alias",
        nargs=2,
        action="append",
        default=[],
        metavar=("LEFT", "RIGHT"),
        help="two absolute paths that play the same part in each run (e.g. the source checkouts)",
    )
    parser.add_argument(
        "--noise",
        type=Path,
        help="JSON report of two runs of the same code: files that differed there are run-to-run noise",
    )
    parser.add_argument("--report", type=Path, help="where to write the JSON report")
    args = parser.parse_args(argv)
    for folder in (args.left, args.right):
        if not folder.is_dir():
            print(f"error: {folder}: not a folder", file=sys.stderr)
            return BAD_INPUT
    noise: set[str] = set()
    if args.noise:
        try:
            noise = set(json.loads(args.noise.read_text())["differing"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {args.noise}: not a compare_outputs report ({exc})", file=sys.stderr)
            return BAD_INPUT
    report = compare(args.left, args.right, [tuple(pair) for pair in args.alias], noise)
    if args.report:
        write_json_atomic(args.report, report)
    counts = report["counts"]
    print(
        f"identical {counts['identical']}, identical after masking {counts['identical_after_masking']}, "
        f"differing {counts['differing']} (+ {counts['differing_noise']} run-to-run noise), "
        f"only left {counts['only_left']}, "
        f"only right {counts['only_right']}, skipped {counts['skipped']}"
    )
    for key in ("differing", "only_left", "only_right"):
        for rel in report[key]:
            print(f"  {key}: {rel}")
    return 0 if report["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
