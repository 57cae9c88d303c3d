"""Where a CPU training iteration's time goes: threads, OpenMP waiting and the glibc allocator.

Each setting runs in its own fresh process (thread counts and allocator variables are read at start-up),
doing what ``nnUNetv2_train`` does per iteration: RecurUNet forward, sigmoid soft-Dice loss, backward,
Adam step, on a batch of random data the size of the demo's patch. Per iteration it reports wall seconds,
user and system CPU seconds (``getrusage``), and minor page faults. Settings are run round-robin
(``--rounds``) so that load from other processes hits all of them alike; judge by the ratio to the
``default`` setting measured in the same run.

    python bench/cpu_threads.py                       # 32 x 48 x 48, batch 2 (the demo's former patch)
    python bench/cpu_threads.py --patch 24 32 32 --iterations 20
    python bench/cpu_threads.py --json out.json       # also write the table as JSON

Results are in docs/benchmarks_demo.md ("Where the CPU time goes").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnunet_recur.workflow.cpu_env import cpu_training_env  # noqa: E402

# name -> environment overrides (on top of a copy of os.environ without these keys)
_CLEARED = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
)


def settings(cores: int) -> dict[str, dict[str, str]]:
    big = str(4 * 1024**3)
    return {
        "default": {},
        "1 thread": {"OMP_NUM_THREADS": "1"},
        "passive OpenMP wait": {"OMP_WAIT_POLICY": "PASSIVE"},
        "passive wait + malloc": {
            "OMP_WAIT_POLICY": "PASSIVE",
            "MALLOC_MMAP_THRESHOLD_": big,
            "MALLOC_TRIM_THRESHOLD_": big,
        },
        "malloc: no mmap/trim": {"MALLOC_MMAP_THRESHOLD_": big, "MALLOC_TRIM_THRESHOLD_": big},
        "malloc: no mmap/trim, 1 thread": {
            "OMP_NUM_THREADS": "1",
            "MALLOC_MMAP_THRESHOLD_": big,
            "MALLOC_TRIM_THRESHOLD_": big,
        },
        "recommended (cpu_env)": cpu_training_env(cores),
    }


def child(patch: list[int], batch: int, iterations: int, warmup: int) -> dict:
    """One process: time `iterations` training steps after `warmup` ones."""
    import resource  # noqa: PLC0415
    import time  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss  # noqa: PLC0415
    from nnunet_recur.trainers.network import RecurUNet  # noqa: PLC0415

    torch.manual_seed(0)
    net = RecurUNet(input_channels=2, num_classes=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    loss_fn = SigmoidSoftDiceLoss()
    x = torch.randn(batch, 2, *patch)
    y = (torch.rand(batch, 1, *patch) > 0.9).float()

    def step():
        # fresh tensors every iteration, as the data loader hands over new arrays
        xi, yi = x.clone(), y.clone()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xi), yi)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": wall / iterations,
        "user_s": (r1.ru_utime - r0.ru_utime) / iterations,
        "sys_s": (r1.ru_stime - r0.ru_stime) / iterations,
        "minor_faults": (r1.ru_minflt - r0.ru_minflt) / iterations,
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "max_rss_mb": r1.ru_maxrss / 1024,
    }


def run_setting(env_over: dict[str, str], args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(env_over)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, __file__, "--child", "--patch", *map(str, args.patch), "--batch", str(args.batch)]
    cmd += ["--iterations", str(args.iterations), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 48, 48], metavar=("Z", "Y", "X"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="round-robin repetitions of all settings")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--only", nargs="*", help="names of the settings to run (default: all)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.patch, args.batch, args.iterations, args.warmup)))
        return 0

    cases = settings(args.cores)
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only}
    runs: dict[str, list[dict]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, env_over in cases.items():
            runs[name].append(run_setting(env_over, args))
            print(f"  {name}: {runs[name][-1]}", file=sys.stderr, flush=True)

    base = statistics.median(r["wall_s"] for r in runs["default"]) if "default" in runs else None
    rows = []
    print(f"\npatch {args.patch}, batch {args.batch}, {args.iterations} iterations x {args.rounds} rounds, "
          f"{args.cores} cores")  # fmt: skip
    print("| setting | env | s/iteration | vs default | user s | sys s | sys share | minor faults/it |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        user = statistics.median(r["user_s"] for r in rs)
        sys_s = statistics.median(r["sys_s"] for r in rs)
        faults = statistics.median(r["minor_faults"] for r in rs)
        ratio = wall / base if base else float("nan")
        env_txt = " ".join(f"{k}={v}" for k, v in cases[name].items()) or "(none)"
        share = sys_s / (user + sys_s) if user + sys_s else 0.0
        print(f"| {name} | `{env_txt}` | {wall:.2f} | {ratio:.2f} | {user:.2f} | {sys_s:.2f} | {share:.0%} "
              f"| {faults:,.0f} |")  # fmt: skip
        rows.append({"setting": name, "env": cases[name], "wall_s": wall, "vs_default": ratio,
                     "user_s": user, "sys_s": sys_s, "minor_faults": faults, "runs": rs})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"patch": args.patch, "batch": args.batch, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
