"""What a site does in a round: validate the global model, train it locally for E epochs, report back.

The site's data is an nnU-Net preprocessed dataset folder (``nnUNetRecurPlans.json``, ``dataset.json``,
``splits_final.json`` and the ``nnUNetRecurPlans_3d_recur`` data) made with the federation's shared plans.
The paper's trainer (``nnUNetTrainerRecur`` or a variant, e.g. the fine-tune one) runs unchanged, with
fold 0's split: training cases for the epochs, validation cases for the whole-volume Dice and loss. Per
round it starts from the global weights with a fresh optimiser and schedule (standard FedAvg); the local
weights after the last epoch are returned (not the best local epoch: the server chooses the best round).

FedProx (Li et al. 2020): with mu > 0 every gradient gets mu (w - w_global) added, the gradient of the
proximal term mu/2 ||w - w_global||^2, which keeps a site's update near the global model.

Each round trains under its own seed (:func:`round_seed` of the federation's seed and the round number):
the trainer's case order and flips are functions of (seed, epoch), and the epoch count restarts at every
round, so one seed for all rounds would replay the same batches and flips round after round.

Nothing but the weights, the case counts and the named metrics leaves this module (see `RoundResult`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_recur.nnunet_names import CONFIGURATION

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class RoundResult:
    """Everything a site reports for one round."""

    weights: Weights | None  # None for a validation-only call
    n_train: int
    n_val: int
    train_loss: float | None
    val_dice: float  # the global model received this round, on this site's validation cases
    val_loss: float


class SiteDataError(ValueError):
    """The site's nnU-Net folders are missing or inconsistent."""


def _load_json(path: Path) -> dict:
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SiteDataError(f"{path}: unreadable ({exc})") from exc


def prepare_site_folders(data: Path, work: Path, plans: dict) -> None:
    """Point nnU-Net at the site's data under the shared plans' dataset name (a link in `work`)."""
    data, work = Path(data).resolve(), Path(work).resolve()
    hints = {
        "dataset.json": "the site's preprocessed nnU-Net dataset folder holds it",
        "splits_final.json": "write the site's fold-0 split: training and validation cases",
        "dataset_fingerprint.json": "nnU-Net copies it into every model folder; nnUNetv2_extract_fingerprint",
    }
    for needed, hint in hints.items():
        if not (data / needed).is_file():
            raise SiteDataError(f"{data / needed}: not found ({hint})")
    link = work / "nnUNet_preprocessed" / plans["dataset_name"]
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != data:
        link.unlink()
    if not link.exists():
        link.symlink_to(data, target_is_directory=True)
    os.environ["nnUNet_preprocessed"] = str(link.parent)
    os.environ["nnUNet_results"] = str(work / "nnUNet_results")
    os.environ.setdefault("nnUNet_raw", str(work / "nnUNet_raw"))
    os.environ.setdefault("nnUNet_n_proc_DA", "0")
    os.environ.setdefault("nnUNet_compile", "false")


def round_seed(federation_seed: int, round_number: int) -> int:
    """The training seed of one round: a function of (federation seed, round) only, so every site, engine
    and rerun of that round draws the same way, and no two rounds draw alike."""
    return int(np.random.SeedSequence([int(federation_seed), int(round_number)]).generate_state(1)[0])


def _trainer(
    data: Path, work: Path, plans: dict, trainer_name: str, epochs: int, proximal_mu: float, device: str
):
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_recur.federated.model_folder import trainer_class_by_name

    base = trainer_class_by_name(trainer_name)

    class FederatedRound(base):
        """The site's trainer for one round: last weights kept (no best-epoch promotion), no plots."""

        progress_plot_every = 10**9

        def promote_best_checkpoint(self) -> bool:
            return False

        def on_train_end(self):
            nnUNetTrainer.on_train_end(self)

    FederatedRound.__name__ = FederatedRound.__qualname__ = base.__name__
    prepare_site_folders(data, work, plans)
    dataset_json = _load_json(Path(data) / "dataset.json")
    trainer = FederatedRound(
        dict(plans, continue_training=False), CONFIGURATION, 0, dataset_json, torch.device(device)
    )
    trainer.num_epochs = int(epochs)
    trainer.proximal_mu = float(proximal_mu)
    return trainer


def _load(trainer, weights: Weights) -> None:
    import torch

    from nnunet_recur.trainers.checkpoints import unwrap_network

    network = unwrap_network(trainer.network)
    state = network.state_dict()
    if set(state) != set(weights):
        raise SiteDataError("the global weights do not fit this site's network (other plans or trainer?)")
    network.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})


def _proximal_hooks(trainer, mu: float) -> list:
    """FedProx: gradient + mu (w - w_global) on every parameter (hooks removed by the caller)."""
    if mu <= 0:
        return []
    from nnunet_recur.trainers.checkpoints import unwrap_network

    handles = []
    for parameter in unwrap_network(trainer.network).parameters():
        anchor = parameter.detach().clone()
        handles.append(
            parameter.register_hook(lambda grad, p=parameter, a=anchor: grad + mu * (p.detach() - a))
        )
    return handles


def run_round(
    data: Path,
    work: Path,
    plans: dict,
    weights: Weights,
    trainer_name: str,
    epochs: int,
    proximal_mu: float = 0.0,
    device: str = "cpu",
    seed: int | None = None,
    after_epoch: Callable[[int, object], None] | None = None,
) -> RoundResult:
    """Validate `weights` on the site's validation cases, then (epochs > 0) train them for `epochs` epochs
    under `seed` (the round's, :func:`round_seed`; None keeps the trainer's own seed of fold 0).

    `after_epoch(epoch, network)`, when given, is called after each local epoch with the (unwrapped) torch
    network; it must not change it (bench/federated_compare.py scores it there for its learning curves)."""
    from nnunet_recur.trainers.checkpoints import unwrap_network

    trainer = _trainer(data, work, plans, trainer_name, epochs, proximal_mu, device)
    if seed is not None:
        trainer.seed = int(seed)  # initialize() seeds every generator from it; the loader's order too
    trainer.initialize()
    _load(trainer, weights)
    trainer.on_train_start()
    handles = []
    try:
        import torch

        with torch.no_grad():
            before = trainer.validate_whole_volumes()
        n_train = len(trainer.do_split()[0])
        train_loss = None
        if epochs > 0:
            handles = _proximal_hooks(trainer, proximal_mu)
            for epoch in range(int(epochs)):
                trainer.on_epoch_start()
                trainer.on_train_epoch_start()
                outputs = [
                    trainer.train_step(next(trainer.dataloader_train))
                    for _ in range(trainer.num_iterations_per_epoch)
                ]
                trainer.on_train_epoch_end(outputs)
                with torch.no_grad():
                    trainer.on_validation_epoch_start()
                    trainer.on_validation_epoch_end(trainer.validate_whole_volumes())
                trainer.on_epoch_end()
                if after_epoch is not None:
                    after_epoch(epoch, unwrap_network(trainer.network))
            train_loss = float(trainer.logger.get_value("train_losses", step=-1))
        local = {
            k: v.detach().cpu().numpy().copy()
            for k, v in unwrap_network(trainer.network).state_dict().items()
        }
        n_val = len(trainer._validation_dataset.identifiers)
    finally:
        for handle in handles:
            handle.remove()
        trainer.on_train_end()
    return RoundResult(
        weights=local if epochs > 0 else None,
        n_train=int(n_train),
        n_val=int(n_val),
        train_loss=train_loss,
        val_dice=float(before["dice"]),
        val_loss=float(before["loss"]),
    )
