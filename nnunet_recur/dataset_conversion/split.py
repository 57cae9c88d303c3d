"""Train/val/test split of the converted cases (paper: random 60/20/20 with a recorded seed).

`paper`: train and val become nnU-Net's splits_final.json repeated as folds 0-4, so every fold (the
five seeds of the paper's five models) trains on the same split. `cv5`: train+val are pooled and split
into nnU-Net's own 5-fold cross-validation (the same KFold nnU-Net would make); the test patients are
held out in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPLIT_MODES = ("paper", "cv5")
DEFAULT_SEED = 12345


@dataclass(frozen=True)
class Split:
    mode: str
    seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def train_val(self) -> tuple[str, ...]:
        return tuple(sorted(self.train + self.val))

    def role(self, case: str) -> str:
        """'train', 'val' or 'test'."""
        for name, members in (("train", self.train), ("val", self.val), ("test", self.test)):
            if case in members:
                return name
        raise KeyError(case)

    def folds(self) -> list[dict[str, list[str]]]:
        """The content of splits_final.json."""
        if self.mode == "paper":
            fold = {"train": sorted(self.train), "val": sorted(self.val)}
            return [{"train": list(fold["train"]), "val": list(fold["val"])} for _ in range(5)]
        from nnunetv2.utilities.crossval_split import generate_crossval_split

        pooled = list(self.train_val)
        if len(pooled) < 5:
            raise ValueError(f"cv5 needs at least 5 train+val cases, got {len(pooled)}")
        return [
            {"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]}
            for f in generate_crossval_split(pooled, seed=self.seed, n_splits=5)
        ]

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "seed": self.seed,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }


def split_counts(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes for 60/20/20 of n cases; 37 -> 23/7/7 as in the paper.

    With at least 3 cases each part gets one; with fewer, test and then val stay empty.
    """
    test = int(round(0.2 * n))
    val = int(round(0.2 * n))
    if n >= 3:
        test, val = max(test, 1), max(val, 1)
    else:
        test, val = (0, 1) if n == 2 else (0, 0)
    return n - val - test, val, test


def make_split(cases: Sequence[str], mode: str = "paper", seed: int = DEFAULT_SEED) -> Split:
    """Random 60/20/20 split of `cases` (a seeded permutation of the sorted ids: same input, same split)."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, got {mode!r}")
    ordered = sorted(cases)
    permuted = [ordered[i] for i in np.random.RandomState(seed).permutation(len(ordered))]
    n_train, n_val, _ = split_counts(len(ordered))
    return Split(
        mode=mode,
        seed=seed,
        train=tuple(sorted(permuted[:n_train])),
        val=tuple(sorted(permuted[n_train : n_train + n_val])),
        test=tuple(sorted(permuted[n_train + n_val :])),
    )
