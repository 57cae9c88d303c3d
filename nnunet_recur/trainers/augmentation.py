"""The paper's only augmentation: a left-right flip with a fixed probability.

nnU-Net's preprocessed arrays are (c, z, y, x) with our plans' identity transpose, and batchgeneratorsv2 hands
each sample to the transform as (c, z, y, x): x - the patient's left-right axis for axial CT - is the last
axis. (nnU-Net's own ``MirrorTransform`` flips each allowed axis with probability 0.5, which is why this
exists.) The class lives in a normal package module so it pickles by reference into data-augmentation worker
processes.
"""

from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

LEFT_RIGHT_AXIS = -1  # last axis of (c, z, y, x)
LEFT_RIGHT_SPATIAL_AXIS = 2  # the same axis counted over (z, y, x), as nnU-Net's mirror axes are


class LeftRightFlipTransform(BasicTransform):
    """Flip image and segmentation together along x with probability ``probability``."""

    def __init__(self, probability: float):
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"flip probability must lie in [0, 1], got {probability}")
        self.probability = probability

    def get_parameters(self, **data_dict) -> dict:
        return {"flip": bool(torch.rand(1).item() < self.probability)}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        return torch.flip(img, (LEFT_RIGHT_AXIS,)) if params["flip"] else img

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        return torch.flip(segmentation, (LEFT_RIGHT_AXIS,)) if params["flip"] else segmentation

    def _apply_to_regr_target(self, regression_target: torch.Tensor, **params) -> torch.Tensor:
        return torch.flip(regression_target, (LEFT_RIGHT_AXIS,)) if params["flip"] else regression_target
