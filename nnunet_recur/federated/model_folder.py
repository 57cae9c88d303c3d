"""The federation's network as a standard nnU-Net model folder, so nnUNetv2_predict and recur predict use it.

Layout (what ``nnUNetPredictor.initialize_from_trained_model_folder`` reads)::

    MODEL/plans.json, dataset.json, fold_0/checkpoint_best.pth (and checkpoint_final.pth, the same weights)

The checkpoint holds ``network_weights``, ``trainer_name``, ``init_args`` (plans, configuration, fold,
dataset_json) and ``inference_allowed_mirroring_axes`` (None: one forward pass, as our trainers), plus
``federated`` (round, global validation Dice, sites) for the record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.nnunet_names import CONFIGURATION

Weights = dict[str, np.ndarray]


def model_dataset_json(raw_dataset_json: dict) -> dict:
    """dataset.json as our trainers save it (one sigmoid region per label)."""
    from nnunet_recur.trainers.labels import sigmoid_region_labels

    return sigmoid_region_labels(raw_dataset_json)


def build_network(plans: dict, dataset_json: dict, trainer_name: str):
    """The untrained network of `trainer_name` for these plans (as the predictor builds it)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer_class = trainer_class_by_name(trainer_name)
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration(CONFIGURATION)
    channels = determine_num_input_channels(plans_manager, configuration, dataset_json)
    heads = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    return trainer_class.build_network_architecture(
        plans_manager, configuration, channels, heads, enable_deep_supervision=False
    )


def trainer_class_by_name(trainer_name: str):
    """One of nnunet-recur's trainers (nnUNetTrainerRecur, its fine-tune variant, ...) by class name."""
    from nnunet_recur.trainers import variants

    if trainer_name not in variants.__all__:
        raise ValueError(f"trainer {trainer_name!r} is not one of nnunet-recur's trainers")
    return getattr(variants, trainer_name)


def initial_weights(plans: dict, dataset_json: dict, trainer_name: str, seed: int) -> Weights:
    """Seeded initial weights: every site starts round 1 from the same network."""
    import torch

    torch.manual_seed(seed)
    network = build_network(plans, dataset_json, trainer_name)
    return {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}


def checkpoint_weights(path: Path, reference: Weights) -> Weights:
    """The network weights of an nnU-Net checkpoint (e.g. pre-trained on HECKTOR) as round 0's model.

    Every array must fit the network of the shared plans (names and shapes), else ValueError naming the file.
    """
    import torch

    from nnunet_recur.federated.fedavg import SiteUpdate, WrongShapeError, check_shapes

    try:
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
        weights = {k: v.detach().cpu().numpy() for k, v in checkpoint["network_weights"].items()}
    except (OSError, KeyError, RuntimeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable nnU-Net checkpoint ({exc})") from exc
    try:
        check_shapes(reference, SiteUpdate(str(path), weights, 1))
    except WrongShapeError as exc:
        raise ValueError(f"{path}: does not fit the shared plans' network: {exc}") from exc
    return {k: weights[k].astype(reference[k].dtype) for k in reference}


def save_weights(path: Path, weights: Weights, extra: dict | None = None) -> None:
    """A round's global weights (npz, atomic): what a restarted server resumes from."""
    from nnunet_recur.atomic_io import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **weights)
    if extra is not None:
        write_json_atomic(Path(path).with_suffix(".json"), extra)


def load_weights(path: Path) -> Weights:
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_model_folder(
    out: Path, weights: Weights, plans: dict, dataset_json: dict, trainer_name: str, record: dict
) -> Path:
    """`out` as an nnU-Net model folder (plans.json, dataset.json, fold_0/checkpoint_best/final.pth)."""
    import torch

    from nnunet_recur.atomic_io import atomic_path

    out = Path(out)
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "plans.json", plans)
    write_json_atomic(out / "dataset.json", dataset_json)
    checkpoint = {
        "network_weights": {k: torch.from_numpy(np.array(v)) for k, v in weights.items()},
        "trainer_name": trainer_name,
        "init_args": {
            "plans": plans,
            "configuration": CONFIGURATION,
            "fold": 0,
            "dataset_json": dataset_json,
            "device": "cpu",
        },
        "inference_allowed_mirroring_axes": None,
        "current_epoch": int(record.get("round", 0)),
        "federated": json.loads(json.dumps(record)),
    }
    for name in ("checkpoint_best.pth", "checkpoint_final.pth"):
        with atomic_path(out / "fold_0" / name) as tmp:
            torch.save(checkpoint, tmp)
    return out
