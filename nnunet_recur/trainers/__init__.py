"""The paper's network, nnU-Net trainers, plans and environment (``recur plan``, ``recur env``).

Importing this package needs torch only: the network is imported here, the nnU-Net trainer classes lazily on
first attribute access (``nnunet_recur.trainers.nnUNetTrainerRecur``), so tools that only build the network
(benchmarks, the device machine) do not need nnunetv2.
"""

from __future__ import annotations

from nnunet_recur.trainers.network import RecurUNet

__all__ = ["RecurUNet"]


def __getattr__(name: str):
    if name.startswith("nnUNetTrainerRecur"):
        from nnunet_recur.trainers import variants

        if name in variants.__all__:
            return getattr(variants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
