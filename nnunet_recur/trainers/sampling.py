"""The paper's epoch for nnU-Net's data loader: every training case once per epoch, whole, unshifted.

nnU-Net's ``nnUNetDataLoader`` draws each batch's cases at random *with replacement* and forces a share of
the samples (``oversample_foreground_percent`` 0.33: the second sample of a batch of 2) to be centred on a
foreground voxel, clamping only the lower corner of the box. With a patch that covers the case, that
forced sample is shifted and padded with background. The authors' ``DataLoader(shuffle=True)`` instead
visits every training case once per epoch, in a new random order, and feeds the whole crop.

:class:`EpochPermutationDataLoader` keeps nnU-Net's loader (loading, cropping, padding, transforms) and
changes two things:

* **Which cases.** Global batch ``b`` of the run belongs to epoch ``b // I`` (``I = ceil(n / B)``
  iterations of the global batch ``B``) and takes positions ``[pos * B, (pos + 1) * B)`` of that epoch's
  permutation, ``numpy.random.default_rng([seed, epoch]).permutation(n)``. The last batch of an epoch is
  completed from the start of the same permutation, so every batch is full (DDP ranks must all step, and a
  fixed shape keeps ``torch.compile`` from recompiling): 23 cases in batches of 2 are 12 batches, one case
  twice. Under DDP every rank computes the same global batch and keeps its own slice
  (``rank_offset``, ``batch_size``), so the global batch and the epoch's case count do not change.
* **Where.** No foreground oversampling. On every axis where the patch covers the case the box is the one
  nnU-Net's predictor uses (the case centred, ``pad // 2`` below), so a sample is the whole case, never
  shifted; on an axis where the case is larger than the patch the box is random, as in nnU-Net.

Data-augmentation workers: worker ``t`` of ``W`` produces global batches ``t, t + W, t + 2W, ...``; with
batchgenerators' ``MultiThreadedAugmenter`` (one queue per worker, read in turn) the trainer receives them in
order. ``first_batch`` lets ``--c`` continue with the epoch it resumes at.

Augmentation randomness: batchgenerators reseeds only numpy in each worker (and with ``seeds=None`` from the
OS), while batchgeneratorsv2 transforms such as the flip draw from torch; forked workers start from one torch
state, so worker 0 and worker 1 would make the same flip decision for their k-th sample. Each batch is
therefore made under its own random state, seeded from (trainer seed, global batch number, DDP rank offset)
(:func:`batch_random_state`): the draws of two workers are independent, and a run's flips are reproducible
whatever the worker count, also after ``--c``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_recur.trainers.whole_case_loader import WholeCaseBatchMixin


def iterations_per_epoch(n_cases: int, global_batch_size: int) -> int:
    """Batches that show every case once: ``ceil(n / batch)`` (at least 1)."""
    if n_cases < 1 or global_batch_size < 1:
        raise ValueError(
            f"need at least one case and batch size 1, got {n_cases} cases, batch {global_batch_size}"
        )
    return max(1, math.ceil(n_cases / global_batch_size))


def epoch_permutation(n_cases: int, epoch: int, seed: int) -> np.ndarray:
    """The case order of one epoch; a function of (seed, epoch) only, so every rank and worker agrees."""
    return np.random.default_rng([int(seed) % 2**32, int(epoch)]).permutation(n_cases)


def global_batch_cases(n_cases: int, global_batch_size: int, batch_number: int, seed: int) -> list[int]:
    """Case indices of global batch ``batch_number`` (counted from the start of training)."""
    iterations = iterations_per_epoch(n_cases, global_batch_size)
    epoch, position = divmod(int(batch_number), iterations)
    order = epoch_permutation(n_cases, epoch, seed)
    start = position * global_batch_size
    return [int(order[(start + k) % n_cases]) for k in range(global_batch_size)]


def batch_seed(seed: int, batch_number: int, rank_offset: int = 0) -> int:
    """The seed of the augmentation draws of global batch ``batch_number``, for the share that starts at
    ``rank_offset`` (DDP ranks draw for different samples, so they must not share a seed); a 32-bit value."""
    entropy = [int(seed) % 2**32, int(batch_number), int(rank_offset)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextmanager
def batch_random_state(seed: int, batch_number: int, rank_offset: int = 0) -> Iterator[None]:
    """torch's CPU and numpy's global generators seeded for one batch, restored afterwards (so the trainer's
    own process, without workers, keeps its random stream)."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        value = batch_seed(seed, batch_number, rank_offset)
        torch.manual_seed(value)
        np.random.seed(value)
        try:
            yield
        finally:
            np.random.set_state(state)


def centred_box(shape, patch_size) -> tuple[list[int], list[int]] | None:
    """The box that holds the whole case centred in the patch (predictor's padding), or None if too big."""
    if any(s > p for s, p in zip(shape, patch_size, strict=True)):
        return None
    lower = [-((p - s) // 2) for s, p in zip(shape, patch_size, strict=True)]
    return lower, [lo + p for lo, p in zip(lower, patch_size, strict=True)]


class EpochPermutationDataLoader(nnUNetDataLoader):
    """nnU-Net's loader with one permutation of the training cases per epoch and no foreground oversampling.

    ``patch_size`` is the box cut from the case (larger than ``final_patch_size`` only when spatial
    augmentation crops afterwards, as in nnU-Net). ``batch_size`` is this process's share of
    ``global_batch_size`` and ``rank_offset`` where it starts in the global batch (nnU-Net's DDP split; both
    default to a single process). ``num_workers`` must equal the number of augmentation processes that will
    hold a copy of this loader (1 without workers).
    """

    def __init__(
        self,
        data,
        batch_size: int,
        patch_size,
        final_patch_size,
        label_manager,
        *,
        seed: int,
        global_batch_size: int | None = None,
        rank_offset: int = 0,
        first_batch: int = 0,
        num_workers: int = 1,
        transforms=None,
    ):
        super().__init__(
            data,
            batch_size,
            patch_size,
            final_patch_size,
            label_manager,
            oversample_foreground_percent=0.0,
            sampling_probabilities=None,
            pad_sides=None,
            probabilistic_oversampling=False,
            transforms=transforms,
        )
        self.global_batch_size = int(global_batch_size or batch_size)
        if not 0 <= rank_offset <= self.global_batch_size - batch_size:
            raise ValueError(
                f"rank offset {rank_offset} and batch {batch_size} exceed {self.global_batch_size}"
            )
        self.seed = int(seed)
        self.rank_offset = int(rank_offset)
        self.first_batch = int(first_batch)
        self.number_of_threads_in_multithreaded = int(num_workers)
        self._batches_made = 0

    @property
    def iterations_per_epoch(self) -> int:
        return iterations_per_epoch(len(self.indices), self.global_batch_size)

    def next_batch_number(self) -> int:
        """The global batch this copy of the loader produces next (worker ``thread_id`` of ``W``)."""
        return (
            self.first_batch + self.thread_id + self._batches_made * self.number_of_threads_in_multithreaded
        )

    def generate_train_batch(self) -> dict:
        """One batch, its augmentation drawn from the batch's own seed (see the module docstring)."""
        with batch_random_state(self.seed, self.next_batch_number(), self.rank_offset):
            return self.generate_unseeded_batch()

    def generate_unseeded_batch(self) -> dict:
        return nnUNetDataLoader.generate_train_batch(self)

    def get_indices(self):
        cases = global_batch_cases(
            len(self.indices), self.global_batch_size, self.next_batch_number(), self.seed
        )
        self._batches_made += 1
        mine = cases[self.rank_offset : self.rank_offset + self.batch_size]
        return [self.indices[i] for i in mine]

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        lower, upper = super().get_bbox(data_shape, False, class_locations, overwrite_class, verbose)
        box = centred_box(tuple(data_shape), tuple(self.patch_size))
        if box is not None:
            return box
        # the case is larger than the patch on some axis: centre where it fits, nnU-Net's random box elsewhere
        for axis, (size, patch) in enumerate(zip(data_shape, self.patch_size, strict=True)):
            if size <= patch:
                lower[axis] = -((patch - size) // 2)
                upper[axis] = lower[axis] + patch
        return lower, upper


class WholeCaseEpochPermutationDataLoader(WholeCaseBatchMixin, EpochPermutationDataLoader):
    """The trainers' loader: one permutation per epoch, and a case that is the patch read whole (no box,
    crop or pad; bench/data_pipeline.py: 1.55x the stock loader's batches per second with the regions fix)."""

    generate_train_batch = EpochPermutationDataLoader.generate_train_batch  # seeded per batch, ...

    def generate_unseeded_batch(self) -> dict:
        return WholeCaseBatchMixin.generate_train_batch(self)  # ... around the whole-case batch
