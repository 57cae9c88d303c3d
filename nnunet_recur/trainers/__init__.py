"""The paper's network, nnU-Net trainers, plans and environment (``recur plan``, ``recur env``).

Importing this package imports nothing heavy: the network (torch only) and the nnU-Net trainer classes are
loaded on first attribute access (``nnunet_recur.trainers.RecurUNet``, ``...nnUNetTrainerRecur``), so tools
that only build the network (benchmarks, the device machine) do not need nnunetv2, and ``recur --help`` does
not pay for torch.
"""

from __future__ import annotations

__all__ = ["RecurUNet"]


def __getattr__(name: str):
    if name == "RecurUNet":
        from nnunet_recur.trainers.network import RecurUNet

        return RecurUNet
    if name.startswith("nnUNetTrainerRecur"):
        from nnunet_recur.trainers import variants

        if name in variants.__all__:
            return getattr(variants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
