"""The server's round loop: send the global model, collect the sites' updates, average, keep the best round.

Per round r (1..R) every connected site gets the global model of round r - 1 and the round's settings; it
validates that model on its validation cases, trains it for E local epochs and sends back its weights, its
number of training cases and its metrics. The server refuses updates of the wrong shape (naming the site),
averages the rest weighted by cases (FedAvg; FedProx adds the proximal term at the sites), and records the
case-weighted validation Dice of model r - 1. After the last round one validation-only message scores model
R. The best round's model is written as a standard nnU-Net model folder (FEDERATION/model).

Faults: a round waits for every site until `--min-sites` have replied, then at most `straggler_timeout`
seconds more; a site that died is left out of that round and gets the next round's message if it is
connected again. A round with fewer than `min_sites` replies within `round_timeout` stops the run with an
error. The state (rounds done, history, best round) and the latest global weights are written after every
round, so a restarted server resumes from the last completed round (`--resume`).

The transport is an object with `node_ids()` and `exchange(kind, node_ids, weights, config, ...)`; the
Flower ServerApp (apps.py) provides it over a Grid.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_recur.atomic_io import write_json_atomic
from nnunet_recur.federated import fedavg
from nnunet_recur.federated import model_folder as models
from nnunet_recur.federated.shared_plans import plans_hash

log = logging.getLogger("nnunet_recur.federated")

SETTINGS_FILE = "federation.json"
STATE_FILE = "state.json"
PLANS_FILE = "plans.json"
DATASET_FILE = "dataset.json"
MODEL_FOLDER = "model"
#: The metrics a site sends (nothing else leaves a site besides the weights and its name).
TRAIN_METRICS = ("num-examples", "num-val", "train-loss", "val-dice", "val-loss")
EVALUATE_METRICS = ("num-examples", "val-dice", "val-loss")


class FederationError(RuntimeError):
    """The run cannot go on (too few sites, bad settings); the message says which and why."""


# A dataclass of settings with defaults, alike in shape only to prediction's DoseMapOptions.
@dataclass
class Settings:
    rounds: int = 3
    local_epochs: int = 1
    min_sites: int = 1
    expected_sites: int = 1
    trainer: str = "nnUNetTrainerRecur"
    proximal_mu: float = 0.0
    seed: int = 0
    wait_for_sites_s: float = 120.0
    straggler_timeout_s: float = 60.0
    round_timeout_s: float = 3600.0
    initial_checkpoint: str | None = None  # e.g. a centrally pre-trained checkpoint_final.pth to fine-tune

    @classmethod
    def read(cls, folder: Path) -> Settings:
        data = json.loads((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Reply:
    """One site's answer to one message (weights None for validation-only or an error)."""

    node_id: int
    site: str
    metrics: dict = field(default_factory=dict)
    weights: dict | None = None
    error: str | None = None
    bytes_received: int = 0


def _state_path(folder: Path) -> Path:
    return Path(folder) / STATE_FILE


def read_state(folder: Path) -> dict | None:
    path = _state_path(folder)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _round_weights_path(folder: Path, round_number: int) -> Path:
    return Path(folder) / "rounds" / f"global_round_{round_number:03d}.npz"


def _wait_for_sites(transport, settings: Settings, expect_all: bool) -> list[int]:
    """The connected sites: all expected ones before the first round, then whoever is connected (>= min)."""
    deadline = time.monotonic() + settings.wait_for_sites_s
    wanted = settings.expected_sites if expect_all else settings.min_sites
    while True:
        nodes = sorted(transport.node_ids())
        if len(nodes) >= wanted:
            return nodes
        if time.monotonic() > deadline:
            if len(nodes) >= settings.min_sites:
                return nodes
            raise FederationError(
                f"only {len(nodes)} site(s) connected after {settings.wait_for_sites_s:.0f} s; "
                f"--min-sites is {settings.min_sites}"
            )
        time.sleep(0.5)


def _weighted_validation(replies: list[Reply], count_key: str) -> dict:
    dice = fedavg.weighted_mean(
        [r.metrics.get("val-dice") for r in replies], [int(r.metrics.get(count_key, 0)) for r in replies]
    )
    loss = fedavg.weighted_mean(
        [r.metrics.get("val-loss") for r in replies], [int(r.metrics.get(count_key, 0)) for r in replies]
    )
    return {
        "val_dice": dice,
        "val_loss": loss,
        "sites": {
            r.site: {"val_dice": r.metrics.get("val-dice"), "n_val": int(r.metrics.get(count_key, 0))}
            for r in replies
        },
    }


class Federation:
    """The server side of one federation folder (settings, shared plans, state, weights, model)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.settings = Settings.read(self.folder)
        self.plans = json.loads((self.folder / PLANS_FILE).read_text(encoding="utf-8"))
        self.dataset_json = json.loads((self.folder / DATASET_FILE).read_text(encoding="utf-8"))
        self.plans_sha256 = plans_hash(self.plans)
        self.site_names: dict[int, str] = {}

    # ---------------------------------------------------------------- state
    def _new_state(self) -> dict:
        return {
            "rounds_done": 0,
            "current_round": None,
            "phase": "starting",
            "history": [],
            "best": None,
            "refused": [],
            "failed": [],
            "finished": False,
            "plans_sha256": self.plans_sha256,
        }

    def _write_state(self, state: dict) -> None:
        write_json_atomic(_state_path(self.folder), state)

    def _round_config(self, round_number: int, epochs: int) -> dict:
        return {
            "server-round": round_number,
            "local-epochs": epochs,
            "proximal-mu": float(self.settings.proximal_mu),
            "seed": int(self.settings.seed),  # with server-round: the round's training seed at every site
            "trainer": self.settings.trainer,
            "plans-sha256": self.plans_sha256,
        }

    def _record_validation(self, state: dict, round_number: int, validation: dict) -> None:
        """Model of `round_number` scored: keep it as the model folder when it is the best so far."""
        entry = next((h for h in state["history"] if h["round"] == round_number), None)
        if entry is None:
            return
        entry["global_val_dice"] = validation["val_dice"]
        entry["global_val_loss"] = validation["val_loss"]
        entry["val_sites"] = validation["sites"]
        best = state["best"]
        dice = validation["val_dice"]
        if dice is not None and (best is None or dice > best["val_dice"]):
            weights = models.load_weights(_round_weights_path(self.folder, round_number))
            record = {"round": round_number, "val_dice": dice, "sites": sorted(validation["sites"])}
            models.write_model_folder(
                self.folder / MODEL_FOLDER,
                weights,
                self.plans,
                self.dataset_json,
                self.settings.trainer,
                record,
            )
            state["best"] = record
            log.info("round %d is the best so far: global validation Dice %.4f", round_number, dice)

    def _sorted_replies(self, state: dict, round_number: int, replies: list[Reply], reference: dict):
        updates, scored = [], []
        for reply in replies:
            if reply.error is not None:
                state["failed"].append({"round": round_number, "site": reply.site, "error": reply.error})
                log.warning("round %d: site %s failed: %s", round_number, reply.site, reply.error)
                continue
            scored.append(reply)
            if reply.weights is None:
                continue
            update = fedavg.SiteUpdate(reply.site, reply.weights, int(reply.metrics.get("num-examples", 0)))
            try:
                fedavg.check_shapes(reference, update)
                if update.n_cases <= 0:
                    raise fedavg.WrongShapeError(f"site {reply.site}: weights refused: 0 training cases")
            except fedavg.WrongShapeError as exc:
                state["refused"].append({"round": round_number, "site": reply.site, "reason": str(exc)})
                log.error("round %d: %s", round_number, exc)
                continue
            updates.append(update)
        return updates, scored

    # ---------------------------------------------------------------- loop
    def run(self, transport, resume: bool = False) -> dict:
        settings = self.settings
        state = read_state(self.folder) if resume else None
        if state is None:
            state = self._new_state()
            weights = models.initial_weights(self.plans, self.dataset_json, settings.trainer, settings.seed)
            if settings.initial_checkpoint:
                weights = models.checkpoint_weights(Path(settings.initial_checkpoint), weights)
            models.save_weights(_round_weights_path(self.folder, 0), weights)
        else:
            if state.get("plans_sha256") != self.plans_sha256:
                raise FederationError(f"{_state_path(self.folder)}: made with other plans; cannot resume")
            weights = models.load_weights(_round_weights_path(self.folder, state["rounds_done"]))
            log.info("resuming after round %d", state["rounds_done"])
        first_round = True
        for round_number in range(state["rounds_done"] + 1, settings.rounds + 1):
            state.update(current_round=round_number, phase="train")
            self._write_state(state)
            nodes = _wait_for_sites(transport, settings, expect_all=first_round)
            first_round = False
            started = time.monotonic()
            replies, sent = transport.exchange(
                "train", nodes, weights, self._round_config(round_number, settings.local_epochs), settings
            )
            updates, scored = self._sorted_replies(state, round_number, replies, weights)
            if len(updates) < settings.min_sites:
                state["phase"] = "failed"
                self._write_state(state)
                raise FederationError(
                    f"round {round_number}: {len(updates)} usable site update(s), "
                    f"--min-sites is {settings.min_sites}"
                )
            weights = fedavg.federated_average(updates, weights)
            models.save_weights(_round_weights_path(self.folder, round_number), weights)
            state["history"].append(
                {
                    "round": round_number,
                    "sites": [u.site for u in updates],
                    "n_cases": {u.site: u.n_cases for u in updates},
                    "train_loss": fedavg.weighted_mean(
                        [r.metrics.get("train-loss") for r in scored if r.weights is not None],
                        [int(r.metrics.get("num-examples", 0)) for r in scored if r.weights is not None],
                    ),
                    "seconds": round(time.monotonic() - started, 2),
                    "bytes_sent": sent,
                    "bytes_received": sum(r.bytes_received for r in replies),
                }
            )
            if round_number > 1:
                self._record_validation(state, round_number - 1, _weighted_validation(scored, "num-val"))
            state["rounds_done"] = round_number
            self._write_state(state)
            log.info(
                "round %d done: %s", round_number, ", ".join(f"{u.site} ({u.n_cases} cases)" for u in updates)
            )
            old = _round_weights_path(self.folder, round_number - 2)
            if round_number >= 2 and old.is_file():
                old.unlink()
        state.update(current_round=None, phase="final validation")
        self._write_state(state)
        final = settings.rounds
        if not any(h["round"] == final and h.get("global_val_dice") is not None for h in state["history"]):
            nodes = _wait_for_sites(transport, settings, expect_all=False)
            replies, _ = transport.exchange(
                "evaluate", nodes, weights, self._round_config(final, 0), settings
            )
            scored = [r for r in replies if r.error is None]
            for r in replies:
                if r.error is not None:
                    state["failed"].append(
                        {"round": final, "phase": "final validation", "site": r.site, "error": r.error}
                    )
            if scored:
                self._record_validation(state, final, _weighted_validation(scored, "num-examples"))
        state.update(phase="finished", finished=True)
        self._write_state(state)
        if state["best"] is None:  # no validation at all: keep the last model, say so
            record = {
                "round": final,
                "val_dice": None,
                "sites": [],
                "note": "no site validated; last round kept",
            }
            models.write_model_folder(
                self.folder / MODEL_FOLDER, weights, self.plans, self.dataset_json, settings.trainer, record
            )
        return state


def prepare_federation(
    folder: Path, plans: dict, raw_dataset_json: dict, settings: Settings, resume: bool
) -> Path:
    """Write the federation folder (settings, shared plans, model dataset.json); refuse to overwrite a run."""
    from dataclasses import asdict

    folder = Path(folder)
    if read_state(folder) is not None and not resume:
        raise FederationError(
            f"{folder}: holds a federated run already; pass --resume or choose another folder"
        )
    if resume and read_state(folder) is None:
        raise FederationError(f"{folder}: nothing to resume (no {STATE_FILE})")
    folder.mkdir(parents=True, exist_ok=True)
    if resume:
        old = json.loads((folder / PLANS_FILE).read_text(encoding="utf-8"))
        if plans_hash(old) != plans_hash(plans):
            raise FederationError(f"{folder}: the run was started with other plans; cannot resume with these")
    write_json_atomic(folder / SETTINGS_FILE, asdict(settings))
    write_json_atomic(folder / PLANS_FILE, plans)
    write_json_atomic(folder / DATASET_FILE, models.model_dataset_json(raw_dataset_json))
    return folder


def weights_nbytes(weights: dict) -> int:
    return int(sum(np.asarray(v).nbytes for v in weights.values()))
