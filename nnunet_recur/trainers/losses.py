"""The paper's loss and validation metric (torch only).

Loss: MONAI ``DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)`` - a soft Dice on the
sigmoid output whose sums run over the batch *and* the voxels, one value per output channel, averaged over
channels: ``1 - (2 * sum(p * t) + smooth_nr) / (sum(p) + sum(t) + smooth_dr)``. Written out here so training
needs no MONAI (the tests compare it with MONAI on random tensors).
"""

from __future__ import annotations

import torch
from torch import nn

PAPER_DICE_SMOOTH = 1e-5


class SigmoidSoftDiceLoss(nn.Module):
    """Soft Dice loss on ``sigmoid(logits)`` with MONAI's batch-Dice semantics (see module docstring)."""

    def __init__(
        self, smooth_nr: float = PAPER_DICE_SMOOTH, smooth_dr: float = PAPER_DICE_SMOOTH, batch: bool = True
    ):
        super().__init__()
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr
        self.batch = batch

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
        probabilities = torch.sigmoid(logits.float())
        target = target.float()
        axes = [0, *range(2, logits.ndim)] if self.batch else list(range(2, logits.ndim))
        intersection = (probabilities * target).sum(dim=axes)
        denominator = probabilities.sum(dim=axes) + target.sum(dim=axes)
        dice = (2.0 * intersection + self.smooth_nr) / (denominator + self.smooth_dr)
        return (1.0 - dice).mean()


def hard_dice(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """Dice of two binary masks; 1.0 when both are empty (nothing to find, nothing found)."""
    prediction = prediction.bool()
    reference = reference.bool()
    denominator = int(prediction.sum()) + int(reference.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int((prediction & reference).sum()) / denominator
