"""Batches per second per CPU core from nnU-Net's training loader at the paper's size, against a GPU step.

What is timed: ``nnUNetTrainerRecur.get_dataloaders()`` - nnU-Net's ``nnUNetDataLoader`` with our flip-only
transforms (``get_training_transforms``), reading preprocessed cases as nnU-Net stores them (blosc2 ``.b2nd``
written by ``nnUNetDatasetBlosc2.save_case`` with the preprocessor's chunk/block rule) - with
``nnUNet_n_proc_DA=0``, i.e. a single process, one thread (nnU-Net limits each worker to one thread). Batch 2,
patch 128 x 224 x 160 = case size (the paper's crop), two channels. Baselines measured in the same run:

* ``decompress``: reading the two cases' arrays whole from the .b2nd files (blosc2 with one thread) - the
  floor of any loader that reads nnU-Net's files;
* the same ``nnUNetDataLoader`` with the region conversion given ``[1]`` instead of ``[1, 1]``
  (:func:`~nnunet_recur.trainers.whole_case_loader.deduplicated_regions`: ``==`` instead of ``torch.isin``);
* that, read with :class:`~nnunet_recur.trainers.whole_case_loader.WholeCaseDataLoader` (no bounding box,
  crop or pad when the patch equals the case).

Loaders are timed in alternation (median of ``--batches`` rounds), so load from other jobs hits all alike.

The GPU side is computed, not measured: the training step's FLOPs (torch's FlopCounterMode on the meta device)
divided by an assumed sustained throughput: 30 % (``--utilisation``) of an H100 SXM's dense peak, TF32 495
TFLOP/s for fp32 (PyTorch runs fp32 convolutions on TF32 tensor cores by default) and 989 TFLOP/s for bf16.
Workers to keep the GPU busy = ceil(loader seconds per batch / GPU seconds per step).

Example: python bench/data_pipeline.py --cases 4 --batches 5 --json bench_out/data_pipeline.json
``--smoke`` runs a tiny size (CI keeps the script from rotting).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAPER_SIZE = (128, 224, 160)
SMOKE_SIZE = (32, 48, 32)
H100_TF32_DENSE_TFLOPS = 495.0
H100_BF16_DENSE_TFLOPS = 989.0
ASSUMED_UTILISATION = 0.30


def synthetic_case(shape, rng):
    """CT-like (HU/1024, quantised) and PET-like (z-scored, smooth) channels and a small relapse blob."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    z, y, x = shape
    coarse = rng.normal(size=(max(2, z // 8), max(2, y // 8), max(2, x // 8)))
    from scipy.ndimage import zoom

    field = zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)], order=1)[:z, :y, :x]
    ct = np.clip(np.round(field * 300 + rng.normal(0, 20, shape)), -1024, 1024) / 1024
    pet = gaussian_filter(rng.gamma(2.0, 1.0, shape), 2.0)
    pet = (pet - pet.mean()) / (pet.std() + 1e-8)
    grid = np.indices(shape, sparse=True)
    centre = [s // 2 for s in shape]
    radius = max(2, min(shape) // 10)
    seg = (sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2).astype(np.int16)
    return np.stack([ct, pet]).astype(np.float32), seg[None]


def write_preprocessed_dataset(root: Path, shape, n_cases: int) -> str:
    """A ``nnUNet_preprocessed`` dataset as ``recur plan`` leaves it, with blosc2 cases written by nnU-Net."""
    import numpy as np
    from batchgenerators.utilities.file_and_folder_operations import save_json, write_pickle
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    from nnunet_recur.trainers.planning import RECUR_CONFIGURATION, RECUR_PLANS_NAME, recur_plans

    name = "Dataset990_LoaderBench"
    folder = root / name
    spacing = [2.0, 0.9765, 0.9765]
    base = {
        "dataset_name": name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": list(shape),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "label_manager": "LabelManager",
        "experiment_planner_used": "ExperimentPlanner",
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0},
            "1": {"mean": 0.0, "std": 1.0, "percentile_00_5": -3.0, "percentile_99_5": 3.0},
        },
        "configurations": {
            "3d_fullres": {
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0},
            }
        },
    }
    fingerprint = {"spacings": [spacing] * n_cases, "shapes_after_crop": [list(shape)] * n_cases}
    dataset_json = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "relapse": [1]},
        "regions_class_order": [1],
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    plans = recur_plans(base, fingerprint, dataset_json)
    config = plans["configurations"][RECUR_CONFIGURATION]
    data_folder = folder / config["data_identifier"]
    data_folder.mkdir(parents=True)
    save_json(plans, str(folder / f"{RECUR_PLANS_NAME}.json"))
    save_json(dataset_json, str(folder / "dataset.json"))
    keys = [f"case_{i:03d}" for i in range(n_cases)]
    save_json([{"train": keys[:-1] or keys, "val": keys[-1:]}], str(folder / "splits_final.json"))
    rng = np.random.default_rng(0)
    patch = tuple(config["patch_size"])
    for key in keys:
        data, seg = synthetic_case(shape, rng)
        blocks, chunks = comp_blosc2_params(data.shape, patch, data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
        properties = {
            "spacing": spacing,
            "shape_before_cropping": list(shape),
            "bbox_used_for_cropping": [[0, s] for s in shape],
            "shape_after_cropping_and_before_resampling": list(shape),
            "class_locations": DefaultPreprocessor._sample_foreground_locations(seg, [(1, 1)], seed=1234),
        }
        nnUNetDatasetBlosc2.save_case(
            data,
            seg,
            properties,
            str(data_folder / key),
            chunks=chunks,
            blocks=blocks,
            chunks_seg=chunks_seg,
            blocks_seg=blocks_seg,
        )
        write_pickle(properties, str(data_folder / f"{key}.pkl"))
    return name


def training_step_tflop(shape, batch: int) -> float:
    """FLOPs of one RecurUNet training step (forward, Dice loss, backward) at ``shape``, counted on meta."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss
    from nnunet_recur.trainers.network import RecurUNet

    with torch.device("meta"):
        network = RecurUNet()
        data = torch.randn(batch, 2, *shape)
        target = torch.rand(batch, 1, *shape) > 0.5
    counter = FlopCounterMode(display=False)
    with counter:
        SigmoidSoftDiceLoss()(network(data), target).backward()
    return counter.get_total_flops() / 1e12


def time_interleaved(candidates: dict, rounds: int) -> dict:
    """Median seconds per call of each candidate, timed in alternation so that load on a shared machine
    affects them alike; one warm-up call each."""
    import statistics

    for call in candidates.values():
        call()
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=4, help="preprocessed cases written (>= 2)")
    parser.add_argument("--batches", type=int, default=6, help="batches timed per loader")
    parser.add_argument("--smoke", action="store_true", help=f"tiny cases {SMOKE_SIZE}, 2 batches")
    parser.add_argument("--utilisation", type=float, default=ASSUMED_UTILISATION, help="of the GPU's peak")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shape = SMOKE_SIZE if args.smoke else PAPER_SIZE
    n_batches = 2 if args.smoke else args.batches

    os.environ["nnUNet_n_proc_DA"] = "0"  # SingleThreadedAugmenter: the loader runs in this process
    import blosc2
    import numpy as np
    import torch

    torch.set_num_threads(1)
    blosc2.set_nthreads(1)

    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    from nnunet_recur.trainers.planning import RECUR_CONFIGURATION, RECUR_PLANS_NAME
    from nnunet_recur.trainers.variants import nnUNetTrainerRecur
    from nnunet_recur.trainers.whole_case_loader import WholeCaseDataLoader, with_deduplicated_regions

    with tempfile.TemporaryDirectory(prefix="recur_loader_bench_") as tmp:
        root = Path(tmp)
        for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[variable] = str(root)
        name = write_preprocessed_dataset(root, shape, max(2, args.cases))
        from batchgenerators.utilities.file_and_folder_operations import load_json

        plans = load_json(str(root / name / f"{RECUR_PLANS_NAME}.json"))
        plans["continue_training"] = False  # what nnunetv2.run.run_training adds
        dataset_json = load_json(str(root / name / "dataset.json"))
        trainer = nnUNetTrainerRecur(plans, RECUR_CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
        trainer.initialize()
        train_loader, _ = trainer.get_dataloaders()
        stock = train_loader.data_loader  # the nnUNetDataLoader that SingleThreadedAugmenter wraps
        dataset = stock._data
        keys = list(dataset.identifiers)
        patch = trainer.configuration_manager.patch_size

        def loader_like_stock(cls, transforms):
            return cls(
                dataset,
                trainer.batch_size,
                patch,
                patch,
                trainer.label_manager,
                oversample_foreground_percent=trainer.oversample_foreground_percent,
                transforms=transforms,
            )

        cheap_transforms = with_deduplicated_regions(stock.transforms)
        stock_dedup = loader_like_stock(nnUNetDataLoader, cheap_transforms)
        whole = loader_like_stock(WholeCaseDataLoader, cheap_transforms)

        def decompress_two():
            for key in np.random.choice(keys, 2):
                data, seg, _, _ = dataset.load_case(key)
                np.asarray(data[:]), np.asarray(seg[:])

        candidates = {
            "nnU-Net loader (trainer's get_dataloaders, flip-only)": lambda: next(train_loader),
            "nnU-Net loader, regions deduplicated": lambda: next(stock_dedup),
            "whole-case loader, regions deduplicated": lambda: next(whole),
            "decompress 2 cases only (floor)": decompress_two,
        }
        seconds = time_interleaved(candidates, n_batches)
        batch, whole_batch = next(train_loader), next(whole)

    if tuple(whole_batch["data"].shape) != tuple(batch["data"].shape):
        raise SystemExit(
            f"whole-case batch {tuple(whole_batch['data'].shape)} != {tuple(batch['data'].shape)}"
        )
    stock_s = seconds[next(iter(candidates))]
    step_tflop = training_step_tflop(shape, 2)
    gpu_step_s = {
        "fp32": step_tflop / (args.utilisation * H100_TF32_DENSE_TFLOPS),
        "bf16": step_tflop / (args.utilisation * H100_BF16_DENSE_TFLOPS),
    }
    rows = [{"loader": name, "s_per_batch": value} for name, value in seconds.items()]
    for row in rows:
        row["batches_per_s_per_core"] = 1.0 / row["s_per_batch"]
        row["vs_nnunet_loader"] = stock_s / row["s_per_batch"]
        for precision, seconds in gpu_step_s.items():
            row[f"workers_for_one_h100_{precision}"] = math.ceil(row["s_per_batch"] / seconds)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blosc2": blosc2.__version__,
        "date": date.today().isoformat(),
    }
    setting = {
        "case_zyx": list(shape),
        "batch": 2,
        "batches_timed": n_batches,
        "train_step_tflop": round(step_tflop, 3),
        "h100_utilisation_assumed": args.utilisation,
        "h100_step_s": {k: round(v, 4) for k, v in gpu_step_s.items()},
    }
    print(
        f"case {shape}, batch 2, single process, 1 thread; RecurUNet step {step_tflop:.2f} TFLOP -> "
        f"H100 step {gpu_step_s['fp32'] * 1000:.0f} ms fp32 (TF32) / "
        f"{gpu_step_s['bf16'] * 1000:.0f} ms bf16 at {args.utilisation:.0%} of peak; {machine}"
    )
    print("| loader | s/batch | batches/s per core | vs nnU-Net loader | workers per H100, fp32 | bf16 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['loader']} | {row['s_per_batch']:.3f} | {row['batches_per_s_per_core']:.2f} | "
            f"{row['vs_nnunet_loader']:.2f}x | {row['workers_for_one_h100_fp32']} | "
            f"{row['workers_for_one_h100_bf16']} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "setting": setting, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
