"""The CNN methods of Table 1 and the trainer class names that run them (`recur study`, `recur demo`).

nnU-Net has no epoch flag, so N epochs means the variant ``<trainer>_<N>epochs``; the study file names a
method by the paper's label and this registry resolves it. No torch import: the trainers' ``__all__`` is
read from source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nnunet_recur.nnunet_names import (
    FOLDER_VARIABLES,
    ext_trainer_value,
)

PRETRAIN_TRAINER = "nnUNetTrainerRecurPretrain"
PRETRAIN_FOLD = 0
PAPER_MAX_EPOCHS = 1000
NNUNET_VARS = FOLDER_VARIABLES


class StudyError(ValueError):
    """The study file or the datasets do not allow the study; the message names the file and the problem."""


@dataclass(frozen=True)
class MethodSpec:
    """A CNN method of Table 1: a trainer family, with or without the HECKTOR pre-trained weights."""

    key: str  # folder-safe name
    label: str  # the paper's name, used in Table 1
    base_trainer: str
    pretrained: bool


METHODS = {
    "AI random": MethodSpec("ai_random", "AI random", "nnUNetTrainerRecur", False),
    "AI finetune": MethodSpec("ai_finetune", "AI finetune", "nnUNetTrainerRecurFinetune", True),
    "PublishedCode random": MethodSpec(
        "published_random", "PublishedCode random", "nnUNetTrainerRecurPublishedCode", False
    ),
    "PublishedCode finetune": MethodSpec(
        "published_finetune", "PublishedCode finetune", "nnUNetTrainerRecurPublishedCodeFinetune", True
    ),
}


@dataclass(frozen=True)
class Method:
    """A method with its resolved trainer class name."""

    key: str
    label: str
    trainer: str
    pretrained: bool


# ------------------------------------------------------------------------------------------------
# Trainer names: nnU-Net has no epoch flag, so N epochs means the variant `<trainer>_<N>epochs`


def epoch_variants(base: str, available: Iterable[str]) -> dict[int, str]:
    """{N: name} for every `<base>_<N>epochs` class in `available`."""
    pattern = re.compile(re.escape(base) + r"_(\d+)epochs")
    return {int(m.group(1)): n for n in available if (m := pattern.fullmatch(n))}


def full_recipe(epochs: int) -> bool:
    return epochs <= 0 or epochs == PAPER_MAX_EPOCHS


def trainer_for(base: str, epochs: int, available: Iterable[str]) -> str:
    """The trainer class running `epochs` epochs of `base` (0 or 1000 = the recipe itself)."""
    if full_recipe(epochs):
        return base
    variants = epoch_variants(base, available)
    if epochs not in variants:
        options = ", ".join(str(n) for n in sorted(variants)) or "none"
        raise StudyError(
            f"epochs = {epochs}: nnunet_recur.trainers has no {base}_{epochs}epochs; "
            f"available: {options} (or 0 for the paper's full recipe)"
        )
    return variants[epochs]


def pretrain_trainer_for(epochs: int, available: Iterable[str]) -> tuple[str, str]:
    """(trainer, note): pre-training (only a warm start) uses `_<N>epochs` when it exists, else the longest
    variant shorter than N, else the shortest one."""
    if full_recipe(epochs):
        return PRETRAIN_TRAINER, ""
    pre = epoch_variants(PRETRAIN_TRAINER, available)
    if epochs in pre:
        return pre[epochs], ""
    if not pre:
        raise StudyError(f"nnunet_recur.trainers has no {PRETRAIN_TRAINER}_<N>epochs variant")
    shorter = [n for n in pre if n <= epochs]
    m = max(shorter) if shorter else min(pre)
    return pre[m], f"pre-training runs {m} epochs ({pre[m]})"


def available_trainers() -> list[str]:
    """Trainer class names that nnunet_recur.trainers exports to nnUNet_extTrainer.

    Read from the literal ``__all__`` of ``trainers/variants.py`` without importing it: the import pulls in
    torch and nnunetv2 (~1 GB resident) into a process that only launches subprocesses.
    """
    import ast  # noqa: PLC0415

    import nnunet_recur  # noqa: PLC0415

    source = Path(nnunet_recur.__file__).parent / "trainers" / "variants.py"
    try:
        tree = ast.parse(source.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "__all__" for t in node.targets
            ):
                return [str(n) for n in ast.literal_eval(node.value)]
    except (OSError, SyntaxError, ValueError):
        pass
    from nnunet_recur.trainers import variants  # noqa: PLC0415 - fallback: the real module

    return list(variants.__all__)


def resolve_methods(labels: Iterable[str], epochs: int, available: Iterable[str]) -> list[Method]:
    available = list(available)
    out = []
    for label in labels:
        spec = METHODS.get(label)
        if spec is None:
            raise StudyError(f"unknown method {label!r}; choose from {', '.join(METHODS)}")
        out.append(
            Method(spec.key, spec.label, trainer_for(spec.base_trainer, epochs, available), spec.pretrained)
        )
    return out


def ext_trainer_path() -> str:
    """What `recur env` exports as nnUNet_extTrainer (ours first, keeping the user's folders)."""
    return ext_trainer_value(os.environ)
