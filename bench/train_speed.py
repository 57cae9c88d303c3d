"""CPU seconds per training iteration of the paper's recipe at small sizes, against nnU-Net's PlainConvUNet.

One iteration = forward + soft Dice loss + backward + Adam step on a batch of 2 two-channel patches, exactly
what ``nnUNetTrainerRecur.train_step`` does (minus data loading). The baseline, measured in the same run, is
the same step with nnU-Net's PlainConvUNet at the paper's size (the ``nnUNetTrainerRecurPlainConvUNet``
variant), so the printed ratio is machine-independent. Also times one whole-volume validation forward.
Writes docs/benchmarks_trainers.md (Markdown table plus the raw figures as JSON).

Example: .venv/bin/python bench/train_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nnunet_recur.atomic_io import write_text_atomic  # noqa: E402
from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss  # noqa: E402
from nnunet_recur.trainers.network import RecurUNet, count_trainable_parameters  # noqa: E402


def plain_conv_unet() -> torch.nn.Module:
    from nnunet_recur.trainers.plain_unet import nnUNetTrainerRecurPlainConvUNet

    return nnUNetTrainerRecurPlainConvUNet.build_network_architecture(None, None, 2, 1, False)


def seconds_per_iteration(network: torch.nn.Module, size: tuple[int, int, int], repeats: int) -> float:
    """Median wall time of one Adam training step on a batch of 2 (after one warm-up step)."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = SigmoidSoftDiceLoss()
    data = torch.randn(2, 2, *size)
    target = torch.rand(2, 1, *size) > 0.9
    network.train()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(data), target)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def seconds_per_validation_forward(
    network: torch.nn.Module, size: tuple[int, int, int], repeats: int
) -> float:
    network.eval()
    data = torch.randn(1, 2, *size)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            network(data)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


START, END = "<!-- train_speed:start -->", "<!-- train_speed:end -->"


def write_section(path: Path, section: str) -> None:
    """Replace this script's section of the Markdown file (other sections are written by hand), atomically."""
    text = path.read_text() if path.is_file() else "# Trainer benchmarks\n\n" + START + "\n" + END + "\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + "\n\n" + START + "\n" + END + "\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    write_text_atomic(path, before + section + after)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per size (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_trainers.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sizes = [(32, 48, 48), (48, 64, 64)]
    rows = []
    for size in sizes:
        recur = seconds_per_iteration(RecurUNet(), size, args.repeats)
        plain = seconds_per_iteration(plain_conv_unet(), size, args.repeats)
        forward = seconds_per_validation_forward(RecurUNet(), size, args.repeats)
        rows.append(
            {
                "patch_zyx": list(size),
                "batch": 2,
                "recur_unet_s_per_iteration": round(recur, 3),
                "plain_conv_unet_s_per_iteration": round(plain, 3),
                "ratio_recur_over_plain": round(recur / plain, 2),
                "recur_unet_s_per_validation_forward": round(forward, 3),
            }
        )
        print(
            f"patch {size}: RecurUNet {recur:.2f} s/iteration, PlainConvUNet {plain:.2f} s/iteration, "
            f"ratio {recur / plain:.2f}; validation forward {forward:.2f} s"
        )

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "recur_unet_parameters": count_trainable_parameters(RecurUNet()),
    }
    table = [
        "| patch (z, y, x) | RecurUNet s/iteration | PlainConvUNet s/iteration | ratio "
        "| RecurUNet s/val forward |",
        "|---|---|---|---|---|",
    ] + [
        f"| {' x '.join(map(str, r['patch_zyx']))} | {r['recur_unet_s_per_iteration']} | "
        f"{r['plain_conv_unet_s_per_iteration']} | {r['ratio_recur_over_plain']} | "
        f"{r['recur_unet_s_per_validation_forward']} |"
        for r in rows
    ]
    section = "\n".join(
        [
            START,
            "`bench/train_speed.py`: one training iteration = forward + soft Dice + backward + Adam step,",
            "batch 2, two channels (CT, PET), median of the timed steps after a warm-up step; baseline:",
            "nnU-Net's PlainConvUNet at the same size (`nnUNetTrainerRecurPlainConvUNet`), same run.",
            f"Machine: {machine['cpu_count']} CPUs ({machine['cpu']}), torch {machine['torch']} with "
            f"{machine['torch_threads']} threads, {machine['date']}; shared with other jobs, so absolute",
            "figures are noisy - the ratio is the stable number.",
            "",
            *table,
            "",
            "```json",
            json.dumps({"machine": machine, "rows": rows}, indent=2),
            "```",
            END,
        ]
    )
    write_section(args.out, section)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
