"""nnUNetTrainerRecur: the paper's training recipe ("AI random", Kutnar et al. 2023, II.E-F) for nnU-Net v2.

What it changes against nnU-Net's default trainer, and why:

* Network: whatever the plans name - ``recur plan`` writes :class:`~nnunet_recur.trainers.network.RecurUNet`.
  No deep supervision (the paper's net has one output).
* Optimiser: Adam (beta 0.9/0.999, eps 1e-8, no weight decay), lr 0.1; ``ReduceLROnPlateau`` on the validation
  metric (factor 0.05, patience 10 epochs: PyTorch cuts on the 11th epoch without improvement, the paper
  says "following ten") instead of nnU-Net's poly schedule stepped at every epoch start.
* Labels: one sigmoid channel per foreground label (``{"relapse": [1]}`` is read as the region ``[1, 1]``, see
  :mod:`nnunet_recur.trainers.labels`), so probability files have one channel.
* Loss: soft Dice on the sigmoid output, smoothing 1e-5 (the paper: MONAI's Dice loss), batch Dice (the
  authors' released scripts, MONAI ``DiceLoss(sigmoid=True, batch=True)``; MONAI's default is per-sample),
  computed by nnU-Net's ``MemoryEfficientSoftDiceLoss`` so that DDP ranks share one Dice.
* Augmentation: a left-right flip with p = 0.1 and nothing else (no rotation/scaling, so the data loader crops
  the final patch directly). No test-time augmentation: ``inference_allowed_mirroring_axes`` is None, so
  ``nnUNetv2_predict`` does one forward pass on CPU and GPU alike (``nnUNetTrainerRecurTTA`` opts in).
* Precision: plain fp32, no gradient clipping, no GradScaler (nnU-Net: fp16 autocast + GradScaler + clipping
  at norm 12 on CUDA); ``nnUNetTrainerRecurMixedPrecision`` opts in to bf16 (fp16 + GradScaler without bf16).
* Epoch: every training case once, in a new random order (one permutation per epoch, no foreground
  oversampling, the whole case when the patch covers it: :mod:`nnunet_recur.trainers.sampling`),
  ceil(n_train / global batch) iterations; then every validation case once, whole volume (sliding window; one
  window when the patch covers the crop). The validation metric is the mean Dice over those cases - not
  nnU-Net's EMA pseudo-Dice.
* Early stopping after 60 epochs without improvement (max 1000 epochs); ``checkpoint_best.pth`` by that
  metric; ``checkpoint_final.pth`` holds the best-validation weights, since the paper kept the best epoch and
  the stock predictor loads ``checkpoint_final.pth``.
* ``--c`` resumes with the plateau scheduler and early-stopping state (nnU-Net does not save a scheduler):
  they travel in every checkpoint under ``recur_state``; ``checkpoint_latest.pth`` is written every epoch.
* Seed: ``RECUR_SEED`` if set, else the fold number - with the converter's 5 identical folds, folds 0-4 are
  the paper's 5 seeds on one split ("train 5, keep the best on validation", see
  :mod:`nnunet_recur.trainers.seeds`).
* ``-pretrained_weights`` loads with ``map_location='cpu'`` so a GPU checkpoint fine-tunes on a CPU machine.

Variants (a few lines each) live in :mod:`nnunet_recur.trainers.variants`.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import warnings
from pathlib import Path
from time import time

import numpy as np
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import isfile, join
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from torch import distributed as dist

from nnunet_recur.atomic_io import atomic_path
from nnunet_recur.trainers.augmentation import LEFT_RIGHT_SPATIAL_AXIS, LeftRightFlipTransform
from nnunet_recur.trainers.checkpoints import load_pretrained_weights_on_cpu, unwrap_network
from nnunet_recur.trainers.compat import check_nnunetv2_version
from nnunet_recur.trainers.labels import sigmoid_region_labels
from nnunet_recur.trainers.losses import PaperDiceLoss, hard_dice
from nnunet_recur.trainers.sampling import WholeCaseEpochPermutationDataLoader, iterations_per_epoch
from nnunet_recur.trainers.seeds import BEST_FILE, write_json_atomically
from nnunet_recur.trainers.whole_case_loader import deduplicated_regions

check_nnunetv2_version()  # refuse at import: the overrides below are written against nnunetv2 2.8.x

SEED_ENV_VAR = "RECUR_SEED"
RECUR_STATE_KEY = "recur_state"
MONITOR_MODES = {"val_dice": "max", "val_loss": "min"}


SEED_FOLDS = range(5)  # the converter's 5 identical folds: fold k is "seed k"


def training_seed(fold: int | str) -> int:
    """``RECUR_SEED`` when set, else the fold number (0 for fold 'all').

    ``RECUR_SEED`` with one of the seed folds 0-4 warns: every fold would then train with the same seed, and
    "five seeds, keep the best" would compare five copies of one run.
    """
    value = os.environ.get(SEED_ENV_VAR)
    if value is not None and value.strip():
        try:
            seed = int(value)
        except ValueError as error:
            raise ValueError(f"{SEED_ENV_VAR} must be an integer, got {value!r}") from error
        if str(fold).isdigit() and int(fold) in SEED_FOLDS:
            warnings.warn(
                f"{SEED_ENV_VAR}={seed} overrides the seed of fold {fold}: folds 0-4 are the paper's five "
                f"seeds and would all train with seed {seed}; unset {SEED_ENV_VAR} to seed each fold by its "
                "number",
                UserWarning,
                stacklevel=2,
            )
        return seed
    return int(fold) if str(fold).isdigit() else 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def install_cpu_safe_pretrained_loader(log=print) -> None:
    """Make ``nnUNetv2_train -pretrained_weights`` map checkpoints to the CPU before loading, and report the
    transfer through ``log`` (the trainer's ``print_to_log_file``: nnU-Net's training log and stdout).

    ``nnunetv2.run.run_training.maybe_load_checkpoint`` calls its module-level ``load_pretrained_weights``
    right after ``trainer.initialize()``; swapping that name for our map_location='cpu' twin is the one hook
    there is. The installed function's ``__wrapped__`` is :func:`load_pretrained_weights_on_cpu`.
    """
    module = sys.modules.get("nnunetv2.run.run_training")
    if module is None:
        return

    def load_pretrained_weights(network, fname, verbose=False):
        return load_pretrained_weights_on_cpu(network, fname, verbose, log=log)

    load_pretrained_weights.__wrapped__ = load_pretrained_weights_on_cpu
    module.load_pretrained_weights = load_pretrained_weights


class nnUNetTrainerRecur(nnUNetTrainer):
    """The paper's "AI random" recipe (see the module docstring). Variants override the class attributes."""

    recur_initial_lr: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    recur_max_epochs: int = 1000
    use_plateau_scheduler: bool = True
    plateau_factor: float = 0.05
    plateau_patience: int = 10
    early_stopping_patience: int = 60
    early_stopping_min_delta: float = 0.0
    monitor: str = "val_dice"  # or "val_loss"; drives the scheduler, early stopping and checkpoint_best
    flip_probability: float = 0.1
    use_nnunet_augmentation: bool = False
    tta_mirror_axes: tuple[int, ...] | None = None  # test-time mirroring axes (z, y, x); None: one pass
    use_mixed_precision: bool = (
        False  # fp32 as the paper; True: bf16 autocast (fp16 + GradScaler without bf16)
    )
    progress_plot_every: int = 10  # progress.png is a 3000x5400 px figure: ~1 s of CPU per drawing

    # nnU-Net's trainer signature, restated by PublishedCode too (nnUNetTrainer.__init__ records its
    # arguments by inspect.signature(self.__init__), so a variant cannot take *args/**kwargs).
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 - nnU-Net's signature
    ):
        # One sigmoid channel per label (see labels.py): nnU-Net 2.8 reads {"relapse": [1]} as softmax labels.
        super().__init__(plans, configuration, fold, sigmoid_region_labels(dataset_json), device)
        if self.monitor not in MONITOR_MODES:
            raise ValueError(f"{type(self).__name__}.monitor must be one of {sorted(MONITOR_MODES)}")
        self.initial_lr = self.recur_initial_lr
        self.weight_decay = 0.0
        self.num_epochs = self.recur_max_epochs
        self.enable_deep_supervision = False
        self.num_val_iterations_per_epoch = 0  # replaced by whole-volume validation
        self.oversample_foreground_percent = 0.0  # the whole case, as the paper (see sampling.py)
        self.autocast_dtype = self._autocast_dtype()
        if (
            self.autocast_dtype != torch.float16
        ):  # nnU-Net builds a GradScaler on CUDA; fp32 and bf16 need none
            self.grad_scaler = None
        self.seed = training_seed(fold)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self._validation_dataset = None
        self._validation_predictor = None
        self._validation_loss = None

    # ----------------------------------------------------------------- set-up
    def initialize(self):
        seed_everything(self.seed)
        super().initialize()
        if not self.label_manager.has_regions:  # sigmoid_region_labels guarantees it; nnU-Net may change
            raise RuntimeError(f"nnU-Net did not read {self.dataset_json['labels']} as sigmoid regions")
        install_cpu_safe_pretrained_loader(self.print_to_log_file)
        schedule = (
            f"ReduceLROnPlateau on {self.monitor} "
            f"(factor {self.plateau_factor}, patience {self.plateau_patience})"
            if self.use_plateau_scheduler
            else "constant lr"
        )
        augmentation = (
            "nnU-Net default augmentation"
            if self.use_nnunet_augmentation
            else f"flip p={self.flip_probability}"
        )
        self.print_to_log_file(
            f"Recur recipe: seed {self.seed}, Adam lr {self.initial_lr}, {schedule}, early stopping after "
            f"{self.early_stopping_patience} epochs without improvement of {self.monitor}, "
            f"max {self.num_epochs} epochs, {augmentation}"
        )

    @property
    def monitor_mode(self) -> str:
        return MONITOR_MODES[self.monitor]

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.network.parameters(),
            lr=self.initial_lr,
            betas=self.adam_betas,
            eps=self.adam_eps,
            weight_decay=self.weight_decay,
        )
        scheduler = None
        if self.use_plateau_scheduler:
            # the scheduler and early stopping agree on what an improvement is (better by > min_delta)
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=self.monitor_mode,
                factor=self.plateau_factor,
                patience=self.plateau_patience,
                threshold=self.early_stopping_min_delta,
                threshold_mode="abs",
            )
        return optimizer, scheduler

    def _build_loss(self):
        return PaperDiceLoss(batch_dice=True, ddp=self.is_ddp)

    def _autocast_dtype(self) -> torch.dtype | None:
        """None: fp32. Mixed precision on CUDA only (nnU-Net: autocast on CPU is slow)."""
        if not self.use_mixed_precision or self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step without fp16 autocast and gradient clipping (autocast only for mixed precision)."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.loss(self.network(data), target)
        if self.grad_scaler is not None:  # fp16 only
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        """Unused by :meth:`run_training` (whole-volume validation); kept in the trainer's precision."""
        with self._autocast():
            return nnUNetTrainer.validation_step(self, batch)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        if self.use_nnunet_augmentation:
            configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        else:
            # No spatial augmentation: the loader crops the final patch directly.
            configured = None, False, tuple(self.configuration_manager.patch_size), (LEFT_RIGHT_SPATIAL_AXIS,)
        # Test-time augmentation only where a variant asks for it (the paper predicted with one pass).
        self.inference_allowed_mirroring_axes = self.tta_mirror_axes
        return configured

    def get_training_transforms(
        self,
        patch_size,
        rotation_for_DA,
        deep_supervision_scales,
        mirror_axes,
        do_dummy_2d_data_aug,
        use_mask_for_norm=None,
        is_cascaded=False,
        foreground_labels=None,
        regions=None,
        ignore_label=None,
    ):
        if self.use_nnunet_augmentation:
            return nnUNetTrainer.get_training_transforms(
                patch_size,
                rotation_for_DA,
                deep_supervision_scales,
                mirror_axes,
                do_dummy_2d_data_aug,
                use_mask_for_norm,
                is_cascaded,
                foreground_labels,
                regions,
                ignore_label,
            )
        transforms = [LeftRightFlipTransform(self.flip_probability)]
        if use_mask_for_norm is not None and any(use_mask_for_norm):
            transforms.append(
                MaskImageTransform(
                    apply_to_channels=[i for i, used in enumerate(use_mask_for_norm) if used],
                    channel_idx_in_seg=0,
                    set_outside_to=0,
                )
            )
        transforms.append(RemoveLabelTansform(-1, 0))
        if regions is not None:
            # [k, k] -> (k,): the same voxels, compared with == instead of torch.isin (1.4x faster batches)
            regions = deduplicated_regions(regions)
            transforms.append(
                ConvertSegmentationToRegionsTransform(
                    regions=list(regions) + [ignore_label] if ignore_label is not None else regions,
                    channel_in_seg=0,
                )
            )
        return ComposeTransforms(transforms)

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        # One epoch = one pass over the training cases, as in the paper (nnU-Net: a fixed 250 iterations).
        # The global batch counts: under DDP self.batch_size is one rank's share.
        self.num_iterations_per_epoch = iterations_per_epoch(
            len(dataset_tr.identifiers), self.global_batch_size_and_offset()[0]
        )
        self._validation_dataset = dataset_val
        return dataset_tr, dataset_val

    def global_batch_size_and_offset(self) -> tuple[int, int]:
        """The plans' batch and where this rank's share starts in it (nnU-Net's DDP split, rank order)."""
        global_batch = int(self.configuration_manager.batch_size)
        if not self.is_ddp:
            return global_batch, 0
        world, rank = dist.get_world_size(), dist.get_rank()
        shares = [global_batch // world + (1 if i < global_batch % world else 0) for i in range(world)]
        if shares[rank] != self.batch_size:
            raise RuntimeError(
                f"rank {rank}: batch {self.batch_size}, expected {shares[rank]} of {global_batch}"
            )
        return global_batch, sum(shares[:rank])

    def get_dataloaders(self):
        """nnU-Net's pipeline with :class:`WholeCaseEpochPermutationDataLoader`; no patch validation loader.

        Workers go through batchgenerators' ``MultiThreadedAugmenter`` (one queue per worker, read in turn),
        so the batches arrive in the permutation's order; nnU-Net's warm-up ``next()`` is left out, as it
        would skip the first batch.
        """
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        rotation, dummy_2d, initial_patch_size, mirror_axes = (
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        )
        transforms = self.get_training_transforms(
            patch_size,
            rotation,
            self._get_deep_supervision_scales(),
            mirror_axes,
            dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm,
            is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label,
        )
        dataset_tr, _ = self.get_tr_and_val_datasets()
        global_batch, offset = self.global_batch_size_and_offset()
        workers = get_allowed_n_proc_DA()
        loader = WholeCaseEpochPermutationDataLoader(
            dataset_tr,
            self.batch_size,
            initial_patch_size,
            patch_size,
            self.label_manager,
            seed=self.seed,
            global_batch_size=global_batch,
            rank_offset=offset,
            first_batch=self.current_epoch * self.num_iterations_per_epoch,
            num_workers=max(1, workers),
            transforms=transforms,
        )
        if workers == 0:
            return SingleThreadedAugmenter(loader, None), None
        augmenter = MultiThreadedAugmenter(
            loader,
            None,
            workers,
            num_cached_per_queue=2,
            seeds=None,
            pin_memory=self.device.type == "cuda",
            wait_time=0.002,
        )
        return augmenter, None

    def on_train_start(self):
        super().on_train_start()
        self._validation_predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=False,
            perform_everything_on_device=self.device.type == "cuda",
            device=self.device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        self._validation_predictor.manual_initialization(
            self.network,
            self.plans_manager,
            self.configuration_manager,
            None,
            self.dataset_json,
            type(self).__name__,
            self.inference_allowed_mirroring_axes,
        )
        self.print_to_log_file(
            f"Epoch = {self.num_iterations_per_epoch} iterations of batch {self.batch_size}; validation on "
            f"{len(self._validation_dataset.identifiers)} whole cases per epoch"
        )

    # ------------------------------------------------------------------ loop
    def run_training(self):
        self.on_train_start()
        if self.stopped_early:
            self.print_to_log_file(
                f"Early stopping was reached before (best {self.monitor} {self.best_metric} at epoch "
                f"{self.best_epoch}); nothing left to train"
            )
        while self.current_epoch < self.num_epochs and not self.stopped_early:
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = [
                self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)
            ]
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                self.on_validation_epoch_end(self.validate_whole_volumes())
            self.on_epoch_end()
        self.on_train_end()

    def on_train_epoch_start(self):
        # nnU-Net steps its poly schedule here; the plateau schedule steps at epoch end with the metric.
        self.network.train()
        self.print_to_log_file("")
        self.print_to_log_file(f"Epoch {self.current_epoch}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.print_to_log_file(f"Current learning rate: {lr:.6g}")
        self.logger.log("lrs", lr, self.current_epoch)

    @torch.no_grad()
    def validation_cases(self):
        """(case id, logits, target regions) of every validation case, predicted whole (sliding window, no
        mirroring); the one loop the paper's validation and the published code's variant share."""
        regions = self.label_manager.foreground_regions
        for key in self._validation_dataset.identifiers:
            data, seg, _, _ = self._validation_dataset.load_case(key)
            image = torch.from_numpy(np.ascontiguousarray(data[:], dtype=np.float32))
            logits = self._validation_predictor.predict_sliding_window_return_logits(image).float()
            labels = np.asarray(seg[0])
            target = torch.from_numpy(np.stack([np.isin(labels, np.atleast_1d(r)) for r in regions])).to(
                logits.device
            )
            yield key, logits, target

    def validate_whole_volumes(self) -> dict:
        """Predict every validation case whole (sliding window, no mirroring); Dice and Dice loss per case."""
        regions = self.label_manager.foreground_regions
        dices, losses = {}, {}
        if self._validation_loss is None:
            self._validation_loss = PaperDiceLoss(batch_dice=True, ddp=False)
        for key, logits, target in self.validation_cases():
            losses[key] = float(self._validation_loss(logits[None], target[None]))  # this case alone
            dices[key] = float(np.mean([hard_dice(logits[i] > 0, target[i]) for i in range(len(regions))]))
        outputs = {
            "dice": float(np.mean(list(dices.values()))),
            "loss": float(np.mean(list(losses.values()))),
        }
        if self.is_ddp:  # every rank validates; rank 0's numbers decide, so no rank stops alone
            shared = [outputs]
            dist.broadcast_object_list(shared, src=0)
            outputs = shared[0]
        return outputs

    def on_validation_epoch_end(self, val_outputs: dict):
        self.logger.log("mean_fg_dice", val_outputs["dice"], self.current_epoch)
        self.logger.log("dice_per_class_or_region", [val_outputs["dice"]], self.current_epoch)
        self.logger.log("val_losses", val_outputs["loss"], self.current_epoch)

    def monitored_value(self) -> float:
        key = "mean_fg_dice" if self.monitor == "val_dice" else "val_losses"
        return float(self.logger.get_value(key, step=-1))

    def is_improvement(self, value: float) -> bool:
        if not np.isfinite(value):
            return False
        if self.best_metric is None:
            return True
        if self.monitor_mode == "max":
            return value > self.best_metric + self.early_stopping_min_delta
        return value < self.best_metric - self.early_stopping_min_delta

    def on_epoch_end(self):
        epoch = self.current_epoch
        self.logger.log("epoch_end_timestamps", time(), epoch)
        get = self.logger.get_value
        self.print_to_log_file("train_loss", np.round(get("train_losses", step=-1), decimals=4))
        self.print_to_log_file("val_loss", np.round(get("val_losses", step=-1), decimals=4))
        self.print_to_log_file(
            "val_dice (mean over validation cases)", np.round(get("mean_fg_dice", step=-1), 4)
        )
        seconds = get("epoch_end_timestamps", step=-1) - get("epoch_start_timestamps", step=-1)
        self.print_to_log_file(f"Epoch time: {np.round(seconds, 2)} s")
        value = self.monitored_value()

        if self.lr_scheduler is not None:
            lr_before = self.optimizer.param_groups[0]["lr"]
            self.lr_scheduler.step(value)
            lr_after = self.optimizer.param_groups[0]["lr"]
            if lr_after < lr_before:
                self.print_to_log_file(
                    f"Plateau: {self.monitor} did not improve for {self.plateau_patience + 1} epochs, "
                    f"learning rate reduced from {lr_before:.6g} to {lr_after:.6g}"
                )

        if self.is_improvement(value):
            self.best_metric, self.best_epoch = value, epoch
            self.epochs_without_improvement = 0
            self.print_to_log_file(f"New best {self.monitor}: {value:.4f} (epoch {epoch})")
            self.save_checkpoint(join(self.output_folder, "checkpoint_best.pth"))
        else:
            self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= self.early_stopping_patience:
            self.stopped_early = True
            self.print_to_log_file(
                f"Early stopping: no improvement of {self.monitor} for {self.epochs_without_improvement} "
                f"epochs (best {self.best_metric:.4f} at epoch {self.best_epoch})"
            )

        self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        if self.local_rank == 0 and (epoch + 1) % self.progress_plot_every == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def promote_best_checkpoint(self) -> bool:
        """Load ``checkpoint_best.pth`` into the network, so that ``checkpoint_final.pth`` holds it.

        Only when this run (or the run it resumes) recorded a best epoch: a ``checkpoint_best.pth`` left in
        the folder by an earlier run must not become the final model of a run in which no epoch improved.
        """
        best = join(self.output_folder, "checkpoint_best.pth")
        if self.disable_checkpointing or self.best_epoch is None or not isfile(best):
            if self.best_epoch is None:
                self.print_to_log_file("No epoch improved the validation metric: the last weights are final")
            return False
        weights = torch.load(best, map_location=self.device, weights_only=False)["network_weights"]
        unwrap_network(self.network).load_state_dict(weights)
        self.print_to_log_file(
            f"checkpoint_final.pth holds the best-validation weights: epoch {self.best_epoch}, "
            f"{self.monitor} {self.best_metric}"
        )
        return True

    def on_train_end(self):
        self.promote_best_checkpoint()
        if self.local_rank == 0 and self.current_epoch > 0:
            self.logger.plot_progress_png(self.output_folder)
            if self.best_metric is not None:  # what `select_best_seed` compares across folds / seeds
                write_json_atomically(
                    {
                        "fold": int(self.fold) if str(self.fold).isdigit() else -1,
                        "seed": self.seed,
                        "monitor": self.monitor,
                        "best_metric": self.best_metric,
                        "best_epoch": self.best_epoch,
                        "epochs_trained": self.current_epoch,
                        "stopped_early": self.stopped_early,
                        "trainer": type(self).__name__,
                    },
                    Path(self.output_folder) / BEST_FILE,
                )
        super().on_train_end()

    # ----------------------------------------------------------- checkpoints
    def recur_state(self) -> dict:
        return {
            "lr_scheduler_state": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stopped_early": self.stopped_early,
            "monitor": self.monitor,
            "seed": self.seed,
        }

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus ``recur_state``; written to a temporary name, then renamed."""
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        checkpoint = {
            "network_weights": unwrap_network(self.network).state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": type(self).__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            RECUR_STATE_KEY: self.recur_state(),
        }
        with atomic_path(filename) as temporary:
            torch.save(checkpoint, temporary)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        if not isinstance(filename_or_checkpoint, str):
            raise TypeError("nnUNetTrainerRecur.load_checkpoint expects a checkpoint file name")
        super().load_checkpoint(filename_or_checkpoint)
        # nnU-Net restored weights, optimizer, logger and epoch; read the file again for our part (small).
        state = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False).get(
            RECUR_STATE_KEY
        )
        if state is None:
            self.print_to_log_file(
                f"{filename_or_checkpoint} has no {RECUR_STATE_KEY}: scheduler starts afresh"
            )
            return
        if self.lr_scheduler is not None and state["lr_scheduler_state"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler_state"])
        self.best_metric = state["best_metric"]
        self.best_epoch = state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.stopped_early = state["stopped_early"]
        bad_epochs = getattr(self.lr_scheduler, "num_bad_epochs", None)
        lr = self.optimizer.param_groups[0]["lr"]
        self.print_to_log_file(
            f"Resumed recur state: epoch {self.current_epoch}, lr {lr:.6g}, plateau bad epochs {bad_epochs}, "
            f"best {self.monitor} {self.best_metric} at epoch {self.best_epoch}, "
            f"{self.epochs_without_improvement} epochs without improvement, "
            f"stopped early {self.stopped_early}"
        )
