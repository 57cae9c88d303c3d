"""What a site may share of a `recur-eval compare` report: per-case numbers, no image, no identifier.

A site summary is built from the compare report's summary.json. It keeps, per case and method, the
numbers Table 1 and the paired tests are computed from (Dice, recall, precision, volumes, PO counts and
per-PO capture flags, HD95) and nothing else: no image, no file name, no folder, no case id (replaced
by a salted hash whose salt stays at the site), no provenance, no command line. `MANIFEST_FIELDS` is
the exact list of fields that leave the site; `manifest.json` writes it beside the summary, and a test
checks the summary holds nothing outside it. Cases are listed in hash order, so the order of the
site's case ids does not leak either.

Dose classes, where the site has them: per PO the PO-dose class (in-field / elective / out-of-field /
not covered) from a compare run with `--dose`, or all three classifications of `recur-eval
dose-pattern` (PO dose, Dawson volume class, MD Anderson type) from its output folder. The class
leaves the site, the dose in Gy does not: the pooled in-field rates need only the class, and a PO dose
together with the prescription is a detail of one patient's treatment plan that says more than the
question asks.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from pathlib import Path

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.evaluation import dose_pattern
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
    "dose_classes": "the dose classifications carried per PO (empty: the site shared no dose classes)",
    "cases[].dose": "per PO, in component order, its dose classes (null: no usable dose for the case)",
    "cases[].dose.po_class": "PO-dose class: in-field / elective / out-of-field / not covered",
    "cases[].dose.dawson_class": "Dawson volume class: in-field / marginal / out-of-field / not covered",
    "cases[].dose.mdacc_type": "MD Anderson type: A-E / not covered",
}
#: The dose classifications a summary may carry and their labels (those of `dose_pattern`).
DOSE_CLASSES = {
    "po_class": dose_pattern.PO_CLASSES,
    "dawson_class": dose_pattern.DAWSON_CLASSES,
    "mdacc_type": dose_pattern.MDACC_TYPES,
}
NEVER_SHARED = [
    "images, masks, predictions (no voxel data of any kind)",
    "case ids, file names, folder paths, the command line, input hashes (provenance)",
    "PO coordinates (points_of_origin.csv) and PO distances",
    "doses in Gy, prescriptions, DVH figures, target names and distances (only the dose classes leave)",
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


def _read_json_report(folder: Path, name: str, command: str) -> dict:
    path = Path(folder) / name
    if not path.is_file():
        raise EvaluationError(f"{folder}: no {name} (expected a `recur-eval {command}` report folder)")
    status = Path(folder) / f"{command}.status.json"
    if status.is_file():
        try:
            state = json.loads(status.read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"{status}: unreadable ({exc})") from exc
        if state != "complete":
            raise EvaluationError(f"{status}: the last {command} run is {state!r}, not complete")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: unreadable or truncated JSON ({exc})") from exc
    if not isinstance(report, dict):
        raise EvaluationError(f"{path}: expected a JSON object")
    return report


def _read_compare_summary(folder: Path) -> dict:
    summary = _read_json_report(folder, "summary.json", "compare")
    for key in ("per_case", "po_capture", "methods", "best", "cases"):
        if key not in summary:
            raise EvaluationError(f"{Path(folder) / 'summary.json'}: no {key!r} field; not a compare summary")
    return summary


def _checked_class(value, key: str, where: str) -> str:
    if value not in DOSE_CLASSES[key]:
        raise EvaluationError(f"{where}: {key} {value!r} is not one of {', '.join(DOSE_CLASSES[key])}")
    return value


def dose_classes_from_compare(summary: dict, where: str) -> tuple[list[str], dict[str, dict[int, dict]]]:
    """PO-dose classes from a compare run with --dose: (classifications, {case: {po: {key: class}}})."""
    dose = summary.get("dose")
    if not isinstance(dose, dict) or "po_classes" not in dose:
        return [], {}
    found = {
        case: {int(p["po"]): {"po_class": _checked_class(p["po_class"], "po_class", where)} for p in points}
        for case, points in dose["po_classes"].items()
    }
    return ["po_class"], found


def dose_classes_from_dose_pattern(folder: Path) -> tuple[list[str], dict[str, dict[int, dict]]]:
    """All three classifications from a `recur-eval dose-pattern` output folder (dose_pattern.json)."""
    report = _read_json_report(folder, "dose_pattern.json", "dose-pattern")
    where = str(Path(folder) / "dose_pattern.json")
    if not isinstance(report.get("components"), list):
        raise EvaluationError(f"{where}: no 'components' list; not a dose-pattern report")
    found: dict[str, dict[int, dict]] = {}
    for row in report["components"]:
        try:
            classes = {key: _checked_class(row[key], key, where) for key in DOSE_CLASSES}
            found.setdefault(str(row["case"]), {})[int(row["po"])] = classes
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"{where}: a component row lacks case, po or a class ({exc})") from exc
    return list(DOSE_CLASSES), found


def build_site_summary(compare_out: Path, site: str, salt: str, dose_pattern_out: Path | None = None) -> dict:
    """The shareable summary of one compare report (see the module docstring for what is kept).

    Dose classes come from `dose_pattern_out` when given, else from the compare report's `--dose`
    column when it has one, else there are none (`dose_classes` empty, every `dose` null)."""
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
    if dose_pattern_out is not None:
        dose_keys, dose_found = dose_classes_from_dose_pattern(dose_pattern_out)
        dose_where = str(Path(dose_pattern_out) / "dose_pattern.json")
    else:
        dose_keys, dose_found = dose_classes_from_compare(summary, where)
        dose_where = where

    def dose_of(case: str) -> dict | None:
        per_po = dose_found.get(case)
        if not per_po:  # no usable dose for this case (left out or failed there)
            return None
        if sorted(per_po) != list(range(1, po_count[case] + 1)):
            raise EvaluationError(
                f"{dose_where}: case {case} has POs {sorted(per_po)} there, but {po_count[case]} in compare; "
                "run both on the same labels"
            )
        return {key: [per_po[po][key] for po in sorted(per_po)] for key in dose_keys}

    cases = [
        {
            "case": case_hash(case, salt),
            "gt_cc": gt_cc[case],
            "po_count": po_count[case],
            "scores": scores[case],
            "dose": dose_of(case) if dose_keys else None,
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
        "dose_classes": dose_keys,
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
        _check_dose(summary, case, path)
    return summary


def _check_dose(summary: dict, case: dict, path: Path) -> None:
    """A case's dose classes: only the summary's classifications, one known label per PO."""
    keys = summary.get("dose_classes") or []
    dose = case.get("dose")
    if dose is None:
        return
    if not isinstance(dose, dict) or sorted(dose) != sorted(keys):
        raise EvaluationError(f"{path}: case {case['case']}: dose classes other than {keys}")
    for key in keys:
        if key not in DOSE_CLASSES or not isinstance(dose[key], list):
            raise EvaluationError(f"{path}: case {case['case']}: unknown dose classification {key!r}")
        if unknown := [c for c in dose[key] if c not in DOSE_CLASSES[key]]:
            raise EvaluationError(f"{path}: case {case['case']}: unknown {key} {unknown}")
        if len(dose[key]) != case["po_count"]:
            raise EvaluationError(f"{path}: case {case['case']}: {key} does not match po_count")
