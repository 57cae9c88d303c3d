"""Is the default demo's finding luck of one cohort? Run `recur demo` with its default cohort and 3 others.

Issue 14's target, checked on each run's ``report/table1.csv`` (the demo's Table 1):

* at least 8 test patients;
* AI random captures at least as many points of origin (POs) as the GTV contour;
* AI random's median predicted volume <= 0.7 x the GTV contour's;
* AI random's median Dice >= the GTV contour's - 0.05;
* AI finetune trained past epoch 0 (its kept epoch, ``recur_best.json``, is not epoch 0).

The target must hold for the default cohort and in at least 2 of the 3 other seeds. Every run gets its own
folder (a rerun resumes it: `recur demo` skips finished stages). Results: ``OUT/robustness.md`` (the 4
tables and verdicts, to paste into docs/benchmarks_demo.md) and ``OUT/robustness.json``.

    python bench/demo_robustness.py --out /tmp/robust            # default demo + seeds 1, 2, 3
    python bench/demo_robustness.py --out /tmp/robust --seeds 7 8 9 -- --device cuda

Arguments after ``--`` go to every `recur demo` call unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

MIN_TEST_PATIENTS = 8
MAX_VOLUME_RATIO = 0.7
DICE_MARGIN = 0.05


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def read_table1(path: Path) -> dict[str, dict]:
    """``report/table1.csv`` as {method: row}, numbers as floats."""
    with Path(path).open(newline="") as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def _row(table: dict[str, dict], prefix: str) -> dict | None:
    return next((row for name, row in table.items() if name.startswith(prefix)), None)


def finetune_kept_epoch(out: Path) -> int | None:
    """The kept epoch of the AI finetune run(s) (the highest, over seeds), from ``recur_best.json``."""
    epochs = []
    for path in Path(out).glob("**/recur_best.json"):
        if "finetune" in str(path).lower():
            try:
                epochs.append(int(json.loads(path.read_text())["best_epoch"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return max(epochs) if epochs else None


def check_target(table: dict[str, dict], finetune_epoch: int | None) -> dict:
    """Each criterion of the target as a bool (None where Table 1 lacks the numbers), and `met`."""
    ai, gtv = _row(table, "AI random"), _row(table, "GTV")
    checks: dict[str, bool | None] = {}
    if ai is None or gtv is None:
        return {"checks": {"rows_present": False}, "met": False}
    n = _float(ai.get("n_cases"))
    checks["test_patients>=8"] = n is not None and n >= MIN_TEST_PATIENTS
    ai_po, gtv_po = _float(ai.get("po_captured")), _float(gtv.get("po_captured"))
    checks["POs>=GTV"] = None if ai_po is None or gtv_po is None else ai_po >= gtv_po
    ai_cc, gtv_cc = _float(ai.get("volume_cc_median")), _float(gtv.get("volume_cc_median"))
    checks["volume<=0.7xGTV"] = None if ai_cc is None or not gtv_cc else ai_cc <= MAX_VOLUME_RATIO * gtv_cc
    ai_d, gtv_d = _float(ai.get("dice_median")), _float(gtv.get("dice_median"))
    checks["dice>=GTV-0.05"] = None if ai_d is None or gtv_d is None else ai_d >= gtv_d - DICE_MARGIN
    checks["finetune_past_epoch0"] = finetune_epoch is not None and finetune_epoch > 0
    return {"checks": checks, "met": all(v is True for v in checks.values())}


def table_markdown(table: dict[str, dict]) -> str:
    lines = ["| method | n | median Dice | median volume cc | POs captured |", "|---|---:|---:|---:|---:|"]
    for name, row in table.items():
        d, cc = _float(row.get("dice_median")), _float(row.get("volume_cc_median"))
        po = f"{row.get('po_captured', '')}/{row.get('po_total', '')}"
        lines.append(
            f"| {name} | {row.get('n_cases', '')} | {'' if d is None else f'{d:.2f}'} | "
            f"{'' if cc is None else f'{cc:.1f}'} | {po} |"
        )
    return "\n".join(lines)


def overall_verdict(results: dict[str, dict]) -> tuple[bool, str]:
    """(robust, one line): the default cohort must meet the target and >= 2 of the other seeds. A run without
    the default cohort (``--skip-default``) is never called robust: the default is judged from its own run."""
    others = [r for n, r in results.items() if n != "default"]
    held = sum(1 for r in others if r.get("met"))
    if "default" in results:
        default_ok = bool(results["default"].get("met"))
        default_text = "met" if default_ok else "NOT met"
    else:
        default_ok, default_text = False, "not run here (--skip-default)"
    robust = default_ok and held >= min(2, len(others))
    return robust, (
        f"Default cohort: {default_text}; other seeds: {held}/{len(others)} met "
        f"-> {'ROBUST' if robust else 'NOT robust'} (needs default + >= 2 of 3).\n"
    )


def run_demo(out: Path, seed: int | None, extra: list[str]) -> float:
    recur = shutil.which("recur") or str(Path(sys.executable).parent / "recur")
    command = [recur, "demo", "--out", str(out), *([] if seed is None else ["--seed", str(seed)]), *extra]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="one sub-folder per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the other cohort seeds")
    ap.add_argument("--skip-default", action="store_true", help="only the other seeds")
    ap.add_argument("--report-only", action="store_true", help="read finished runs, run nothing")
    args, extra = ap.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]

    runs: list[tuple[str, int | None]] = [] if args.skip_default else [("default", None)]
    runs += [(f"seed_{s}", s) for s in args.seeds]
    results, md = {}, ["# recur demo robustness (bench/demo_robustness.py)", ""]
    for name, seed in runs:
        out = args.out / name
        wall = None
        if not args.report_only:
            try:
                wall = run_demo(out, seed, extra)
            except subprocess.CalledProcessError as error:
                print(f"{name}: recur demo failed (exit {error.returncode})", file=sys.stderr)
        table_path = out / "report" / "table1.csv"
        if not table_path.is_file():
            results[name] = {"seed": seed, "error": f"{table_path} missing", "met": False}
            md += [f"## {name}: no Table 1 ({table_path} missing)", ""]
            continue
        table = read_table1(table_path)
        verdict = check_target(table, finetune_kept_epoch(out))
        results[name] = {"seed": seed, "wall_s": wall, "table1": table, **verdict}
        checks = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in verdict["checks"].items())
        timing = "" if wall is None else f", {wall / 60:.1f} min"
        label = seed if seed is not None else "default"
        heading = f"## {name} (seed {label}{timing}): target {'met' if verdict['met'] else 'NOT met'}"
        md += [heading, "", table_markdown(table), "", checks, ""]

    robust, verdict_line = overall_verdict(results)
    md.insert(2, verdict_line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.md").write_text("\n".join(md) + "\n")
    (args.out / "robustness.json").write_text(json.dumps({"robust": robust, "runs": results}, indent=2))
    print("\n".join(md))
    return 0 if robust else 1


if __name__ == "__main__":
    raise SystemExit(main())
