"""Learning check: does "AI random" beat the GTV-contour baseline on test Dice at a smaller volume?

The paper's conclusion for real data is that the CNN predicts the relapse better than the GTV contour
while predicting a smaller volume.  The synthetic relapse rule makes that learnable (the point of
origin sits mostly in the PET-avid core of the GTV), so on a large enough synthetic cohort with enough
epochs a "no" points at a bug somewhere in synth -> convert -> plan -> train -> predict -> evaluate.

This runs `recur demo` with a larger cohort and more epochs (resumable: rerun to continue), then reads
`report/per_case.csv` and prints/writes the comparison.  It is a benchmark, not a CI test: on 2 CPU
cores 40 patients x 10 epochs take ~20-30 minutes, the full recipe (`--epochs 0`) hours.

Usage:
    .venv/bin/python bench/learning_check.py --out bench_out/learning --cases 40 --epochs 50
    .venv/bin/python bench/learning_check.py --report-only --out bench_out/learning   # re-read a run
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECUR = str(Path(sys.executable).parent / "recur")


def summarise(per_case_csv: Path) -> dict[str, dict[str, float]]:
    """Median Dice, median predicted volume (cc) and PO capture per method."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    with per_case_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_method[row["method"]].append(row)
    out = {}
    for method, rows in by_method.items():
        dice = [float(r["dice"]) for r in rows]
        cc = [float(r["pred_cc"]) for r in rows]
        out[method] = {
            "n": len(rows),
            "median_dice": statistics.median(dice),
            "mean_dice": statistics.fmean(dice),
            "median_pred_cc": statistics.median(cc),
            "median_gt_cc": statistics.median(float(r["gt_cc"]) for r in rows),
            "po_captured": sum(int(float(r["po_captured"])) for r in rows),
            "po_count": sum(int(float(r["po_count"])) for r in rows),
        }
    return out


def verdict(summary: dict[str, dict[str, float]], method: str = "AI random", baseline: str = "GTV") -> str:
    a, b = summary[method], summary[baseline]
    better = a["median_dice"] > b["median_dice"]
    smaller = a["median_pred_cc"] < b["median_pred_cc"]
    if better and smaller:
        return f"YES: {method} beats {baseline} on median test Dice at a smaller median predicted volume"
    return (
        f"NO: {method} median Dice {a['median_dice']:.3f} vs {baseline} {b['median_dice']:.3f}, "
        f"volume {a['median_pred_cc']:.1f} cc vs {b['median_pred_cc']:.1f} cc"
    )


def markdown(summary: dict, args: argparse.Namespace, seconds: float | None) -> str:
    lines = [
        "# Learning check (bench/learning_check.py)",
        "",
        f"Date {date.today()}, machine: {platform.processor() or platform.machine()}, device {args.device}; "
        f"`recur demo --inhouse-cases {args.cases} --hecktor-cases {args.hecktor_cases} "
        f"--epochs {args.epochs} --seeds {args.seeds} --size {args.size} "
        f"--pretrain-epochs {args.pretrain_epochs}`"
        + (f"; wall time {seconds / 60:.1f} min" if seconds else "")
        + ".",
        "",
        "| method | n test | median Dice | mean Dice | median predicted cc | POs captured |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['n']} | {s['median_dice']:.3f} | {s['mean_dice']:.3f} | "
            f"{s['median_pred_cc']:.1f} | {s['po_captured']}/{s['po_count']} |"
        )
    gt = next(iter(summary.values()))["median_gt_cc"]
    lines += ["", f"Ground-truth median relapse volume: {gt:.1f} cc.", "", "Verdict: " + verdict(summary), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "learning")
    parser.add_argument("--cases", type=int, default=40, help="in-house synthetic patients")
    parser.add_argument("--hecktor-cases", type=int, default=10)
    parser.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="nnUNetTrainerRecur_<N>epochs must exist (2, 5, 10, 20, 50, 100; 0 = full recipe)",
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--size", default="small", help="synthetic image size (runs 1-3: small)")
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="HECKTOR epochs (runs 2-3: 20)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report-only", action="store_true", help="only summarise an existing run")
    parser.add_argument(
        "--doc", type=Path, default=None, help="where to write the table (default: OUT/learning_check.md)"
    )
    args = parser.parse_args()

    seconds = None
    if not args.report_only:
        cmd = [RECUR, "demo", "--out", str(args.out), "--inhouse-cases", str(args.cases),
               "--hecktor-cases", str(args.hecktor_cases), "--epochs", str(args.epochs),
               "--seeds", str(args.seeds), "--device", args.device, "--size", args.size,
               "--pretrain-epochs", str(args.pretrain_epochs)]  # fmt: skip
        print("$", " ".join(cmd), flush=True)
        start = time.monotonic()
        rc = subprocess.call(cmd)
        seconds = time.monotonic() - start
        if rc != 0:
            print(f"demo failed (exit {rc}); see {args.out}/logs", file=sys.stderr)
            return rc
    summary = summarise(args.out / "report" / "per_case.csv")
    text = markdown(summary, args, seconds)
    print(text)
    doc = args.doc or args.out / "learning_check.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(f"written {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
