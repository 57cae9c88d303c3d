"""A tiny 2-site federation for the federated training tests: one raw dataset planned once with `recur plan`
(central plans), its preprocessed cases split into two site folders, each with its own fold-0 split.

Shapes and case counts are the smallest that train through nnU-Net (see tests/test_trainers_nnunet.py)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from nnunet_env import tiny_nnunet_env

BIN = Path(sys.executable).parent
DATASET_ID = 993
DATASET = f"Dataset{DATASET_ID}_FedTiny"
SITES = {"SITE_A": ["FED_001", "FED_002", "FED_003"], "SITE_B": ["FED_004", "FED_005"]}
TEST_CASES = ["FED_006"]


def base_env(root: Path) -> dict:
    """The tests' tiny nnU-Net environment with one thread per site (bench/federated_compare.py uses it)."""
    return tiny_nnunet_env(root, threads=1)


def build(root: Path) -> dict:
    """Raw dataset + central plans + two site folders; returns paths and the environment."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_trainers_nnunet import write_dataset  # the same tiny CT/PET blobs

    root = Path(root)
    env = base_env(root)
    n_train = sum(len(c) for c in SITES.values())
    cases = write_dataset(
        root / "raw", DATASET, "relapse", "FED", n_train, len(TEST_CASES), (16, 24, 24), seed=3
    )
    assert cases == [c for site in SITES.values() for c in site]
    pre = root / "preprocessed" / DATASET
    pre.mkdir(parents=True, exist_ok=True)
    (pre / "splits_final.json").write_text(json.dumps([{"train": cases[:-2], "val": cases[-2:]}] * 5))
    for line in subprocess.run(
        [str(BIN / "recur"), "env"], env=env, capture_output=True, text=True
    ).stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0]
    done = subprocess.run(
        [str(BIN / "recur"), "plan", str(DATASET_ID)], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = pre / "nnUNetRecurPlans_3d_recur"
    sites = {}
    for site, site_cases in SITES.items():
        folder = root / "sites" / site
        (folder / data.name).mkdir(parents=True)
        for name in ("nnUNetRecurPlans.json", "dataset.json", "dataset_fingerprint.json"):
            shutil.copy(pre / name, folder / name)
        for case in site_cases:
            for path in data.glob(f"{case}*"):
                shutil.copy(path, folder / data.name / path.name)
        split = {"train": site_cases[:-1], "val": site_cases[-1:]}
        (folder / "splits_final.json").write_text(json.dumps([split] * 5))
        sites[site] = folder
    return {
        "root": root,
        "env": env,
        "plans": pre / "nnUNetRecurPlans.json",
        "dataset_json": root / "raw" / DATASET / "dataset.json",
        "sites": sites,
        "images_ts": root / "raw" / DATASET / "imagesTs",
        "labels_ts": root / "raw" / DATASET / "labelsTs",
    }
