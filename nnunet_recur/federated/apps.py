"""The Flower ClientApp and ServerApp (Flower's Message API, flwr 1.4x).

What a site sends back, and nothing else (a test inspects it): the ArrayRecord "arrays" (the network's
parameter arrays, by name), the MetricRecord "metrics" (`rounds.TRAIN_METRICS` / `EVALUATE_METRICS`:
numbers of cases, train loss, validation Dice and loss) and the ConfigRecord "site" holding the site's name.

A SuperNode describes its site with ``--node-config 'site-name="A" data="/path/preprocessed/Dataset..."
work="/path/work"'``; the ServerApp reads the federation folder from the run config ``federation-dir``.

Flower's simulation engine (simulation.py) runs the same handlers: `simulation_apps` wraps them in a ServerApp
and a ClientApp that know the federation folder and the site table, since a simulated SuperNode's
node_config holds only its ``partition-id`` (the site's index in that table).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from nnunet_recur.federated import rounds

log = logging.getLogger("nnunet_recur.federated")


def to_array_record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    # np.array, not np.ascontiguousarray: the latter turns a 0-d buffer (a norm layer's counter) into 1-d
    return ArrayRecord(
        {name: Array.from_numpy_ndarray(np.array(v, order="C")) for name, v in weights.items()}
    )


def from_array_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


# ------------------------------------------------------------------------------------------------ site
def site_reply(site: str, result, kind: str) -> RecordDict:
    """The content a site sends: arrays (train only), the named metrics, its name."""
    if kind == "train":
        metrics = {
            "num-examples": result.n_train,
            "num-val": result.n_val,
            "train-loss": float(result.train_loss),
            "val-dice": result.val_dice,
            "val-loss": result.val_loss,
        }
    else:
        metrics = {"num-examples": result.n_val, "val-dice": result.val_dice, "val-loss": result.val_loss}
    content = {"metrics": MetricRecord(metrics), "site": ConfigRecord({"name": site})}
    if kind == "train":
        content["arrays"] = to_array_record(result.weights)
    return RecordDict(content)


def _site_round(msg: Message, node, node_id: int, kind: str) -> Message:
    """One message at one site; `node` describes the site (site-name, data, work, device)."""
    from nnunet_recur.federated.local_training import round_seed, run_round
    from nnunet_recur.federated.shared_plans import require_shared_plans

    site = str(node.get("site-name", f"node {node_id}"))
    data = Path(str(node["data"]))
    work = Path(str(node.get("work", data.parent / f"federated_work_{site}")))
    config = msg.content["config"]
    plans = require_shared_plans(data, str(config["plans-sha256"]), site)
    weights = from_array_record(msg.content["arrays"])
    epochs = int(config["local-epochs"]) if kind == "train" else 0
    result = run_round(
        data,
        work,
        plans,
        weights,
        str(config["trainer"]),
        epochs,
        float(config["proximal-mu"]),
        str(node.get("device", "cpu")),
        seed=round_seed(int(config["seed"]), int(config["server-round"])),
    )
    return Message(site_reply(site, result, kind), reply_to=msg)


client_app = ClientApp()


@client_app.train()
def site_train(msg: Message, context: Context) -> Message:
    return _site_round(msg, context.node_config, context.node_id, "train")


@client_app.evaluate()
def site_evaluate(msg: Message, context: Context) -> Message:
    return _site_round(msg, context.node_config, context.node_id, "evaluate")


# ---------------------------------------------------------------------------------------------- server
class GridTransport:
    """`rounds.Federation`'s transport over a Flower Grid: push, then pull until done or timed out."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.names: dict[int, str] = {}

    def node_ids(self):
        return list(self.grid.get_node_ids())

    def exchange(self, kind: str, nodes: list[int], weights, config: dict, settings) -> tuple[list, int]:
        arrays = to_array_record(weights)
        messages = [
            Message(
                RecordDict({"arrays": arrays, "config": ConfigRecord(config)}),
                message_type=kind,
                dst_node_id=node,
            )
            for node in nodes
        ]
        ids = list(self.grid.push_messages(messages))
        by_id = dict(zip(ids, nodes, strict=False))
        sent = arrays.count_bytes() * len(ids)
        pending, replies = set(ids), []
        started, enough_at = time.monotonic(), None
        while pending:
            for message in self.grid.pull_messages(list(pending)):
                pending.discard(message.metadata.reply_to_message_id)
                replies.append(self._reply(message, by_id.get(message.metadata.reply_to_message_id)))
            ok = sum(r.error is None for r in replies)
            now = time.monotonic()
            if enough_at is None and ok >= settings.min_sites:
                enough_at = now
            if pending and enough_at is not None and now - enough_at > settings.straggler_timeout_s:
                break
            if pending and now - started > settings.round_timeout_s:
                break
            if pending:
                time.sleep(0.5)
        for missing in pending:
            node = by_id.get(missing)
            replies.append(
                rounds.Reply(node or -1, self.names.get(node, f"node {node}"), error="no reply in time")
            )
        return replies, int(sent)

    def _reply(self, message: Message, node: int | None) -> rounds.Reply:
        node = (
            node if node is not None else message.metadata.src_node_id
        )  # an error reply comes from the link
        if message.has_error():
            return rounds.Reply(node, self.names.get(node, f"node {node}"), error=str(message.error.reason))
        content = message.content
        site = str(content["site"]["name"]) if "site" in content else f"node {node}"
        self.names[node] = site
        metrics = {k: v for k, v in content["metrics"].items()} if "metrics" in content else {}
        weights = from_array_record(content["arrays"]) if "arrays" in content else None
        size = content["arrays"].count_bytes() if "arrays" in content else 0
        return rounds.Reply(node, site, metrics=metrics, weights=weights, bytes_received=int(size))


server_app = ServerApp()


def _serve(grid: Grid, folder: Path, resume: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s federation: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        rounds.Federation(folder).run(GridTransport(grid), resume=resume)
    finally:
        log.removeHandler(handler)


@server_app.main()
def federation_main(grid: Grid, context: Context) -> None:
    folder = Path(str(context.run_config["federation-dir"]))
    _serve(grid, folder, bool(context.run_config.get("resume", False)))


# ------------------------------------------------------------------------------------------ simulation
def simulation_apps(federation_dir: Path, sites: list[dict], resume: bool) -> tuple[ServerApp, ClientApp]:
    """The deployment's handlers for Flower's simulation engine: simulated SuperNode k is `sites[k]`
    (a dict like a SuperNode's node_config: site-name, data, work, device)."""
    folder = Path(federation_dir)
    table = [dict(site) for site in sites]

    def site_of(context: Context) -> dict:
        return table[int(context.node_config["partition-id"])]

    simulated_server = ServerApp()

    @simulated_server.main()
    def simulated_federation(grid: Grid, context: Context) -> None:
        _serve(grid, folder, resume)

    simulated_client = ClientApp()

    @simulated_client.train()
    def simulated_train(msg: Message, context: Context) -> Message:
        return _site_round(msg, site_of(context), context.node_id, "train")

    @simulated_client.evaluate()
    def simulated_evaluate(msg: Message, context: Context) -> Message:
        return _site_round(msg, site_of(context), context.node_id, "evaluate")

    return simulated_server, simulated_client
