"""The paper's only augmentation: a left-right flip with a fixed probability.

nnU-Net's preprocessed arrays are (c, z, y, x) with our plans' identity transpose, and batchgeneratorsv2 hands
each sample to the transform as (c, z, y, x): x - the patient's left-right axis for axial CT - is the last
axis. (nnU-Net's own ``MirrorTransform`` flips each allowed axis with probability 0.5, which is why this
exists.) The class lives in a normal package module so it pickles by reference into data-augmentation worker
processes. Its draw comes from torch's global generator, which the trainers' loader seeds per batch from the
trainer's seed and the global batch number (:func:`nnunet_recur.trainers.sampling.batch_random_state`), so
forked workers do not repeat each other's decisions.
"""

from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

LEFT_RIGHT_AXIS = -1  # last axis of (c, z, y, x)
LEFT_RIGHT_SPATIAL_AXIS = 2  # the same axis counted over (z, y, x), as nnU-Net's mirror axes are
# torchio's RandomFlip(axes=('LR',)) on a bare 4-D tensor (the authors' scripts) assumes (C, W, H, D) with an
# identity affine (RAS), so 'LR' is the first spatial axis: index -3, i.e. z of the authors' (c, z, y, x)
# crop (checked with torchio 1.2.1).
TORCHIO_LR_AXIS_ON_BARE_TENSOR = -3


class AxisFlipTransform(BasicTransform):
    """Flip image and segmentation together along one array axis of (c, z, y, x) with probability
    ``probability``."""

    def __init__(self, probability: float, axis: int):
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"flip probability must lie in [0, 1], got {probability}")
        if axis not in (-1, -2, -3):
            raise ValueError(f"flip axis must be a spatial axis of (c, z, y, x): -1, -2 or -3, got {axis}")
        self.probability = probability
        self.axis = axis

    def get_parameters(self, **data_dict) -> dict:
        return {"flip": bool(torch.rand(1).item() < self.probability)}

    def _flip(self, tensor: torch.Tensor, flip: bool) -> torch.Tensor:
        return torch.flip(tensor, (self.axis,)) if flip else tensor

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        return self._flip(img, params["flip"])

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        return self._flip(segmentation, params["flip"])

    def _apply_to_regr_target(self, regression_target: torch.Tensor, **params) -> torch.Tensor:
        return self._flip(regression_target, params["flip"])


class LeftRightFlipTransform(AxisFlipTransform):
    """Flip image and segmentation together along x (left-right) with probability ``probability``."""

    def __init__(self, probability: float):
        super().__init__(probability, LEFT_RIGHT_AXIS)
