"""The paper's loss and validation metric.

Loss (paper II.F: MONAI's Dice loss, smoothing 1e-5; batch Dice from the authors' released scripts - MONAI's
default ``batch=False`` is per-sample): MONAI ``DiceLoss(sigmoid=True, batch=True,
smooth_nr=1e-5, smooth_dr=1e-5)``, i.e. ``1 - (2 * sum(p * t) + 1e-5) / (sum(p) + sum(t) + 1e-5)`` with ``p =
sigmoid(logits)``, the sums running over the batch *and* the voxels, one value per output channel, averaged
over channels. :class:`PaperDiceLoss` computes it with nnunetv2's
``MemoryEfficientSoftDiceLoss(apply_nonlin=sigmoid, batch_dice=True, do_bg=True, smooth=1e-5)``, plus 1
(nnU-Net returns ``-dice``; the constant changes no gradient, it only makes the logged value MONAI's). Under
DDP (``ddp=True``) nnU-Net gathers the per-sample sums of every rank before dividing, so two GPUs with one
case each compute the Dice of the global batch of 2, as one GPU with both would.

Edge cases (as MONAI): an empty target and an all-background prediction give a loss near 0 (the smoothing
makes 0/0 a Dice of 1); an empty target with predicted foreground gives a loss near 1; the sums run in
float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from torch import nn

PAPER_DICE_SMOOTH = 1e-5


class PaperDiceLoss(nn.Module):
    """MONAI-valued soft Dice on ``sigmoid(logits)`` through nnU-Net's DDP-aware Dice (module docstring)."""

    def __init__(self, batch_dice: bool = True, ddp: bool = False, smooth: float = PAPER_DICE_SMOOTH):
        super().__init__()
        self.dice = MemoryEfficientSoftDiceLoss(
            apply_nonlin=torch.sigmoid, batch_dice=batch_dice, do_bg=True, smooth=smooth, ddp=ddp
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(
            logits, list | tuple
        ):  # a deep-supervision list: the full-resolution output comes first
            logits = logits[0]
        if isinstance(target, list | tuple):
            target = target[0]
        if logits.shape != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have one shape"
            )
        return 1.0 + self.dice(logits, target)


# The name the benchmarks used before the loss moved onto nnU-Net's implementation.
SigmoidSoftDiceLoss = PaperDiceLoss


def hard_dice(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """Dice of two binary masks; 1.0 when both are empty (nothing to find, nothing found)."""
    prediction = prediction.bool()
    reference = reference.bool()
    denominator = int(prediction.sum()) + int(reference.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int((prediction & reference).sum()) / denominator
