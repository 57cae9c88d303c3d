"""Seconds per paper epoch of RecurUNet + soft Dice + Adam, fp32 against bf16 autocast - pure torch.

The paper's epoch: 23 training steps of batch 2 plus 7 whole-volume validation forwards at 128 x 224 x 160 (z,
y, x), two input channels; the paper reports 4.26 min per epoch on two RTX 3090. Data are random tensors in
memory, so this times the network, not nnU-Net's data loading. Needs only torch and this repository (the
network and loss modules import torch only), so it runs on a machine without nnunetv2. Reports seconds per
epoch, per training step and per validation forward, and peak memory (CUDA: max allocated; CPU: process max
RSS). The fp32 run is the baseline; the bf16 ratio is printed against it. ``--channels-last`` and
``--compile`` try torch's 3D memory format and ``torch.compile``.

Without a GPU it runs a tiny epoch (2 steps, 1 validation case at 32 x 48 x 48) so ``make bench`` stays quick.

Example: python bench/gpu_epoch.py --device cuda --json $OUT/gpu_epoch.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss  # noqa: E402
from nnunet_recur.trainers.network import RecurUNet  # noqa: E402

PAPER_SIZE = (128, 224, 160)
CPU_SIZE = (32, 48, 48)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_epoch(args, device: torch.device, precision: str) -> dict:
    torch.manual_seed(0)
    network = RecurUNet(input_channels=2, num_classes=1).to(device)
    memory_format = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    network = network.to(memory_format=memory_format)
    model = torch.compile(network) if args.compile else network
    optimizer = torch.optim.Adam(network.parameters(), lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = SigmoidSoftDiceLoss()
    size = tuple(args.size)
    data = torch.randn(args.batch, 2, *size, device=device).to(memory_format=memory_format)
    target = torch.rand(args.batch, 1, *size, device=device) > 0.95
    volume = torch.randn(1, 2, *size, device=device).to(memory_format=memory_format)

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
        with torch.no_grad(), autocast():
            model(volume)

    model.train()
    train_step()  # warm-up (cuDNN autotuning, compilation)
    model.eval()
    validation_forward()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronise(device)

    start = time.perf_counter()
    model.train()
    for _ in range(args.train_steps):
        train_step()
    synchronise(device)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.eval()
    for _ in range(args.val_cases):
        validation_forward()
    synchronise(device)
    val_seconds = time.perf_counter() - start
    return {
        "precision": precision,
        "epoch_s": round(train_seconds + val_seconds, 3),
        "train_step_s": round(train_seconds / args.train_steps, 4),
        "val_forward_s": round(val_seconds / max(args.val_cases, 1), 4),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=3, default=None, help="patch z y x (default: paper / tiny)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=None, help="default 23 (GPU) or 2 (CPU)")
    parser.add_argument("--val-cases", type=int, default=None, help="default 7 (GPU) or 1 (CPU)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--channels-last", action="store_true", help="torch.channels_last_3d memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.size = args.size or list(PAPER_SIZE if on_gpu else CPU_SIZE)
    args.train_steps = args.train_steps or (23 if on_gpu else 2)
    args.val_cases = args.val_cases if args.val_cases is not None else (7 if on_gpu else 1)
    if on_gpu:
        torch.backends.cudnn.benchmark = True

    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    results = [run_epoch(args, device, p) for p in precisions]
    card = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    header = (
        f"{card}, torch {torch.__version__}, patch {tuple(args.size)}, batch {args.batch}, "
        f"{args.train_steps} steps + {args.val_cases} validation forwards, "
        f"channels_last={args.channels_last}, compile={args.compile}"
    )
    print(header)
    print("| precision | s/epoch | s/train step | s/val forward | peak MiB | vs fp32 |")
    print("|---|---|---|---|---|---|")
    baseline = results[0]["epoch_s"]
    for r in results:
        ratio = baseline / r["epoch_s"] if r["epoch_s"] else float("nan")
        print(
            f"| {r['precision']} | {r['epoch_s']} | {r['train_step_s']} | {r['val_forward_s']} | "
            f"{r['peak_memory_mib']} | {ratio:.2f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setting": header, "results": results}, indent=2))


if __name__ == "__main__":
    main()
