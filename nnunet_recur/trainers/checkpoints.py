"""Loading pre-trained weights on any machine, keeping every tensor that fits (torch only).

nnU-Net's ``load_pretrained_weights`` calls ``torch.load`` without ``map_location`` (a HECKTOR checkpoint
saved on a GPU then fails on a CPU-only machine: "Attempting to deserialize object on a CUDA device") and
always drops the ``.seg_layers.`` output head, even when its shape matches. The paper and the authors' code
load the full state: a GTVp model (1 sigmoid channel) fine-tunes into a relapse model (1 channel) with its
head. Here every key whose name and shape match is transferred; only an output head of another shape (HECKTOR
GTVp + GTVn, 2 channels) is dropped and stays freshly initialised. A missing key, or a shape mismatch outside
the head, means another architecture and is refused. What was transferred and what was re-initialised goes to
``log``: the trainers pass their ``print_to_log_file``, so it lands in nnU-Net's ``training_log_*.txt`` as
well as on stdout.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import torch
from torch import nn

HEAD_KEY_PARTS = (".seg_layers.",)  # the output head: the only part that may differ in shape


def unwrap_network(network: nn.Module) -> nn.Module:
    """The plain module behind DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    module = getattr(network, "module", network)
    return getattr(module, "_orig_mod", module)


def _layers(keys: list[str]) -> str:
    """Parameter keys as their layers, in order: ``encoder.stages.0.0.weight`` -> ``encoder.stages.0.0``."""
    return ", ".join(dict.fromkeys(key.rsplit(".", 1)[0] for key in keys)) or "none"


def load_pretrained_weights_on_cpu(
    network: nn.Module, fname: str, verbose: bool = False, log: Callable[..., None] = print
) -> dict:
    """Drop-in for nnU-Net's ``load_pretrained_weights`` (nnunetv2.run) that works without CUDA and keeps the
    head when it fits. Returns ``{"transferred": [...], "dropped": [...]}`` (key names); ``log`` receives the
    transfer report (which layers were loaded, which re-initialised; every tensor with ``verbose``)."""
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
    transferred, dropped = [], []
    for key, value in own.items():
        if key not in pretrained:
            raise ValueError(
                f"{fname}: key {key} is missing; the pre-trained network is not this architecture"
            )
        if tuple(pretrained[key].shape) == tuple(value.shape):
            transferred.append(key)
        elif any(part in key for part in HEAD_KEY_PARTS):
            dropped.append(key)
        else:
            raise ValueError(
                f"{fname}: {key} has shape {tuple(pretrained[key].shape)} there but {tuple(value.shape)} here"
            )
    own.update({key: pretrained[key] for key in transferred})
    module.load_state_dict(own)
    head = (
        f"output head dropped (other shape): {', '.join(dropped)}" if dropped else "output head transferred"
    )
    log(
        f"Loading pre-trained weights from {fname}: "
        f"{len(transferred)} of {len(own)} tensors transferred; {head}"
    )
    log(f"Layers loaded from the pre-trained weights: {_layers(transferred)}")
    log(f"Layers re-initialised (kept their fresh initialisation): {_layers(dropped)}")
    if verbose:
        for key in transferred:
            log("transferred", key, "shape", tuple(own[key].shape))
    return {"transferred": transferred, "dropped": dropped}
