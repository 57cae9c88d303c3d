"""The whole-case loader and the data-pipeline benchmark (smoke mode, so the script cannot rot)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def preprocessed(tmp_path, monkeypatch, load_bench):
    """Four blosc2 cases of 16 x 32 x 32, written by nnU-Net's own save_case, and a label manager."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    bench = load_bench("data_pipeline")
    name = bench.write_preprocessed_dataset(tmp_path, (16, 32, 32), 4)
    folder = tmp_path / name
    plans = PlansManager(json.loads((folder / "nnUNetRecurPlans.json").read_text()))
    from nnunet_recur.trainers.labels import sigmoid_region_labels

    labels = plans.get_label_manager(sigmoid_region_labels(json.loads((folder / "dataset.json").read_text())))
    dataset = nnUNetDatasetBlosc2(str(folder / "nnUNetRecurPlans_3d_recur"))
    return dataset, labels


def test_whole_case_loader_returns_every_drawn_case_whole_and_unshifted(preprocessed):
    from nnunet_recur.trainers.whole_case_loader import WholeCaseDataLoader

    dataset, labels = preprocessed
    patch = [16, 32, 32]
    # oversampling on for every sample: nnU-Net's loader would centre a crop on a foreground voxel
    loader = WholeCaseDataLoader(dataset, 2, patch, patch, labels, oversample_foreground_percent=1.0)
    for _ in range(6):
        batch = next(loader)
        assert batch["data"].shape == (2, 2, 16, 32, 32)
        for j, key in enumerate(batch["keys"]):
            data, seg, _, _ = dataset.load_case(key)
            assert torch.equal(batch["data"][j], torch.from_numpy(np.asarray(data[:])))
            assert torch.equal(batch["target"][j], torch.from_numpy(np.asarray(seg[:], dtype=np.int16)))


def test_whole_case_loader_crops_like_nnunet_when_the_case_differs_from_the_patch(preprocessed):
    from nnunet_recur.trainers.whole_case_loader import WholeCaseDataLoader

    dataset, labels = preprocessed
    loader = WholeCaseDataLoader(dataset, 2, [16, 16, 16], [16, 16, 16], labels)
    batch = next(loader)
    assert batch["data"].shape == (2, 2, 16, 16, 16) and batch["target"].shape == (2, 1, 16, 16, 16)


@pytest.mark.slow
def test_data_pipeline_bench_smoke_writes_its_table_and_json(tmp_path):
    out = tmp_path / "pipeline.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "data_pipeline.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "batches/s per core" in result.stdout
    report = json.loads(out.read_text())
    loaders = [r["loader"] for r in report["rows"]]
    assert [name.split(" ")[0] for name in loaders] == ["nnU-Net", "nnU-Net", "whole-case", "decompress"]
    assert "deduplicated" in loaders[1] and "deduplicated" in loaders[2]
    assert all(r["batches_per_s_per_core"] > 0 for r in report["rows"])
    assert report["setting"]["train_step_tflop"] > 0
