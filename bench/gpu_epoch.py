"""One prepared GPU check (< 5 min on an H100-class GPU): the paper's epoch in fp32 and bf16, peak memory, and
the stock ``nnUNetv2_train -tr nnUNetTrainerRecur_2epochs`` with torch.compile on.

1. **Paper epoch, pure torch.** RecurUNet + soft Dice + Adam (lr 0.1): 23 training steps of batch 2 plus 7
   whole-volume validation forwards (batch 1, under ``torch.inference_mode`` as nnU-Net's predictor runs them)
   at 128 x 224 x 160 (z, y, x), two channels; random tensors already on the device, so this times the
   network, not the data loader (bench/data_pipeline.py does that). Once in fp32 (PyTorch's default: TF32
   tensor cores for convolutions, printed) and once under bf16 autocast (the mixed-precision variant). Peak
   memory = ``torch.cuda.max_memory_allocated`` over that run. Anchor: the paper's 4.26 min per epoch on two
   RTX 3090; target <= 5 s per epoch on one H100-class GPU.
2. **Stock nnU-Net with compile.** A synthetic cohort made here (``recur synth --size paper`` in parallel
   processes, ``recur convert inhouse --crop fixed`` = the paper's 160 x 224 x 128 voxel crop, ``recur
   plan``), then ``nnUNet_compile=1 nnUNetv2_train DATASET 3d_recur 0 -p nnUNetRecurPlans -tr
   nnUNetTrainerRecur_2epochs``: compiled training interleaved with whole-volume validation under
   inference_mode, pinned-memory loaders, checkpoints, nnU-Net's final validation. Paper-size cases, but only
   ``--cases`` (default 5: 3 train / 1 val / 1 test) so that it fits the 5 minutes; epoch seconds are read
   from the training log. The stage gets what is left of ``--budget-s`` and reports a timeout rather than
   overrun it.

Writes ``gpu_epoch.json`` and ``gpu_epoch.md`` (the printed table) to ``--out`` (default ``$OUT`` or
``bench_out``). ``--smoke`` runs stage 1 on the CPU at 8 x 16 x 16 (1 step + 1 validation) and prints stage
2's commands without running them, so a fast test keeps the script from rotting.

Example (device machine): python bench/gpu_epoch.py --out $OUT
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss  # noqa: E402
from nnunet_recur.trainers.network import RecurUNet  # noqa: E402

PAPER_SIZE = (128, 224, 160)
SMOKE_SIZE = (8, 16, 16)
PAPER_EPOCH_S = 4.26 * 60  # two RTX 3090
TARGET_EPOCH_S = 5.0
DATASET_ID = 990
TRAINER = "nnUNetTrainerRecur_2epochs"
BIN = Path(sys.executable).parent


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, times: int, device: torch.device) -> float:
    """Seconds of `times` calls of `step`, the device synchronised before the clock stops."""
    start = time.perf_counter()
    for _ in range(times):
        step()
    synchronise(device)
    return time.perf_counter() - start


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process max RSS, KiB on Linux


def paper_epoch(args, device: torch.device, precision: str) -> dict:
    """Seconds of one paper epoch (training steps + whole-volume validations) and its peak memory."""
    torch.manual_seed(0)
    network = RecurUNet(input_channels=2, num_classes=1).to(device)
    model = torch.compile(network) if args.compile else network
    optimizer = torch.optim.Adam(network.parameters(), lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = SigmoidSoftDiceLoss()
    data = torch.randn(args.batch, 2, *args.size, device=device)
    target = torch.rand(args.batch, 1, *args.size, device=device) > 0.95
    volume = torch.randn(1, 2, *args.size, device=device)

    def autocast():
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(data), target)
        loss.backward()
        optimizer.step()

    def validation_forward():
        with torch.inference_mode(), autocast():
            model(volume)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    model.train()
    train_step()  # warm-up: cuDNN autotuning (and compilation with --compile)
    model.eval()
    validation_forward()
    synchronise(device)
    warm_up = time.perf_counter() - started

    model.train()
    train_seconds = timed(train_step, args.train_steps, device)
    model.eval()
    val_seconds = timed(validation_forward, args.val_cases, device)
    result = {
        "precision": precision,
        "epoch_s": round(train_seconds + val_seconds, 3),
        "train_step_s": round(train_seconds / args.train_steps, 4),
        "val_forward_s": round(val_seconds / max(args.val_cases, 1), 4),
        "warm_up_s": round(warm_up, 2),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
    }
    return result


# ------------------------------------------------------------------------------------ stage 2: stock nnU-Net
def stock_commands(
    work: Path, cases: int, processes: int, synth_size: str = "paper", device: str = "cuda"
) -> list[tuple[str, list[list[str]]]]:
    """(stage name, commands run in parallel) in order; synth runs one process per patient (seed = index)."""
    synth = [
        [str(BIN / "recur"), "synth", str(work / f"synth_{seed}"), "--cases", "1", "--seed", str(seed),
         "--format", "inhouse-nifti", "--size", synth_size]
        for seed in range(cases)
    ]  # fmt: skip
    convert = [
        [str(BIN / "recur"), "convert", "inhouse", str(work / "patients"), "--dataset-id", str(DATASET_ID),
         "--crop", "fixed" if synth_size == "paper" else "auto", "--report-dir", str(work / "reports"),
         "--workers", str(processes)]
    ]  # fmt: skip
    plan = [[str(BIN / "recur"), "plan", str(DATASET_ID), "-np", str(processes)]]
    train = [
        [
            str(BIN / "nnUNetv2_train"),
            str(DATASET_ID),
            "3d_recur",
            "0",
            "-p",
            "nnUNetRecurPlans",
            "-tr",
            TRAINER,
            "-device",
            device,
        ]
    ]
    return [("synth", synth), ("convert", convert), ("plan", plan), ("train", train)]


def stock_environment(work: Path) -> dict:
    from nnunet_recur.trainers.environment import ext_trainer_folder

    # Alike in shape to the stock-command test's environment (tests/test_convert_synthetic.py): a user's
    # environment plus the folders, here with compile on and this project's trainer folder.
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(work / "raw"),
        nnUNet_preprocessed=str(work / "preprocessed"),
        nnUNet_results=str(work / "results"),
        nnUNet_compile="1",
        nnUNet_extTrainer=str(ext_trainer_folder()),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def gather_patients(work: Path, cases: int) -> None:
    """One folder of patients from the per-seed synth runs (patient names carry the seed, so none collide)."""
    patients = work / "patients"
    patients.mkdir(exist_ok=True)
    for seed in range(cases):
        for patient in sorted((work / f"synth_{seed}" / "patients").iterdir()):
            target = patients / patient.name
            if not target.exists():
                target.symlink_to(patient.resolve(), target_is_directory=True)


def epoch_seconds_from_log(results: Path) -> list[float]:
    logs = sorted(results.glob(f"Dataset{DATASET_ID}_*/{TRAINER}__*/fold_0/training_log_*.txt"))
    if not logs:
        return []
    return [float(m) for m in re.findall(r"Epoch time: ([0-9.]+) s", logs[-1].read_text())]


def stock_training(args, deadline: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="recur_gpu_epoch_"))
    processes = max(1, min(8, os.cpu_count() or 1))
    stages = stock_commands(work, args.cases, processes, args.stock_synth_size, args.device_type)
    result: dict = {
        "cases": args.cases,
        "synth_size": args.stock_synth_size,
        "work_dir": str(work),
        "stages": {},
    }
    if args.smoke:
        result["dry_run"] = [" ".join(cmd) for _, commands in stages for cmd in commands]
        for line in result["dry_run"]:
            print(f"  (smoke, not run) {line}")
        shutil.rmtree(work, ignore_errors=True)
        return result
    env = stock_environment(work)
    try:
        for name, commands in stages:
            if name == "convert":
                gather_patients(work, args.cases)
            remaining = deadline - time.monotonic()
            if remaining < 10:
                result["stages"][name] = {"status": "skipped: out of budget"}
                break
            started = time.perf_counter()
            log = work / f"{name}.log"

            def run(command, log=log, remaining=remaining):
                with open(log, "a") as handle:
                    return subprocess.run(
                        command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=remaining
                    ).returncode

            try:
                with ThreadPoolExecutor(max_workers=processes) as pool:
                    codes = list(pool.map(run, commands))
                status = "ok" if not any(codes) else f"exit codes {codes}"
            except subprocess.TimeoutExpired:
                status = f"timed out after {remaining:.0f} s (budget)"
            result["stages"][name] = {"status": status, "seconds": round(time.perf_counter() - started, 1)}
            print(f"  stage {name}: {status}, {result['stages'][name]['seconds']} s", flush=True)
            if status != "ok":
                result["stages"][name]["log_tail"] = log.read_text()[-3000:]
                break
        result["epoch_s"] = epoch_seconds_from_log(work / "results")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------------- report
def report(args, device, results: list[dict], stock: dict) -> str:
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    tf32 = torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None
    lines = [
        f"{card}, torch {torch.__version__}, patch {tuple(args.size)}, batch {args.batch}, "
        f"{args.train_steps} steps + {args.val_cases} whole-volume validations (inference_mode), "
        f"compile={args.compile}, cudnn TF32={tf32}",
        "",
        "| precision | s/epoch | s/train step | s/val forward | warm-up s | peak MiB | vs fp32 | vs paper "
        "(4.26 min) | <= 5 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = results[0]["epoch_s"]
    for r in results:
        lines.append(
            f"| {r['precision']} | {r['epoch_s']} | {r['train_step_s']} | {r['val_forward_s']} | "
            f"{r['warm_up_s']} | {r['peak_memory_mib']} | {baseline / r['epoch_s']:.2f}x | "
            f"{PAPER_EPOCH_S / r['epoch_s']:.0f}x faster | "
            f"{'yes' if r['epoch_s'] <= TARGET_EPOCH_S else 'no'} |"
        )
    lines.append("")
    if stock.get("dry_run"):
        lines.append(f"stock nnUNetv2_train -tr {TRAINER} (compile on): not run in --smoke mode")
    else:
        stages = ", ".join(
            f"{name} {s.get('seconds', '-')} s ({s['status']})" for name, s in stock["stages"].items()
        )
        lines.append(
            f"stock nnUNetv2_train -tr {TRAINER}, nnUNet_compile=1, {stock['cases']} "
            f"{stock.get('synth_size', 'paper')}-size synthetic cases: {stages}; epoch seconds from the log: "
            f"{stock.get('epoch_s')}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes; stage 2 printed, not run")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument(
        "--size", type=int, nargs=3, default=None, help="patch z y x (default: paper / smoke)"
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=None, help="default 23 (1 with --smoke)")
    parser.add_argument("--val-cases", type=int, default=None, help="default 7 (1 with --smoke)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the stage-1 network too")
    parser.add_argument("--cases", type=int, default=5, help="synthetic paper-size cases for stage 2")
    parser.add_argument("--skip-stock", action="store_true", help="skip stage 2")
    parser.add_argument(
        "--stock-synth-size", choices=["paper", "small"], default="paper", help="small: CPU check of stage 2"
    )
    parser.add_argument("--budget-s", type=float, default=290.0, help="stage 2 stops at this total")
    parser.add_argument("--keep", action="store_true", help="keep stage 2's work folder")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_out")))
    args = parser.parse_args()
    started = time.monotonic()

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    args.device_type = device.type
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_epoch: no CUDA device here; use --smoke on a CPU")
    args.size = tuple(args.size or (SMOKE_SIZE if args.smoke else PAPER_SIZE))
    args.train_steps = args.train_steps or (1 if args.smoke else 23)
    args.val_cases = args.val_cases if args.val_cases is not None else (1 if args.smoke else 7)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnU-Net's trainer sets it

    results = []
    for precision in ("fp32", "bf16"):
        results.append(paper_epoch(args, device, precision))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"  {precision}: {results[-1]}", flush=True)
    stock = {"skipped": True} if args.skip_stock else stock_training(args, started + args.budget_s)
    if args.skip_stock:
        stock.update(stages={}, cases=0)
    table = report(args, device, results, stock)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_epoch.md").write_text(table + "\n")
    payload = {
        "setting": {
            "device": str(device),
            "size_zyx": list(args.size),
            "batch": args.batch,
            "train_steps": args.train_steps,
            "val_cases": args.val_cases,
            "compile": args.compile,
            "torch": torch.__version__,
            "paper_epoch_s": PAPER_EPOCH_S,
            "target_epoch_s": TARGET_EPOCH_S,
        },
        "paper_epoch": results,
        "stock_nnunet_train": stock,
        "total_s": round(time.monotonic() - started, 1),
    }
    (args.out / "gpu_epoch.json").write_text(json.dumps(payload, indent=2))
    print(f"total {payload['total_s']} s; wrote {args.out / 'gpu_epoch.json'} and gpu_epoch.md")


if __name__ == "__main__":
    main()
