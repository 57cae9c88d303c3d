"""What a site may share of a `recur-eval compare` report: per-case numbers, no image, no identifier.

A site summary is built from the compare report's summary.json. It keeps, per case and method, the
numbers Table 1 and the paired tests are computed from (Dice, recall, precision, volumes, PO counts and
per-PO capture flags, HD95) and nothing else: no image, no file name, no folder, no case id (replaced
by a salted hash whose salt stays at the site), no provenance, no command line. `MANIFEST_FIELDS` is
the exact list of fields that leave the site; `manifest.json` writes it beside the summary, and a test
checks the summary holds nothing outside it. Cases are listed in hash order, so the order of the
site's case ids does not leak either. Dose classes are not part of this compare report's format, so
they are not shared.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.evaluation.volumes import EvaluationError

FORMAT = "nnunet-recur site summary 1"
SUMMARY_FILE = "site_summary.json"
MANIFEST_FILE = "manifest.json"
HASH_RULE = "sha256(salt + ':' + case id), first 16 hex digits; the salt never leaves the site"

#: Every field that leaves the site (dotted paths; `[]` marks a list of records).
MANIFEST_FIELDS = {
    "format": "the format tag of this file",
    "site": "the site's name, as given to site-summary",
    "methods": "method names, in the order of Table 1",
    "best": "the method compared to the others",
    "quartiles": "the quartile definition compare used (recorded for the pooled Table 1)",
    "case_id_hash": "how case ids were replaced (the rule, not the salt)",
    "cases": "one record per case, in hash order",
    "cases[].case": "salted hash of the case id",
    "cases[].gt_cc": "reference relapse volume in cc",
    "cases[].po_count": "number of points of origin (relapse components)",
    "cases[].scores": "one record per method that scored the case",
    "cases[].scores[].method": "method name",
    "cases[].scores[].dice": "Dice coefficient",
    "cases[].scores[].recall": "recall (sensitivity)",
    "cases[].scores[].precision": "precision",
    "cases[].scores[].pred_cc": "predicted volume in cc",
    "cases[].scores[].po_captured": "POs captured (voxel criterion)",
    "cases[].scores[].po_captured_published": "POs captured (published code's criterion)",
    "cases[].scores[].hd95_mm": "95 % Hausdorff distance in mm (null when not computed)",
    "cases[].scores[].po_flags": "per PO, in component order: captured (true/false)",
    "cases[].scores[].po_flags_published": "per PO: captured by the published criterion",
}
NEVER_SHARED = [
    "images, masks, predictions (no voxel data of any kind)",
    "case ids, file names, folder paths, the command line, input hashes (provenance)",
    "PO coordinates (points_of_origin.csv) and PO distances",
    "the salt of the case-id hashes",
]


def case_hash(case: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{case}".encode()).hexdigest()[:16]


def new_salt() -> str:
    return secrets.token_hex(16)


def _number(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"{where}: expected a number, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _read_compare_summary(folder: Path) -> dict:
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise EvaluationError(f"{folder}: no summary.json (expected a `recur-eval compare` report folder)")
    status = Path(folder) / "compare.status.json"
    if status.is_file():
        try:
            state = json.loads(status.read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"{status}: unreadable ({exc})") from exc
        if state != "complete":
            raise EvaluationError(f"{status}: the last compare run is {state!r}, not complete")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: unreadable or truncated JSON ({exc})") from exc
    for key in ("per_case", "po_capture", "methods", "best", "cases"):
        if key not in summary:
            raise EvaluationError(f"{path}: no {key!r} field; not a compare summary")
    return summary


def build_site_summary(compare_out: Path, site: str, salt: str) -> dict:
    """The shareable summary of one compare report (see the module docstring for what is kept)."""
    if not site.strip():
        raise EvaluationError("--site: the site name must not be empty")
    summary = _read_compare_summary(compare_out)
    where = str(Path(compare_out) / "summary.json")
    methods = [m["name"] for m in summary["methods"]]
    flags: dict[tuple[str, str], list[tuple[int, bool, bool]]] = {}
    for row in summary["po_capture"]:
        key = (row["method"], row["case"])
        flags.setdefault(key, []).append(
            (int(row["po"]), bool(row["captured"]), bool(row["captured_published"]))
        )
    gt_cc: dict[str, float | None] = {}
    scores: dict[str, list[dict]] = {}
    po_count: dict[str, int] = {}
    for row in summary["per_case"]:
        case = row["case"]
        if row["method"] not in methods:
            raise EvaluationError(f"{where}: per_case names unknown method {row['method']!r}")
        gt_cc[case] = _number(row["gt_cc"], where)
        po_count[case] = int(row["po_count"])
        ordered = sorted(flags.get((row["method"], case), []))
        if len(ordered) != int(row["po_count"]):
            raise EvaluationError(
                f"{where}: case {case}, method {row['method']}: PO flags do not match po_count"
            )
        scores.setdefault(case, []).append(
            {
                "method": row["method"],
                "dice": _number(row["dice"], where),
                "recall": _number(row["recall"], where),
                "precision": _number(row["precision"], where),
                "pred_cc": _number(row["pred_cc"], where),
                "po_captured": int(row["po_captured"]),
                "po_captured_published": int(row["po_captured_published"]),
                "hd95_mm": _number(row.get("hd95_mm"), where),
                "po_flags": [f[1] for f in ordered],
                "po_flags_published": [f[2] for f in ordered],
            }
        )
    cases = [
        {
            "case": case_hash(case, salt),
            "gt_cc": gt_cc[case],
            "po_count": po_count[case],
            "scores": scores[case],
        }
        for case in summary["cases"]
        if case in scores
    ]
    if not cases:
        raise EvaluationError(f"{where}: no scored case to summarise")
    hashes = [c["case"] for c in cases]
    if len(set(hashes)) != len(hashes):
        raise EvaluationError(f"{where}: two case ids hash to the same value; choose another salt")
    cases.sort(key=lambda c: c["case"])
    return {
        "format": FORMAT,
        "site": site.strip(),
        "methods": methods,
        "best": summary["best"],
        "quartiles": (summary.get("quartiles") or {}).get("method", "linear"),
        "case_id_hash": HASH_RULE,
        "cases": cases,
    }


def manifest() -> dict:
    return {
        "format": FORMAT,
        "files": {SUMMARY_FILE: MANIFEST_FIELDS, MANIFEST_FILE: "this list"},
        "never_shared": NEVER_SHARED,
        "case_id_hash": HASH_RULE,
    }


def field_paths(value, prefix: str = "") -> set[str]:
    """Every dotted field path of a JSON value (`[]` for list items), as MANIFEST_FIELDS spells them."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= field_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                paths |= field_paths(item, f"{prefix}[]")
    return paths


def write_site_summary(out: Path, summary: dict) -> list[Path]:
    """site_summary.json and manifest.json into `out`; refuses a summary with a field not in the manifest."""
    extra = sorted(field_paths(summary) - set(MANIFEST_FIELDS))
    if extra:  # a programming error, never shipped silently
        raise RuntimeError(f"site summary fields outside the manifest: {', '.join(extra)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SUMMARY_FILE, summary)
    write_json_atomic(out / MANIFEST_FILE, manifest())
    return [out / SUMMARY_FILE, out / MANIFEST_FILE]


def read_site_summary(path: Path) -> dict:
    """A site summary (its file, or the folder holding site_summary.json), checked against the manifest."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    if not path.is_file():
        raise EvaluationError(f"{path}: site summary not found")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: unreadable or truncated JSON ({exc})") from exc
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise EvaluationError(f"{path}: not a site summary (format {FORMAT!r} expected)")
    extra = sorted(field_paths(summary) - set(MANIFEST_FIELDS))
    if extra:
        raise EvaluationError(f"{path}: fields outside the manifest: {', '.join(extra)}")
    if not summary.get("cases"):
        raise EvaluationError(f"{path}: no case")
    for case in summary["cases"]:
        for score in case["scores"]:
            for key in ("dice", "pred_cc", "recall", "precision", "hd95_mm"):
                _number(score[key], str(path))
            if len(score["po_flags"]) != case["po_count"]:
                raise EvaluationError(f"{path}: case {case['case']}: PO flags do not match po_count")
    return summary
