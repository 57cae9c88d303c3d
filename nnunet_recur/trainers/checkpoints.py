"""Loading pre-trained weights on any machine (torch only).

nnU-Net's ``load_pretrained_weights`` calls ``torch.load`` without ``map_location``: a HECKTOR checkpoint
saved on a GPU then fails on a CPU-only machine ("Attempting to deserialize object on a CUDA device"). This is
the same transfer - every key except the ``.seg_layers.`` output head must match in name and shape - with the
tensors mapped to the CPU first; ``load_state_dict`` then copies them onto whatever device the network lives
on.
"""

from __future__ import annotations

import pickle

import torch
from torch import nn

SKIPPED_KEY_PARTS = (".seg_layers.",)


def unwrap_network(network: nn.Module) -> nn.Module:
    """The plain module behind DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    module = getattr(network, "module", network)
    return getattr(module, "_orig_mod", module)


def load_pretrained_weights_on_cpu(network: nn.Module, fname: str, verbose: bool = False) -> None:
    """Drop-in for nnU-Net's ``load_pretrained_weights`` (nnunetv2.run) that works without CUDA."""
    # A checkpoint is pickled code: unpickle tensors, plain values and the numpy scalars nnU-Net logs, nothing
    # else (weights_only=True), so a hostile -pretrained_weights file cannot run code (docs/conversion.md).
    import numpy as np

    numpy_scalars = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType, np.dtypes.Float32DType]
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            checkpoint = torch.load(fname, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{fname}: holds objects other than tensors and plain values; refusing to unpickle it "
            "(a checkpoint is code: use one from a trusted source, saved by nnU-Net)"
        ) from exc
    pretrained = checkpoint["network_weights"]
    module = unwrap_network(network)
    own = module.state_dict()
    for key, value in own.items():
        if any(part in key for part in SKIPPED_KEY_PARTS):
            continue
        if key not in pretrained:
            raise ValueError(
                f"{fname}: key {key} is missing; the pre-trained network is not this architecture"
            )
        if tuple(pretrained[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{fname}: {key} has shape {tuple(pretrained[key].shape)} there but {tuple(value.shape)} here"
            )
    transferred = {
        k: v for k, v in pretrained.items() if k in own and not any(part in k for part in SKIPPED_KEY_PARTS)
    }
    own.update(transferred)
    print(
        f"Loading pre-trained weights from {fname} "
        f"({len(transferred)} of {len(own)} tensors; output head kept)"
    )
    if verbose:
        for key, value in transferred.items():
            print(key, "shape", tuple(value.shape))
    module.load_state_dict(own)
