"""The authors' released training scripts as trainer variants (``nnUNetTrainerRecurPublishedCode*``).

Where the released ``train-random.py`` / ``train-finetune.py`` / ``train_hecktor.py`` differ from the paper's
text, these variants follow the scripts (docs/trainers.md, "The authors' released code", lists every
difference and which ones are reproduced):

* network ``netgen.UNet(n_blocks=5)``: :class:`~nnunet_recur.trainers.network.PublishedCodeUNet`, 22,576,193
  parameters, 84 layers, four max-poolings. It reads the inputs the plans name (``input_channel_indices``):
  on a converter-made dataset CT and the patient-level z-scored PET, the scripts' two inputs, not the SUV
  channel too. The variant writes it into its copy of the plans (so the
  ``plans.json`` next to the model names it and ``nnUNetv2_predict`` rebuilds it) and rounds each patch axis
  up to a multiple of 16, the same rule ``recur plan`` applies with 8 for the 4-level net; the paper's 128 x
  224 x 160 is already a multiple of 16 and stays, a smaller patch grows and nnU-Net pads the case to it
  (loader and predictor alike). The preprocessed data are shared with the paper trainer.
* no lr scheduler; torchio ``RandomFlip(axes=('LR',), flip_probability=0.001)`` applied to the bare (c, z, y,
  x) crop, which flips axis -3 (z), not left-right (:data:`TORCHIO_LR_AXIS_ON_BARE_TENSOR`);
* early stopping patience 40 with a minimum improvement of 1e-4;
* opt-in (``..._shuffledValPairs``): the validation Dice and loss of a ``DataLoader(batch_size=2,
  shuffle=True)``, i.e. pooled over random pairs of validation cases, re-drawn every epoch, then averaged over
  the pairs (:func:`shuffled_pair_scores`).
"""

from __future__ import annotations

import math
from copy import deepcopy

import numpy as np
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_recur.trainers.augmentation import (
    TORCHIO_LR_AXIS_ON_BARE_TENSOR,
    AxisFlipTransform,
    LeftRightFlipTransform,
)
from nnunet_recur.trainers.network import PUBLISHED_CODE_FEATURES_PER_STAGE
from nnunet_recur.trainers.recur_trainer import nnUNetTrainerRecur

PUBLISHED_CODE_NETWORK = "nnunet_recur.trainers.network.PublishedCodeUNet"
PUBLISHED_CODE_PATCH_DIVISOR = 2 ** (len(PUBLISHED_CODE_FEATURES_PER_STAGE) - 1)  # 16: four poolings
PUBLISHED_CODE_FLIP_SPATIAL_AXIS = 3 + TORCHIO_LR_AXIS_ON_BARE_TENSOR  # z, counted over (z, y, x)
PAIR_DICE_SMOOTH = 1e-5  # MONAI DiceLoss(smooth_nr=smooth_dr=1e-5), as the scripts' criterion


def published_code_plans(plans: dict, configuration: str) -> dict:
    """A copy of ``plans`` whose ``configuration`` builds PublishedCodeUNet at a patch divisible by 16,
    reading the same input channels as the plans' network."""
    plans = deepcopy(plans)
    config = plans["configurations"][configuration]
    divisor = PUBLISHED_CODE_PATCH_DIVISOR
    config["patch_size"] = [int(divisor * math.ceil(int(size) / divisor)) for size in config["patch_size"]]
    arch_kwargs = {"features_per_stage": list(PUBLISHED_CODE_FEATURES_PER_STAGE)}
    inputs = config.get("architecture", {}).get("arch_kwargs", {}).get("input_channel_indices")
    if inputs is not None:  # the channels `recur plan` chose (CT + patient-level PET), as the scripts' two
        arch_kwargs["input_channel_indices"] = list(inputs)
    config["architecture"] = {
        "network_class_name": PUBLISHED_CODE_NETWORK,
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": [],
    }
    return plans


def shuffled_pair_scores(
    case_sums: list[dict], rng: np.random.Generator, smooth: float = PAIR_DICE_SMOOTH
) -> dict:
    """Validation Dice and Dice loss as the released scripts compute them: cases in a random order, batched in
    pairs (the last alone when the count is odd), each pair scored as one pooled volume, mean over pairs.

    ``case_sums``: per case ``{"overlap", "predicted", "reference"}`` (voxel counts of the thresholded
    prediction) and ``{"soft_overlap", "soft_predicted"}`` (sums of the sigmoid probabilities); all additive,
    so a pair's pooled score needs no second forward pass. Hard Dice of a pair is ``2 * overlap / (predicted +
    reference)`` and 1.0 when both are empty (``utils.calculate_dice``); the loss is MONAI's ``DiceLoss(
    sigmoid=True, batch=True)`` on the pair. No cases: NaN for both.
    """
    if not case_sums:
        return {"dice": float("nan"), "loss": float("nan")}
    order = rng.permutation(len(case_sums))
    dices, losses = [], []
    for start in range(0, len(order), 2):
        pair = [case_sums[i] for i in order[start : start + 2]]
        overlap = sum(c["overlap"] for c in pair)
        total = sum(c["predicted"] + c["reference"] for c in pair)
        dices.append(1.0 if total == 0 else 2.0 * overlap / total)
        soft_overlap = sum(c["soft_overlap"] for c in pair)
        soft_total = sum(c["soft_predicted"] + c["reference"] for c in pair)
        losses.append(1.0 - (2.0 * soft_overlap + smooth) / (soft_total + smooth))
    return {"dice": float(np.mean(dices)), "loss": float(np.mean(losses))}


class nnUNetTrainerRecurPublishedCode(nnUNetTrainerRecur):
    """The authors' ``train-random.py`` where it differs from the paper's text: the 5-level net, no lr
    scheduler, flip p = 0.001 along z (torchio 'LR' on a bare tensor), early stopping patience 40 with a
    minimum improvement of 1e-4 (``EarlyStoppingMetric(delta=1e-4)``)."""

    use_plateau_scheduler = False
    flip_probability = 0.001
    flip_axis = TORCHIO_LR_AXIS_ON_BARE_TENSOR
    early_stopping_patience = 40
    early_stopping_min_delta = 1e-4
    validation_on_shuffled_pairs = False

    # nnU-Net's trainer signature, the same as nnUNetTrainerRecur.__init__ on purpose: nnUNetTrainer.__init__
    # records its arguments by inspect.signature(self.__init__) (my_init_kwargs, saved in checkpoints), so a
    # variant that changes the plans restates it (as nnU-Net's own variants do) instead of *args/**kwargs.
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 - nnU-Net's signature
    ):
        plans = published_code_plans(plans, configuration)
        super().__init__(plans, configuration, fold, dataset_json, device)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, patch_size, mirror_axes = (
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        )
        if not self.use_nnunet_augmentation and self.inference_allowed_mirroring_axes is not None:
            # opt-in test-time mirroring follows the training flip: z
            self.inference_allowed_mirroring_axes = (PUBLISHED_CODE_FLIP_SPATIAL_AXIS,)
        return rotation, dummy_2d, patch_size, mirror_axes

    def get_training_transforms(self, *args, **kwargs):
        transforms = super().get_training_transforms(*args, **kwargs)
        if self.use_nnunet_augmentation:
            return transforms
        return ComposeTransforms(
            [
                AxisFlipTransform(t.probability, self.flip_axis)
                if isinstance(t, LeftRightFlipTransform)
                else t
                for t in transforms.transforms
            ]
        )

    @torch.no_grad()
    def validate_whole_volumes(self) -> dict:
        if not self.validation_on_shuffled_pairs:
            return super().validate_whole_volumes()
        case_sums = []
        for _, logits, target in self.validation_cases():
            probabilities = torch.sigmoid(logits)
            predicted = logits > 0
            case_sums.append(
                {
                    "overlap": int((predicted & target).sum()),
                    "predicted": int(predicted.sum()),
                    "reference": int(target.sum()),
                    "soft_overlap": float((probabilities * target).sum()),
                    "soft_predicted": float(probabilities.sum()),
                }
            )
        # a fresh pairing every epoch, reproducible from the seed and the epoch (also after --c)
        rng = np.random.default_rng([self.seed, self.current_epoch])
        return shuffled_pair_scores(case_sums, rng)


class nnUNetTrainerRecurPublishedCodeFinetune(nnUNetTrainerRecurPublishedCode):
    """The authors' ``train-finetune.py``: the published-code settings with lr 0.01."""

    recur_initial_lr = 0.01


class nnUNetTrainerRecurPublishedCodePretrain(nnUNetTrainerRecurPublishedCode):
    """What ``train_hecktor.py`` meant: the published-code settings, early stopping on the validation *loss*.
    The script calls ``EarlyStopping(patience=40, delta=1e-4)`` with the validation loss, a class ``utils.py``
    does not define (it stops with a NameError before the first epoch); ``utils.EarlyStoppingLoss`` has that
    signature and is what this variant assumes."""

    monitor = "val_loss"


class nnUNetTrainerRecurPublishedCode_shuffledValPairs(nnUNetTrainerRecurPublishedCode):
    """The published code including its validation Dice on shuffled pairs (opt-in; see the module docs)."""

    validation_on_shuffled_pairs = True
