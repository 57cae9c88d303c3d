"""Say what differs inside the binary files that ``compare_outputs.py`` found differing.

Why: a DICOM object or an nnU-Net checkpoint differs byte for byte between any two runs (fresh UIDs and
creation times; the epochs' wall-clock stamps), so its sha256 cannot tell a refactor's real change from
that. This script opens each such pair with pydicom / torch and lists the differing DICOM attributes
(keyword, nested sequences included; pixel data compared as bytes) or checkpoint entries (every tensor
compared exactly, every other value by ``==``). A pair whose only differences are the expected ones
(``EXPECTED_DICOM``: UIDs, dates and times of creation; ``EXPECTED_CHECKPOINT``: the epoch timestamps) is
"explained"; anything else is printed as unexplained. nnU-Net's ``progress.png`` is drawn from the
``logging`` entry of the checkpoint beside it (losses, Dice, learning rate and the epoch durations), so it
is explained when that ``checkpoint_final.pth`` (or ``checkpoint_latest.pth``) pair differs only in the
expected entries. Other differing files are listed as "not opened".

Usage: ``python scripts/explain_differences.py REPORT.json`` (a report of compare_outputs.py; its
"left" and "right" folders must still exist). Exit 0 when every differing .dcm/.pth pair is explained and
no other file differs, 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Kept alike to compare_outputs.py on purpose (duplicates lists the pair by shape): the same three-line path
# set-up of a plain script, then a set of names that is different data (DICOM keywords, not JSON keys).
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script: the package lives beside scripts/
    sys.path.insert(0, str(REPO))

from nnunet_recur.exit_status import BAD_INPUT  # noqa: E402

# DICOM attributes a writer sets afresh each time it runs.
EXPECTED_DICOM = frozenset(
    {
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
        "SeriesInstanceUID",
        "DimensionOrganizationUID",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "ContentDate",
        "ContentTime",
        "StructureSetDate",
        "StructureSetTime",
        "SeriesDate",
        "SeriesTime",
        "ContributionDateTime",
    }
)
# nnU-Net checkpoint entries that hold wall-clock times.
EXPECTED_CHECKPOINT = frozenset({"epoch_start_timestamps", "epoch_end_timestamps"})


def _dicom_elements(dataset, prefix: str = "") -> dict[str, object]:
    """keyword path -> value for every element, sequences flattened as ``Seq[0].Keyword``."""
    out: dict[str, object] = {}
    for element in dataset:
        key = f"{prefix}{element.keyword or element.tag}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                out.update(_dicom_elements(item, f"{key}[{index}]."))
        else:
            out[key] = element.value
    return out


def dicom_differences(left: Path, right: Path) -> list[str]:
    """The keyword paths whose values differ (file meta included)."""
    import pydicom

    a, b = pydicom.dcmread(left), pydicom.dcmread(right)
    ea = _dicom_elements(a.file_meta) | _dicom_elements(a)
    eb = _dicom_elements(b.file_meta) | _dicom_elements(b)
    return sorted(key for key in ea.keys() | eb.keys() if ea.get(key, KeyError) != eb.get(key, KeyError))


def _walk(a, b, path: str, out: list[str]) -> None:
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if key not in a or key not in b:
                out.append(f"{path}/{key}")
            else:
                _walk(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{index}]", out)
    elif torch.is_tensor(a) or torch.is_tensor(b):
        same = torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
        if not (same and torch.equal(a, b)):
            out.append(path)
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        out.append(path)


def checkpoint_differences(left: Path, right: Path) -> list[str]:
    """The entry paths (``/logging/epoch_end_timestamps[0]``) whose values differ."""
    import torch

    out: list[str] = []
    _walk(
        torch.load(left, map_location="cpu", weights_only=False),
        torch.load(right, map_location="cpu", weights_only=False),
        "",
        out,
    )
    return out


def _sibling_checkpoint(left_png: Path, right_png: Path) -> tuple[Path, Path] | None:
    """The checkpoint pair whose logging a progress.png pair plots, if both sides have it."""
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        pair = (left_png.with_name(name), right_png.with_name(name))
        if pair[0].is_file() and pair[1].is_file():
            return pair
    return None


def _last_name(path: str) -> str:
    """`Seq[0].Keyword` -> Keyword; `/logging/epoch_end_timestamps[1]` -> epoch_end_timestamps."""
    return path.rsplit(".", 1)[-1].rsplit("/", 1)[-1].split("[", 1)[0]


def explain(report: dict) -> dict:
    """Per differing file: its kind, what differs, and whether that is all expected."""
    left, right = Path(report["left"]), Path(report["right"])
    files = {}
    for rel in report["differing"] + report.get("differing_noise", []):
        if rel.endswith(".dcm"):
            diffs, expected = dicom_differences(left / rel, right / rel), EXPECTED_DICOM
        elif rel.endswith(".pth"):
            diffs, expected = checkpoint_differences(left / rel, right / rel), EXPECTED_CHECKPOINT
        elif rel.endswith("progress.png") and (checkpoint := _sibling_checkpoint(left / rel, right / rel)):
            diffs, expected = checkpoint_differences(*checkpoint), EXPECTED_CHECKPOINT
        else:
            files[rel] = {"kind": "not opened", "explained": False}
            continue
        unexpected = [d for d in diffs if _last_name(d) not in expected]
        files[rel] = {
            "kind": {".dcm": "dicom", ".pth": "checkpoint", ".png": "plot"}[Path(rel).suffix],
            "differing": sorted({_last_name(d) for d in diffs}),
            "unexpected": unexpected,
            "explained": not unexpected,
        }
    return files


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: explain_differences.py REPORT.json", file=sys.stderr)
        return BAD_INPUT
    try:
        report = json.loads(Path(argv[0]).read_text())
        report["left"], report["right"], report["differing"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {argv[0]}: not a compare_outputs report ({exc})", file=sys.stderr)
        return BAD_INPUT
    files = explain(report)
    for rel, info in files.items():
        what = ", ".join(info.get("differing", [])) or "-"
        verdict = "explained" if info["explained"] else "UNEXPLAINED"
        print(f"{verdict:11} {info['kind']:10} {rel}: {what}")
        for path in info.get("unexpected", [])[:10]:
            print(f"            unexpected: {path}")
    return 0 if all(info["explained"] for info in files.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
