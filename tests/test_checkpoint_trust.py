"""Checkpoint trust: `-pretrained_weights` files are loaded with torch.load(weights_only=True), so a hostile
pickle cannot run code, while an nnU-Net-shaped checkpoint (numpy scalars in its log) still loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_recur.trainers.checkpoints import load_pretrained_weights_on_cpu


class _Payload:
    """Unpickling this calls a function: what a hostile checkpoint does."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['RECUR_PWNED']).touch()",))


def _nnunet_like(network: nn.Module, **extra) -> dict:
    return {
        "network_weights": network.state_dict(),
        "logging": {"train_losses": [np.float64(0.5), np.float32(0.25)]},
        "_best_ema": np.float64(0.3),
        "current_epoch": 3,
        "init_args": {
            "plans": {"a": [1, 2]},
            "configuration": "3d_fullres",
            "fold": 0,
            "device": torch.device("cpu"),
        },
        "trainer_name": "nnUNetTrainerRecur",
        "inference_allowed_mirroring_axes": (0, 1, 2),
        **extra,
    }


def test_nnunet_shaped_checkpoint_loads(tmp_path):
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    torch.save(_nnunet_like(source), tmp_path / "ok.pth")
    load_pretrained_weights_on_cpu(target, str(tmp_path / "ok.pth"))
    assert torch.equal(target.weight, source.weight)


def test_hostile_checkpoint_is_refused_without_running_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RECUR_PWNED", str(marker))
    torch.save(_nnunet_like(nn.Linear(3, 2), payload=_Payload()), tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="trusted source"):
        load_pretrained_weights_on_cpu(nn.Linear(3, 2), str(tmp_path / "evil.pth"))
    assert not marker.exists()
