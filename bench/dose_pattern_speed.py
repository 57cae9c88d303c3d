"""Speed of `recur-eval dose-pattern` against the floor of reading its dose and label files (issue 20 §3).

Generates N synthetic paper-size patients (128 x 224 x 160 voxels, spacing 1 x 1 x 2 mm): a relapse
label (one or two components, as `bench/eval_speed.py` draws them) and a float32 dose in Gy (68 Gy
plateau around the tumour with a sigmoid fall-off to a low-dose bath, NaN outside a dose grid that
stops short of the volume's top and bottom slices), plus a GTV target mask and a CNN-like mask.

Prints, from one run on the same files (best of --repeats, interleaved, one worker):
  1. the floor: the guarded reads of every label and dose (`read_volume`, NaN kept for the dose), i.e.
     what the command cannot avoid;
  2. the whole command without targets or methods (cases read, analysed, report, JSON and figure
     written): target <= 1.5x the floor;
  3. the command with --targets and one --pred, against the floor of reading those files too.

Usage: .venv/bin/python bench/dose_pattern_speed.py [--cases 40] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from eval_speed import SHAPE, SPACING, bench_cases, ellipsoid, write  # noqa: E402

from nnunet_recur.evaluation.volumes import read_volume  # noqa: E402

TARGET_RATIO = 1.5


def make_case(root: Path, case: str, rng: np.random.Generator) -> None:
    gtv_centre = np.array([60, 120, 70]) + rng.integers(-6, 7, 3)
    gtv = ellipsoid(gtv_centre, (9, 14, 12))
    relapse = ellipsoid(gtv_centre + np.array([4, 8, 6]), (6, 9, 8))
    if rng.random() < 0.5:  # a second, nodal relapse
        relapse |= ellipsoid(gtv_centre + np.array([-10, -30, 25]), (3, 5, 5))
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    sx, sy, sz = SPACING
    r_mm = np.sqrt(
        ((z - gtv_centre[0]) * sz) ** 2 + ((y - gtv_centre[1]) * sy) ** 2 + ((x - gtv_centre[2]) * sx) ** 2
    )
    dose = (8.0 + 62.0 / (1.0 + np.exp((r_mm - 28.0) / 3.5))).astype(np.float32)
    dose[:6] = np.nan  # the dose grid does not reach the volume's first and last slices
    dose[-6:] = np.nan
    cnn = ellipsoid(gtv_centre + np.array([3, 6, 4]), (8, 12, 11))
    write(relapse.astype(np.uint8), root / "labels" / f"{case}.nii.gz")
    write(dose, root / "dose" / f"{case}.nii.gz")
    (root / "dose" / f"{case}.json").write_text(
        json.dumps({"prescriptions_gy": [68.0, 60.0, 50.0], "prescription_source": "RTPLAN"})
    )
    write(gtv.astype(np.uint8), root / "masks" / f"{case}_gtv.nii.gz")
    write(cnn.astype(np.uint8), root / "cnn" / f"{case}.nii.gz")


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def floor(label_files: list[Path], dose_files: list[Path], other: list[Path] = ()) -> None:
    for path in label_files + list(other):
        read_volume(path)
    for path in dose_files:
        read_volume(path, allow_nan=True)


def run_command(args: list[str]) -> None:
    from typer.testing import CliRunner

    from nnunet_recur.evaluation.cli import app

    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(f"dose-pattern failed ({result.exit_code}): {result.output}")


def main() -> None:
    # the argument handling and case loop follow bench/eval_speed.py on purpose: the benches read alike
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="generate into / reuse this folder")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="dose_pattern_speed_"))
    cases = bench_cases(root, args.cases, 2026, "cnn", make_case)
    print(f"{len(cases)} synthetic patients of {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} voxels in {root}")
    labels = [root / "labels" / f"{c}.nii.gz" for c in cases]
    doses = [root / "dose" / f"{c}.nii.gz" for c in cases]
    extra = [root / d / f"{c}{s}.nii.gz" for c in cases for d, s in (("masks", "_gtv"), ("cnn", ""))]
    base = ["dose-pattern", "--gt", str(root / "labels"), "--dose", str(root / "dose")]

    run_command(base + ["--out", str(root / "out_plain")])  # imports and the first figure out of the timing
    full = base + [
        "--targets",
        str(root / "masks"),
        "--pred",
        f"CNN={root / 'cnn'}",
        "--out",
        str(root / "out"),
    ]
    jobs = {
        "floor": lambda: floor(labels, doses),
        "plain": lambda: run_command(base + ["--out", str(root / "out_plain")]),
        "floor_all": lambda: floor(labels, doses, extra),
        "full": lambda: run_command(full),
    }
    # interleaved repeats, best of each: load from other users of the machine hits every job alike
    best = {name: timed(job) for name, job in jobs.items()}
    for _ in range(args.repeats - 1):
        for name, job in jobs.items():
            best[name] = min(best[name], timed(job))
    t_floor, t_plain, t_floor_all, t_full = (best[k] for k in ("floor", "plain", "floor_all", "full"))
    n = len(cases)
    ratio = t_plain / t_floor
    print("\n| configuration | floor s / patient | dose-pattern s / patient | ratio |")
    print("|---|---|---|---|")
    print(f"| label + dose | {t_floor / n:.3f} | {t_plain / n:.3f} | **{ratio:.2f}x** |")
    ratio_all = t_full / t_floor_all
    print(f"| + GTV target + 1 method | {t_floor_all / n:.3f} | {t_full / n:.3f} | {ratio_all:.2f}x |")
    print(f"\ntarget <= {TARGET_RATIO}x on label + dose: {'met' if ratio <= TARGET_RATIO else 'MISSED'}")


if __name__ == "__main__":
    main()
