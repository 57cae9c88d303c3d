"""Trainer variants over :class:`nnUNetTrainerRecur`, each named for what it changes.

nnU-Net finds them by class name (``nnUNetv2_train ... -tr NAME``) through the folder ``recur env`` exports as
``nnUNet_extTrainer``; that folder only re-exports this module.
"""

from __future__ import annotations

from nnunet_recur.trainers.augmentation import LEFT_RIGHT_SPATIAL_AXIS
from nnunet_recur.trainers.plain_unet import nnUNetTrainerRecurPlainConvUNet
from nnunet_recur.trainers.published_code import (
    nnUNetTrainerRecurPublishedCode,
    nnUNetTrainerRecurPublishedCode_shuffledValPairs,
    nnUNetTrainerRecurPublishedCodeFinetune,
    nnUNetTrainerRecurPublishedCodePretrain,
)
from nnunet_recur.trainers.recur_trainer import nnUNetTrainerRecur

__all__ = [
    "nnUNetTrainerRecur",
    "nnUNetTrainerRecurPretrain",
    "nnUNetTrainerRecurFinetune",
    "nnUNetTrainerRecurTTA",
    "nnUNetTrainerRecurMixedPrecision",
    "nnUNetTrainerRecurPublishedCode",
    "nnUNetTrainerRecurPublishedCodeFinetune",
    "nnUNetTrainerRecurPublishedCodePretrain",
    "nnUNetTrainerRecurPublishedCode_shuffledValPairs",
    "nnUNetTrainerRecurNnUNetAugmentation_lr1e3",
    "nnUNetTrainerRecurPlainConvUNet",
    "nnUNetTrainerRecur_2epochs",
    "nnUNetTrainerRecur_5epochs",
    "nnUNetTrainerRecur_10epochs",
    "nnUNetTrainerRecur_20epochs",
    "nnUNetTrainerRecur_50epochs",
    "nnUNetTrainerRecur_100epochs",
    "nnUNetTrainerRecurFinetune_2epochs",
    "nnUNetTrainerRecurFinetune_5epochs",
    "nnUNetTrainerRecurFinetune_10epochs",
    "nnUNetTrainerRecurFinetune_20epochs",
    "nnUNetTrainerRecurFinetune_50epochs",
    "nnUNetTrainerRecurFinetune_100epochs",
    "nnUNetTrainerRecurPretrain_2epochs",
    "nnUNetTrainerRecurPretrain_5epochs",
    "nnUNetTrainerRecurPretrain_10epochs",
    "nnUNetTrainerRecurPretrain_20epochs",
    "nnUNetTrainerRecur_shortPatience",
]


class nnUNetTrainerRecurPretrain(nnUNetTrainerRecur):
    """HECKTOR GTVp pre-training for "AI finetune": the same recipe, monitored on the validation *loss*
    (scheduler, early stopping, best checkpoint), as the authors' ``train_hecktor.py`` did."""

    monitor = "val_loss"


class nnUNetTrainerRecurFinetune(nnUNetTrainerRecur):
    """AI finetune: the same recipe as "AI random", started from the HECKTOR pre-trained weights
    (``-pretrained_weights``). Its own class so that the model gets its own results folder by name, and
    ``recur best-seed``, export and zip tools see two models, not one trainer under two nnUNet_results."""


class nnUNetTrainerRecurTTA(nnUNetTrainerRecur):
    """The paper's recipe with test-time augmentation: ``nnUNetv2_predict`` (without ``--disable_tta``)
    averages the prediction with its left-right mirror. The paper predicted with one forward pass: opt-in."""

    tta_mirror_axes = (LEFT_RIGHT_SPATIAL_AXIS,)


class nnUNetTrainerRecurMixedPrecision(nnUNetTrainerRecur):
    """The paper's recipe in mixed precision on CUDA: bf16 autocast where the GPU supports it (Ampere and
    later), else fp16 autocast with a GradScaler; no gradient clipping either way. Halves the activation
    memory (docs/trainers.md: which GPUs hold batch 2 at 128 x 224 x 160); the paper trained in fp32."""

    use_mixed_precision = True


class nnUNetTrainerRecurNnUNetAugmentation_lr1e3(nnUNetTrainerRecur):
    """nnU-Net's default augmentation (rotation, scaling, noise, blur, gamma, mirroring on all axes) and Adam
    lr 1e-3, for data on which lr 0.1 with flips only is unstable."""

    use_nnunet_augmentation = True
    recur_initial_lr = 1e-3


class nnUNetTrainerRecur_2epochs(nnUNetTrainerRecur):
    """Smoke runs and the demo: 2 epochs."""

    recur_max_epochs = 2


class nnUNetTrainerRecur_5epochs(nnUNetTrainerRecur):
    """Demo: 5 epochs."""

    recur_max_epochs = 5


class nnUNetTrainerRecur_10epochs(nnUNetTrainerRecur):
    """Demo: 10 epochs."""

    recur_max_epochs = 10


class nnUNetTrainerRecur_20epochs(nnUNetTrainerRecur):
    """Demo on a faster machine / learning check: 20 epochs."""

    recur_max_epochs = 20


class nnUNetTrainerRecur_50epochs(nnUNetTrainerRecur):
    """Learning check: 50 epochs (early stopping still applies)."""

    recur_max_epochs = 50


class nnUNetTrainerRecur_100epochs(nnUNetTrainerRecur):
    """Learning check: 100 epochs (early stopping still applies)."""

    recur_max_epochs = 100


class nnUNetTrainerRecurPretrain_2epochs(nnUNetTrainerRecurPretrain):
    """Smoke runs and the demo: 2 epochs of pre-training."""

    recur_max_epochs = 2


class nnUNetTrainerRecurPretrain_5epochs(nnUNetTrainerRecurPretrain):
    """Demo: 5 epochs of pre-training."""

    recur_max_epochs = 5


class nnUNetTrainerRecurPretrain_10epochs(nnUNetTrainerRecurPretrain):
    """Learning check: 10 epochs of pre-training."""

    recur_max_epochs = 10


class nnUNetTrainerRecurPretrain_20epochs(nnUNetTrainerRecurPretrain):
    """Learning check: 20 epochs of pre-training."""

    recur_max_epochs = 20


class nnUNetTrainerRecur_shortPatience(nnUNetTrainerRecur):
    """Tests and demos of the schedule on any data: lr cut after 2 epochs without improvement (patience 1),
    early stop after 3. An improvement must beat the best by more than 1.0 - impossible for a Dice - so every
    epoch after epoch 0 is a plateau epoch: lr 0.1 -> 0.005 after epoch 2, the run ends after epoch 3."""

    plateau_patience = 1
    early_stopping_patience = 3
    early_stopping_min_delta = 1.0
    recur_max_epochs = 12


class nnUNetTrainerRecurFinetune_2epochs(nnUNetTrainerRecurFinetune):
    """Smoke runs and the demo: 2 epochs of fine-tuning."""

    recur_max_epochs = 2


class nnUNetTrainerRecurFinetune_5epochs(nnUNetTrainerRecurFinetune):
    """Demo: 5 epochs of fine-tuning."""

    recur_max_epochs = 5


class nnUNetTrainerRecurFinetune_10epochs(nnUNetTrainerRecurFinetune):
    """Demo: 10 epochs of fine-tuning."""

    recur_max_epochs = 10


class nnUNetTrainerRecurFinetune_20epochs(nnUNetTrainerRecurFinetune):
    """Demo on a faster machine / learning check: 20 epochs of fine-tuning."""

    recur_max_epochs = 20


class nnUNetTrainerRecurFinetune_50epochs(nnUNetTrainerRecurFinetune):
    """Learning check: 50 epochs of fine-tuning (early stopping still applies)."""

    recur_max_epochs = 50


class nnUNetTrainerRecurFinetune_100epochs(nnUNetTrainerRecurFinetune):
    """Learning check: 100 epochs of fine-tuning (early stopping still applies)."""

    recur_max_epochs = 100
