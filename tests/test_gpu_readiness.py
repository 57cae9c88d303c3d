"""CUDA-only paths exercised on the CPU as far as torch allows.

On CUDA, nnU-Net compiles the network (``nnUNetTrainer._do_i_compile``: on unless ``nnUNet_compile`` says
otherwise) and our trainer hands that compiled module to ``nnUNetPredictor`` for whole-volume validation
under ``torch.inference_mode`` after every epoch, then trains again. Here the same alternation runs on the CPU
with inductor (it needs a C compiler): training steps on one shape, whole-volume validations of another shape
through nnU-Net's predictor, training again - no recompilation error, no graph break, and the compiled outputs
equal the eager ones. A tiny 2-level RecurUNet keeps inductor's compile time within the CI budget (same module
classes; the 4-level net compiles the same code ~3x longer).
"""

import shutil

import numpy as np
import pytest
import torch

from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss
from nnunet_recur.trainers.network import RecurUNet


def inductor_unavailable_reason() -> str | None:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("c++")
    if compiler is None:
        return "torch.compile's inductor needs a C compiler on the CPU; none (cc, gcc, c++) on PATH"
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as error:  # any inductor/toolchain failure is a reason to skip, printed
        return f"inductor does not work here: {type(error).__name__}: {error}"[:300]
    return None


def _predictor(network, patch):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from test_trainers_units import _fake_inputs

    from nnunet_recur.trainers.labels import sigmoid_region_labels
    from nnunet_recur.trainers.planning import recur_plans

    plans = recur_plans(*_fake_inputs())
    plans["configurations"]["3d_recur"]["patch_size"] = list(patch)
    manager = PlansManager(plans)
    dataset_json = sigmoid_region_labels(
        {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "relapse": [1]}}
    )
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    configuration = manager.get_configuration("3d_recur")
    predictor.manual_initialization(
        network, manager, configuration, None, dataset_json, "nnUNetTrainerRecur", None
    )
    return predictor


@pytest.mark.slow
def test_compiled_network_alternates_training_and_inference_mode_whole_volume_validation():
    reason = inductor_unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    network = RecurUNet(input_channels=2, num_classes=1, features_per_stage=(4, 8))
    compiled = torch.compile(network)  # what nnUNetTrainer.initialize does on CUDA
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    loss_fn = SigmoidSoftDiceLoss()
    batch = torch.randn(2, 2, 8, 16, 16)
    target = torch.rand(2, 1, 8, 16, 16) > 0.8
    patch = (8, 16, 16)
    volume = torch.randn(2, 8, 20, 12)  # a whole validation case of another shape: padded / windowed
    predictor = _predictor(compiled, patch)
    eager_predictor = _predictor(network, patch)

    losses, graphs_after_epoch = [], []
    for _ in range(3):
        compiled.train()
        optimizer.zero_grad(set_to_none=True)
        output = compiled(batch)
        with torch.no_grad():
            assert torch.allclose(output, network(batch), atol=1e-4)
        loss = loss_fn(output, target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        with torch.no_grad():  # the trainer's validate_whole_volumes; the predictor adds inference_mode
            logits = predictor.predict_sliding_window_return_logits(volume).float()
            expected = eager_predictor.predict_sliding_window_return_logits(volume).float()
        assert logits.shape == (1, 8, 20, 12)
        # the predictor accumulates in float16, so compare at half precision
        assert torch.allclose(logits, expected, atol=2e-2, rtol=1e-2)
        graphs_after_epoch.append(counters["stats"]["unique_graphs"])
    assert all(np.isfinite(losses)) and losses[0] != losses[1]
    # training and inference-mode graphs are compiled once each and then reused, not recompiled every epoch
    assert graphs_after_epoch[0] > 0 and graphs_after_epoch[1] == graphs_after_epoch[2], graphs_after_epoch
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert compiled.training is False  # the predictor left it in eval; the trainer's epoch start resets it


def test_gpu_epoch_script_smoke_mode_runs_on_cpu_and_writes_json_beside_its_table(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_epoch.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_epoch.json").read_text())
    assert [r["precision"] for r in report["paper_epoch"]] == ["fp32", "bf16"]
    assert all(r["epoch_s"] > 0 and r["peak_memory_mib"] > 0 for r in report["paper_epoch"])
    commands = report["stock_nnunet_train"]["dry_run"]
    assert any("nnUNetv2_train" in c and "-tr nnUNetTrainerRecur_2epochs" in c for c in commands)
    assert (tmp_path / "gpu_epoch.md").read_text().startswith("CPU")


def test_epoch_seconds_are_read_from_the_trainer_log(tmp_path, load_bench):
    module = load_bench("gpu_epoch")
    fold = tmp_path / "Dataset990_X" / f"{module.TRAINER}__nnUNetRecurPlans__3d_recur" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "training_log_2026_1_1.txt").write_text("Epoch time: 12.5 s\nfoo\nEpoch time: 3.25 s\n")
    assert module.epoch_seconds_from_log(tmp_path) == [12.5, 3.25]
    assert module.epoch_seconds_from_log(tmp_path / "missing") == []
