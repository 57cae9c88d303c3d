"""Generate a hostile-input corpus for `recur-eval`: damaged files that must be refused, never scored.

Usage: python tests/hostile_eval_corpus.py OUT   (writes OUT/clean, OUT/<scenario>/..., OUT/manifest.json)

Every scenario is one `recur-eval` command line on a small clean dataset with exactly one thing
damaged: a truncated, zero-byte or NaN-holding file, a file on another grid, case ids that differ only
in letter case, a corrupt probability archive, a broken best.json, a PET without uptake. The manifest
gives, per scenario, the arguments, the exit status expected (2: refused as bad input; 1: the batch ran
and recorded the damaged case as failed) and a text the one-line error must contain.
`tests/test_eval_hostile_corpus.py` runs them all as subprocesses, plus a run killed mid-report.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (12, 22, 20)  # z, y, x
SPACING = (1.2, 1.0, 2.5)  # x, y, z in mm
ORIGIN = (-30.0, 12.0, 100.0)
CASES = ("RECUR_001", "RECUR_002", "RECUR_003")


@dataclass
class Scenario:
    name: str
    args: list[str]
    exit_code: int  # 2 = refused (bad input), 1 = batch ran and recorded the failed case
    message: str  # must appear in the error / failure line
    out: str  # the --out folder of the command
    report_file: str | None = None  # a report file that must NOT appear (refused runs)
    notes: list[str] = field(default_factory=list)


def write(array: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def build_clean(root: Path) -> dict[str, Path]:
    """labelsTs / imagesTs / masksTs of three cases and an 'AI' prediction folder (masks + npz)."""
    raw = root / "Dataset900_Tiny"
    ai = root / "preds_ai"
    rng = np.random.default_rng(0)
    for n, case in enumerate(CASES):
        gtv = np.zeros(SHAPE, np.uint8)
        gtv[4:8, 8:14, 7:13] = 1
        brain = np.zeros(SHAPE, np.uint8)
        brain[:, :4] = 1
        pet = rng.gamma(2.0, 0.5, SHAPE).astype(np.float32)
        pet[gtv == 1] += 6.0 + n
        pet[brain == 1] += 15.0
        relapse = np.zeros(SHAPE, np.uint8)
        relapse[3:8, 10:15, 9:14] = 1
        if n == 0:
            relapse[2:5, 16:19, 2:5] = 1  # a second relapse far from the GTV
        ct = rng.normal(40, 30, SHAPE).astype(np.int16)
        write(relapse, raw / "labelsTs" / f"{case}.nii.gz")
        write(ct, raw / "imagesTs" / f"{case}_0000.nii.gz")
        write(pet, raw / "imagesTs" / f"{case}_0001.nii.gz")
        write(gtv, raw / "masksTs" / f"{case}_gtv.nii.gz")
        write(brain, raw / "masksTs" / f"{case}_brain.nii.gz")
        probability = np.zeros(SHAPE, np.float32)
        probability[3:8, 9:14, 8:13] = 0.9
        probability[5, 12, 11] = 0.3 + 0.2 * n
        write((probability > 0.5).astype(np.uint8), ai / f"{case}.nii.gz")
        np.savez_compressed(ai / f"{case}.npz", probabilities=probability[None])
    return {
        "raw": raw,
        "labels": raw / "labelsTs",
        "images": raw / "imagesTs",
        "masks": raw / "masksTs",
        "ai": ai,
    }


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def build_corpus(root: Path) -> list[Scenario]:
    """Write the clean dataset and every damaged variant under `root`; return the scenarios."""
    root = Path(root)
    clean = build_clean(root / "clean")
    labels, images, masks, ai = clean["labels"], clean["images"], clean["masks"], clean["ai"]
    scenarios: list[Scenario] = []

    def compare(name: str, gt: Path, pred: str, message: str, *extra: str) -> None:
        out = root / name / "report"
        args = ["compare", "--gt", str(gt), "--pred", pred, "--no-figures", "--no-hd95", "--out", str(out)]
        scenarios.append(Scenario(name, [*args, *extra], 2, message, str(out), "table1.md"))

    # 1. truncated / zero-byte / NaN files -------------------------------------------------------------
    bad = _copy(labels, root / "truncated_label" / "labels")
    truncate(bad / "RECUR_001.nii.gz", 0.5)
    compare("truncated_label", bad, f"AI={ai}", "RECUR_001.nii.gz")

    bad = _copy(ai, root / "truncated_prediction" / "pred")
    truncate(bad / "RECUR_002.nii.gz", 0.6)
    compare("truncated_prediction", labels, f"AI={bad}", "RECUR_002.nii.gz")

    bad = _copy(ai, root / "zero_byte_prediction" / "pred")
    (bad / "RECUR_003.nii.gz").write_bytes(b"")
    compare("zero_byte_prediction", labels, f"AI={bad}", "RECUR_003.nii.gz")

    bad = _copy(ai, root / "nan_prediction" / "pred")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(ai / "RECUR_001.nii.gz"))).astype(np.float32)
    mask[0, 0, 0] = np.nan
    write(mask, bad / "RECUR_001.nii.gz")
    compare("nan_prediction", labels, f"AI={bad}", "non-finite")

    bad = _copy(ai, root / "nan_probabilities" / "pred")
    with np.load(ai / "RECUR_002.npz") as data:
        probabilities = data["probabilities"].copy()
    probabilities[0, 5, 12, 11] = np.nan
    np.savez_compressed(bad / "RECUR_002.npz", probabilities=probabilities)
    compare("nan_probabilities", labels, f"AI={bad}", "non-finite", "--threshold", "0.5")

    bad = _copy(ai, root / "corrupt_npz" / "pred")
    truncate(bad / "RECUR_003.npz", 0.5)
    compare("corrupt_npz", labels, f"AI={bad}", "RECUR_003.npz", "--threshold", "0.5")

    # wrong grid ---------------------------------------------------------------------------------------
    bad = _copy(ai, root / "wrong_grid" / "pred")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ai / "RECUR_001.nii.gz")))
    write(array, bad / "RECUR_001.nii.gz", origin=(ORIGIN[0] + 3.0, ORIGIN[1], ORIGIN[2]))
    compare("wrong_grid", labels, f"AI={bad}", "geometry mismatch")

    # duplicate ids ------------------------------------------------------------------------------------
    bad = _copy(labels, root / "duplicate_label_ids" / "labels")
    shutil.copy(bad / "RECUR_001.nii.gz", bad / "recur_001.nii.gz")
    compare("duplicate_label_ids", bad, f"AI={ai}", "differ only in letter case")

    bad = _copy(ai, root / "duplicate_prediction_ids" / "pred")
    shutil.copy(bad / "RECUR_001.nii.gz", bad / "recur_001.nii.gz")
    compare("duplicate_prediction_ids", labels, f"AI={bad}", "differ only in letter case")

    # a probability map saved as NIfTI, no --threshold -----------------------------------------------------
    bad = root / "probability_nifti" / "pred"
    for case in CASES:
        with np.load(ai / f"{case}.npz") as data:
            write(data["probabilities"][0], bad / f"{case}.nii.gz")
    compare("probability_nifti", labels, f"AI={bad}", "probability map")

    # SUVmax <= 0 and NaN PET: the case fails, the batch records it (exit 1), nothing whole-FOV --------------
    for name, value in (("suvmax_zero", 0.0), ("pet_nan", np.nan)):
        pet_dir = _copy(images, root / name / "images")
        pet = sitk.GetArrayFromImage(sitk.ReadImage(str(images / "RECUR_002_0001.nii.gz")))
        gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / "RECUR_002_gtv.nii.gz")))
        if np.isnan(value):
            pet[5, 10, 10] = value
        else:
            pet[gtv != 0] = value
            pet[pet > 0] = 0.0  # no uptake anywhere: SUVmax in the GTV is 0
        write(pet, pet_dir / "RECUR_002_0001.nii.gz")
        common = ["--images", str(pet_dir), "--masks", str(masks)]
        out = root / name / "suvmax"
        scenarios.append(
            Scenario(
                f"{name}_predict",
                ["suvmax-predict", "--percent", "38", *common, "--out", str(out)],
                1,
                "RECUR_002",
                str(out),
            )  # fmt: skip
        )
        out = root / name / "sweep"
        scenarios.append(
            Scenario(
                f"{name}_sweep",
                ["suvmax-sweep", *common, "--gt", str(labels), "--all-cases", "--out", str(out)],
                1,
                "RECUR_002",
                str(out),
            )  # fmt: skip
        )

    # broken best.json, bad percent, sweep without a case choice -----------------------------------------
    for name, text in (
        ("best_without_percent", '{"mean_dice": 0.4}'),
        ("best_invalid_json", '{"percent": 3'),
    ):
        best = root / name / "best.json"
        best.parent.mkdir(parents=True)
        best.write_text(text)
        out = root / name / "suvmax"
        args = ["suvmax-predict", "--best", str(best), "--images", str(images), "--masks", str(masks)]
        scenarios.append(
            Scenario(name, [*args, "--out", str(out)], 2, str(best), str(out), "suvmax_predict.json")
        )
    # Each scenario spells out its whole command line (alike in shape to the next one): a failing scenario
    # then reads as the command a user would type.
    out = root / "percent_zero" / "suvmax"
    args = [
        "suvmax-predict",
        "--percent",
        "0",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--out",
        str(out),
    ]
    scenarios.append(Scenario("percent_zero", args, 2, "percent 0", str(out), "suvmax_predict.json"))
    # spelled out like percent_zero's command above, on purpose (see the note there)
    out = root / "sweep_without_case_choice" / "sweep"
    args = [
        "suvmax-sweep",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--gt",
        str(labels),
        "--out",
        str(out),
    ]
    scenarios.append(Scenario("sweep_without_case_choice", args, 2, "--all-cases", str(out), "best.json"))
    out = root / "out_is_a_file" / "report"
    out.parent.mkdir(parents=True)
    out.write_text("a file where the report folder should go")
    args = ["compare", "--gt", str(labels), "--pred", f"AI={ai}", "--out", str(out)]
    scenarios.append(Scenario("out_is_a_file", args, 2, "cannot create the report folder", str(out)))
    return scenarios


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/hostile_eval_corpus.py OUT", file=sys.stderr)
        return 2
    root = Path(argv[0])
    if root.exists() and any(root.iterdir()):
        print(f"error: {root} is not empty", file=sys.stderr)
        return 2
    scenarios = build_corpus(root)
    (root / "manifest.json").write_text(json.dumps([asdict(s) for s in scenarios], indent=2) + "\n")
    print(f"{len(scenarios)} scenarios in {root / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
