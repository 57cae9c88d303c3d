"""Wall and CPU time of `recur plan 502 --pretrain-from 501`, one process: in-process against nnU-Net's pools.

The cohort is made as the demo makes it (`recur synth` HECKTOR-like + in-house DICOM, `recur convert`), only
smaller and without defects; with few cases the patch is small, so HECKTOR's cases are allowed to exceed it
(as `--allow-patch-smaller-than-case`). Then, alternating, in fresh interpreters on the same raw data, each
into its own nnUNet_preprocessed:

* pool (the baseline, the code before issue 14): nnU-Net's own pools - one spawned worker for each of the
  integrity check, fingerprint and preprocessing per dataset, and 12 forks per dataset listing
  (``planning._plan_with_pretraining``, the body of the public function without the override);
* in-process: ``planning.plan_with_pretraining``, what `recur plan --processes 1` runs (the demo sets
  nnUNet_def_n_proc=1).

CPU time is user + system of the interpreter and all its (waited-for) children. Both runs must write the
same files (checked: same bytes, for .b2nd the same decoded arrays). Prints a Markdown table and the ratios.

Usage: nice .venv/bin/python bench/plan_speed.py [--inhouse 8] [--hecktor 6] [--size demo] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from preprocessed_outputs import preprocessed_outputs  # noqa: E402 - the planning test's comparison

BIN = Path(sys.executable).parent
INHOUSE_ID, HECKTOR_ID = 502, 501
DRIVER = """
import sys
from nnunet_recur.trainers import planning
if sys.argv[1] == "pool":
    planning._plan_with_pretraining({target}, {source}, 1, True, True, "patient")  # force, allow larger cases
else:
    planning.plan_with_pretraining({target}, {source}, 1, True, True, "patient")  # force, allow larger cases
"""


def run(command: list[str], env: dict) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def make_cohort(root: Path, env: dict, inhouse: int, hecktor: int, size: str) -> None:
    recur = str(BIN / "recur")
    run([recur, "synth", str(root / "synth_hecktor"), "--cases", str(hecktor), "--seed", "0",
         "--format", "hecktor", "--size", size], env)  # fmt: skip
    run([recur, "synth", str(root / "synth_inhouse"), "--cases", str(inhouse), "--seed", "1",
         "--format", "inhouse-dicom", "--size", size], env)  # fmt: skip
    crop = ["--crop", "none"] if size == "small" else []  # as the demo
    run([recur, "convert", "hecktor", str(root / "synth_hecktor"), "--dataset-id", str(HECKTOR_ID),
         "--name", "HecktorBench", *crop, "--report-dir", str(root / "reports" / "hk")], env)  # fmt: skip
    run([recur, "convert", "inhouse", str(root / "synth_inhouse" / "patients"), "--dataset-id",
         str(INHOUSE_ID), "--name", "RelapseBench", "--split", "paper", "--seed", "0",
         "--report-dir", str(root / "reports" / "inhouse")], env)  # fmt: skip


def time_plan(mode: str, env: dict, preprocessed: Path) -> tuple[float, float]:
    """(wall s, CPU s of the interpreter and its children) of one plan in a fresh interpreter."""
    env = {**env, "nnUNet_preprocessed": str(preprocessed)}
    driver = DRIVER.format(target=INHOUSE_ID, source=HECKTOR_ID)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run([sys.executable, "-c", driver, mode], env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inhouse", type=int, default=8)
    parser.add_argument("--hecktor", type=int, default=6)
    parser.add_argument("--size", default="demo", choices=["small", "demo", "paper"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="plan_speed_"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(
        nnUNet_raw=str(root / "raw"),
        nnUNet_results=str(root / "results"),
        nnUNet_def_n_proc="1",
        OMP_NUM_THREADS="1",  # as the demo's CPU environment
    )
    if not (root / "raw").is_dir():
        make_cohort(root, env, args.inhouse, args.hecktor, args.size)
    times: dict[str, list[tuple[float, float]]] = {"pool": [], "in-process": []}
    for repeat in range(args.repeat):
        for mode in ("pool", "in-process"):
            wall, cpu = time_plan(mode, env, root / f"pre_{mode}_{repeat}")
            times[mode].append((wall, cpu))
            print(f"{mode:>10}  run {repeat}: wall {wall:6.1f} s  CPU {cpu:6.1f} s", flush=True)
    reference = preprocessed_outputs(root / "pre_pool_0")
    for repeat in range(args.repeat):
        if preprocessed_outputs(root / f"pre_in-process_{repeat}") != reference:
            raise SystemExit(f"in-process run {repeat} wrote different files from the pool run")
    wall = {mode: statistics.median(w for w, _ in values) for mode, values in times.items()}
    cpu = {mode: statistics.median(c for _, c in values) for mode, values in times.items()}
    print(f"\ncohort: {args.inhouse} in-house + {args.hecktor} HECKTOR cases, size {args.size}, {root}")
    print(f"identical outputs: yes ({len(reference)} files)")
    print("| path | wall s | CPU s |\n|---|---|---|")
    for mode in times:
        print(f"| {mode} | {wall[mode]:.1f} | {cpu[mode]:.1f} |")
    print(
        f"ratio in-process / pool: wall {wall['in-process'] / wall['pool']:.2f}, "
        f"CPU {cpu['in-process'] / cpu['pool']:.2f}"
    )


if __name__ == "__main__":
    main()
