"""Speed of `recur-eval` on synthetic paper-size cases (128 x 224 x 160 voxels, as the paper's crop).

Prints, from one run on the same cases:
  1. the SUVmax sweep (p = 1..100 in one pass) against the naive loop of 100 thresholdings x MedPy `dc`
     (identical Dice values asserted; target >= 4x);
  2. `compare` with every metric but HD95 (PO included) against the floor of reading each volume it
     needs once (target <= 2x), with and without PET/masks (SUV capture curve), and with .npz maps;
     floor and compare run alternately, so load on a shared machine hits both alike;
  3. the cost of HD95 on its own;
  4. the reader guard (truncation check + raw-stream NaN scan of float files) against a plain
     `sitk.ReadImage` of the same files (target <= 1.5x for a case's PET + masks + label).

Usage: .venv/bin/python bench/eval_speed.py [--cases 4] [--repeats 3] [--keep DIR] [--cpu-time]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnunet_recur.evaluation import baselines, comparison  # noqa: E402
from nnunet_recur.evaluation.parallel import map_cases  # noqa: E402
from nnunet_recur.evaluation.volumes import read_volume  # noqa: E402

SHAPE = (128, 224, 160)  # z, y, x: the paper's 160 x 224 x 128 (X-Y-Z) crop
SPACING = (1.0, 1.0, 2.0)  # x, y, z mm


def ellipsoid(centre, radii) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (
        ((z - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((x - centre[2]) / radii[2]) ** 2
    ) <= 1.0


def write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-80.0, -120.0, -130.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def bench_cases(root: Path, count: int, seed: int, marker: str, make) -> list[str]:
    """BENCH_001... made by `make(root, case, rng)` from one generator seeded `seed`, each unless
    `root/marker/<case>.nii.gz` is there already (--keep reuses a folder)."""
    cases = [f"BENCH_{i:03d}" for i in range(1, count + 1)]
    rng = np.random.default_rng(seed)
    for case in cases:
        if not (root / marker / f"{case}.nii.gz").is_file():
            make(root, case, rng)
    return cases


def make_case(root: Path, case: str, rng: np.random.Generator) -> None:
    """CT and PET (SUV) with a body, a hot GTV, a relapse next to it, a bright brain; four predictions."""
    body = ellipsoid((64, 112, 80), (90, 95, 70))
    brain = ellipsoid((118, 100, 80), (22, 60, 50)) & body
    gtv_centre = np.array([60, 120, 70]) + rng.integers(-6, 7, 3)
    gtv = ellipsoid(gtv_centre, (9, 14, 12))
    relapse = ellipsoid(gtv_centre + np.array([4, 8, 6]), (6, 9, 8))
    if rng.random() < 0.5:  # a second, nodal relapse
        relapse |= ellipsoid(gtv_centre + np.array([-10, -30, 25]), (3, 5, 5))

    ct = np.where(body, rng.normal(40, 25, SHAPE), -1000.0).astype(np.int16)
    pet = np.where(body, rng.gamma(4.0, 0.35, SHAPE), rng.gamma(1.0, 0.02, SHAPE))
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    r2 = (
        ((z - gtv_centre[0]) / 8.0) ** 2
        + ((y - gtv_centre[1]) / 12.0) ** 2
        + ((x - gtv_centre[2]) / 10.0) ** 2
    )
    pet = pet + rng.uniform(8, 14) * np.exp(-r2)  # hot tumour, peak inside the GTV
    pet[brain] += 5.0 + rng.gamma(4.0, 0.4, int(brain.sum()))
    pet = pet.astype(np.float32)

    raw = root / "raw"
    write(relapse.astype(np.uint8), raw / "labelsTs" / f"{case}.nii.gz")
    write(ct, raw / "imagesTs" / f"{case}_0000.nii.gz")
    write(pet, raw / "imagesTs" / f"{case}_0001.nii.gz")
    write(gtv.astype(np.uint8), raw / "masksTs" / f"{case}_gtv.nii.gz")
    write(brain.astype(np.uint8), raw / "masksTs" / f"{case}_brain.nii.gz")
    # CNN-like predictions: shifted / inflated relapse blobs; one with a probability map
    random_pred = ellipsoid(gtv_centre + np.array([3, 6, 4]), (8, 12, 11))
    finetune_prob = np.exp(-(r2 / 1.6)).astype(np.float32)
    write(random_pred.astype(np.uint8), root / "pred_random" / f"{case}.nii.gz")
    write((finetune_prob > 0.5).astype(np.uint8), root / "pred_finetune" / f"{case}.nii.gz")
    (root / "pred_finetune_npz").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "pred_finetune_npz" / f"{case}.npz", probabilities=finetune_prob[None])
    suv = read_volume(raw / "imagesTs" / f"{case}_0001.nii.gz")
    mask = baselines.suvmax_prediction(
        suv,
        read_volume(raw / "masksTs" / f"{case}_gtv.nii.gz"),
        read_volume(raw / "masksTs" / f"{case}_brain.nii.gz"),
        38,
    )
    write(mask.astype(np.uint8), root / "pred_suvmax" / f"{case}.nii.gz")
    write(gtv.astype(np.uint8), root / "pred_gtv" / f"{case}.nii.gz")


#: The clock every timing uses: wall time, or with --cpu-time this process's CPU time (every section runs
#: in this one process, 1 worker), which other sessions' load on a shared machine inflates far less.
CLOCK = time.perf_counter


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = CLOCK()
        function()
        times.append(CLOCK() - start)
    return min(times)


def best_of_interleaved(repeats: int, baseline, candidate) -> tuple[float, float]:
    """Best-of times of `baseline` and `candidate`, run alternately so that a load change on this
    shared machine hits both alike (the ratio is what is reported)."""
    base, cand = [], []
    for _ in range(repeats):
        for function, times in ((baseline, base), (candidate, cand)):
            start = CLOCK()
            function()
            times.append(CLOCK() - start)
    return min(base), min(cand)


def floor(paths: list[Path]) -> None:
    """Read each volume once, the least any evaluation can do."""
    for path in paths:
        if path.suffix == ".npz":
            with np.load(path) as data:
                data["probabilities"]
        else:
            sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="generate into / reuse this folder")
    parser.add_argument(
        "--cpu-time", action="store_true", help="time with this process's CPU time (a loaded, shared machine)"
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter

    root = args.keep or Path(tempfile.mkdtemp(prefix="eval_speed_"))
    cases = bench_cases(root, args.cases, 2023, "pred_gtv", make_case)
    (root / "pred_finetune_npz").mkdir(exist_ok=True)
    raw = root / "raw"
    print(f"{len(cases)} synthetic cases of {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} voxels in {root}")

    # 1. sweep vs naive loop (compute only, volumes already in memory; then including the reads)
    from medpy.metric import binary

    loaded = {
        c: tuple(
            read_volume(p)
            for p in (
                raw / "imagesTs" / f"{c}_0001.nii.gz",
                raw / "masksTs" / f"{c}_gtv.nii.gz",
                raw / "masksTs" / f"{c}_brain.nii.gz",
                raw / "labelsTs" / f"{c}.nii.gz",
            )
        )
        for c in cases
    }

    def naive_loop():
        out = []
        for pet, gtv, brain, ref in loaded.values():
            suvmax = baselines.suvmax_in_gtv(pet, gtv)
            pet64, outside_brain = pet.array.astype(np.float64), brain.array == 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(
                    [binary.dc((pet64 >= p / 100 * suvmax) & outside_brain, ref.array) for p in range(1, 101)]
                )
        return np.array(out)

    def one_pass():
        return np.array([baselines.case_sweep_dice(*v) for v in loaded.values()])

    assert one_pass().tolist() == naive_loop().tolist(), "sweep differs from the naive loop"
    t_naive = best_of(args.repeats, naive_loop)
    t_sweep = best_of(args.repeats, one_pass)
    sweep_files = [p for v in loaded.values() for p in (x.path for x in v)]
    t_read = best_of(args.repeats, lambda: floor(sweep_files))
    n = len(cases)
    print("\n1. SUVmax sweep, p = 1..100 (identical Dice values: checked)")
    print(f"   naive loop (100 x threshold + medpy dc): {t_naive / n:.3f} s/case")
    print(
        f"   one pass (cumulative counts):            {t_sweep / n:.3f} s/case"
        f"  -> {t_naive / t_sweep:.1f}x faster"
    )
    print(f"   reading the 4 volumes of a case:         {t_read / n:.3f} s/case")
    print(
        f"   with reads: naive {(t_naive + t_read) / n:.3f} s vs one pass"
        f" {(t_sweep + t_read) / n:.3f} s per case"
        f" -> {(t_naive + t_read) / (t_sweep + t_read):.1f}x"
    )
    loaded.clear()

    # 2. compare vs the floor of reading each volume once
    masks_methods = ("random", "finetune", "suvmax", "gtv")
    methods = tuple(comparison.Method(name, root / f"pred_{name}") for name in masks_methods)
    label_files = [raw / "labelsTs" / f"{c}.nii.gz" for c in cases]
    pred_files = [root / f"pred_{m}" / f"{c}.nii.gz" for m in masks_methods for c in cases]
    image_files = [
        p
        for c in cases
        for p in (
            raw / "imagesTs" / f"{c}_0001.nii.gz",
            raw / "masksTs" / f"{c}_gtv.nii.gz",
            raw / "masksTs" / f"{c}_brain.nii.gz",
        )
    ]
    npz_methods = (*methods[:1], comparison.Method("finetune", root / "pred_finetune_npz", 0.5))
    npz_files = label_files + [root / "pred_random" / f"{c}.nii.gz" for c in cases]
    npz_files += [root / "pred_finetune_npz" / f"{c}.npz" for c in cases]
    configs = [
        (
            "labels + 4 mask methods",
            comparison.CompareInputs(raw / "labelsTs", methods, hd95=False),
            label_files + pred_files,
        ),
        (
            "+ PET/GTV/brain (SUV capture curve)",
            comparison.CompareInputs(
                raw / "labelsTs", methods, raw / "imagesTs", raw / "masksTs", hd95=False
            ),
            label_files + pred_files + image_files,
        ),
        (
            "labels + mask method + .npz method (curve)",
            comparison.CompareInputs(raw / "labelsTs", npz_methods, hd95=False),
            npz_files,
        ),
    ]
    print("\n2. compare, every metric but HD95 (Dice, recall, precision, cc, PO both criteria), 1 worker")
    for label, inputs, files in configs:
        evaluator = comparison.CaseEvaluator(inputs)
        t_floor, t_compare = best_of_interleaved(
            args.repeats,
            lambda files=files: floor(files),
            lambda evaluator=evaluator: map_cases(evaluator, cases, 1, progress=False),
        )
        print(
            f"   {label:45s} floor {t_floor / n:.3f} s/case, compare {t_compare / n:.3f} s/case"
            f" -> {t_compare / t_floor:.2f}x the floor (target <= 2x)"
        )

    # 3. HD95 on its own
    with_hd95 = comparison.CaseEvaluator(comparison.CompareInputs(raw / "labelsTs", methods, hd95=True))
    without = comparison.CaseEvaluator(comparison.CompareInputs(raw / "labelsTs", methods, hd95=False))
    t_with = best_of(args.repeats, lambda: map_cases(with_hd95, cases, 1, progress=False))
    t_without = best_of(args.repeats, lambda: map_cases(without, cases, 1, progress=False))
    per_pair = (t_with - t_without) / (n * len(methods))
    print(
        f"\n3. HD95: +{(t_with - t_without) / n:.3f} s/case for {len(methods)} methods"
        f" ({per_pair:.3f} s per method and case)"
    )

    # 4. the reader guard on its own
    pet_files = [raw / "imagesTs" / f"{c}_0001.nii.gz" for c in cases]
    mask_files = [p for p in image_files if "masksTs" in str(p)] + label_files
    print("\n4. reader guard (truncation check, NaN scan of float files) vs plain sitk.ReadImage")
    for label, files in (("PET (float32)", pet_files), ("masks + label (uint8)", mask_files),
                         ("a case: PET + masks + label", pet_files + mask_files)):  # fmt: skip
        t_plain, t_guarded = best_of_interleaved(
            args.repeats,
            lambda files=files: floor(files),
            lambda files=files: [read_volume(f) for f in files],
        )
        print(
            f"   {label:30s} plain {t_plain / n:.3f} s/case, guarded {t_guarded / n:.3f} s/case"
            f" -> {t_guarded / t_plain:.2f}x"
        )

    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
