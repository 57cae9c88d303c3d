"""Federated training, the parts without a network: FedAvg weighting, the shape check, shared plans, the
fingerprint merge against the union of the cases, and exactly what a site's reply holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flwr")

from nnunet_recur.federated import fedavg, fingerprint, rounds, shared_plans  # noqa: E402
from nnunet_recur.federated.apps import from_array_record, site_reply  # noqa: E402
from nnunet_recur.federated.local_training import RoundResult  # noqa: E402


def _weights(value: float, shape=(2, 3)) -> dict:
    return {"conv.weight": np.full(shape, value, np.float32), "norm.count": np.array(4 * value, np.int64)}


def test_fedavg_weights_by_training_cases():
    updates = [fedavg.SiteUpdate("A", _weights(1.0), 3), fedavg.SiteUpdate("B", _weights(5.0), 1)]
    assert np.allclose(fedavg.case_weights(updates), [0.75, 0.25])
    averaged = fedavg.federated_average(updates)
    assert averaged["conv.weight"].dtype == np.float32
    assert np.allclose(averaged["conv.weight"], 0.75 * 1.0 + 0.25 * 5.0)  # 2.0, not the plain mean 3.0
    assert averaged["norm.count"].dtype == np.int64 and int(averaged["norm.count"]) == 8
    with pytest.raises(ValueError, match="no training case.*C"):
        fedavg.case_weights([fedavg.SiteUpdate("C", _weights(1.0), 0)])
    with pytest.raises(ValueError, match="no site update"):
        fedavg.federated_average([])


def test_wrong_shape_weights_are_refused_naming_the_site():
    reference = _weights(0.0)
    with pytest.raises(fedavg.WrongShapeError, match=r"site Centre B: .*conv.weight has shape \(3, 3\)"):
        fedavg.check_shapes(reference, fedavg.SiteUpdate("Centre B", _weights(1.0, (3, 3)), 2))
    missing = {"conv.weight": reference["conv.weight"]}
    with pytest.raises(fedavg.WrongShapeError, match="site C: .*missing \\['norm.count'\\]"):
        fedavg.check_shapes(reference, fedavg.SiteUpdate("C", missing, 2))
    assert fedavg.weighted_mean([0.5, 0.9, None], [3, 1, 4]) == pytest.approx(0.6)


def test_the_server_refuses_a_wrong_shaped_update_and_averages_the_others(tmp_path):
    plans = {"dataset_name": "Dataset1_X", "configurations": {"3d_recur": {}}}
    rounds.prepare_federation(
        tmp_path,
        plans,
        {"labels": {"background": 0, "relapse": 1}, "channel_names": {}},
        rounds.Settings(),
        resume=False,
    )
    federation = rounds.Federation(tmp_path)
    state = federation._new_state()
    replies = [
        rounds.Reply(1, "A", {"num-examples": 3}, _weights(1.0)),
        rounds.Reply(2, "B", {"num-examples": 2}, _weights(1.0, (4, 4))),
        rounds.Reply(3, "C", error="no reply in time"),
    ]
    updates, scored = federation._sorted_replies(state, 1, replies, _weights(0.0))
    assert [u.site for u in updates] == ["A"] and [r.site for r in scored] == ["A", "B"]
    assert state["refused"][0]["site"] == "B" and "site B: weights refused" in state["refused"][0]["reason"]
    assert state["failed"] == [{"round": 1, "site": "C", "error": "no reply in time"}]


def test_plans_hash_ignores_the_dataset_name_and_a_site_with_other_plans_is_refused(tmp_path):
    plans = {"dataset_name": "Dataset501_A", "configurations": {"3d_recur": {"patch_size": [16, 24, 24]}}}
    renamed = dict(plans, dataset_name="Dataset777_B")
    assert shared_plans.plans_hash(plans) == shared_plans.plans_hash(renamed)
    other = json.loads(json.dumps(plans))
    other["configurations"]["3d_recur"]["patch_size"] = [16, 32, 32]
    assert shared_plans.first_difference(plans, other) == "configurations.3d_recur.patch_size"
    (tmp_path / "nnUNetRecurPlans.json").write_text(json.dumps(other))
    with pytest.raises(
        shared_plans.PlansMismatchError, match="site Centre C: .* differs from the federation"
    ):
        shared_plans.require_shared_plans(tmp_path, shared_plans.plans_hash(plans), "Centre C")
    (tmp_path / "nnUNetRecurPlans.json").write_text(json.dumps(renamed))
    assert shared_plans.require_shared_plans(tmp_path, shared_plans.plans_hash(plans), "B") == renamed


def test_a_site_sends_only_parameter_arrays_the_named_metrics_and_its_name():
    weights = _weights(2.0)
    result = RoundResult(weights, n_train=3, n_val=1, train_loss=0.8, val_dice=0.4, val_loss=0.6)
    content = site_reply("Centre A", result, "train")
    assert set(content.keys()) == {"arrays", "metrics", "site"}
    assert set(content["metrics"].keys()) == set(rounds.TRAIN_METRICS)
    assert dict(content["site"]) == {"name": "Centre A"}
    sent = from_array_record(content["arrays"])
    assert set(sent) == set(weights) and all(np.array_equal(sent[k], weights[k]) for k in weights)
    evaluation = site_reply("Centre A", RoundResult(None, 0, 1, None, 0.4, 0.6), "evaluate")
    assert set(evaluation.keys()) == {"metrics", "site"}
    assert set(evaluation["metrics"].keys()) == set(rounds.EVALUATE_METRICS)


def _union_properties(values: np.ndarray) -> dict:
    """What nnU-Net's fingerprint extractor computes on the pooled samples."""
    low, median, high = np.percentile(values, (0.5, 50.0, 99.5))
    return {
        "mean": values.mean(),
        "median": median,
        "std": values.std(),
        "min": values.min(),
        "max": values.max(),
        "percentile_99_5": high,
        "percentile_00_5": low,
    }


def test_fingerprint_merge_equals_the_union_of_the_cases():
    rng = np.random.default_rng(0)
    sites, union = [], {"spacings": [], "shapes": [], "sizes": [], "values": [[], []]}
    for site, (n_cases, ct_shift, suv_scale) in enumerate([(6, 0.0, 1.0), (3, 40.0, 1.04), (2, -25.0, 0.97)]):
        cases = []
        for _ in range(n_cases):
            spacing = [float(rng.choice([2.0, 3.0])), 0.98, 0.98]
            shape = [int(rng.integers(80, 120)), 200, 200]
            size = float(rng.uniform(0.5, 0.9))
            ct = rng.normal(40 + ct_shift, 60, 1000)
            suv = rng.gamma(2.0, 1.5, 1000) * suv_scale
            cases.append((shape, spacing, [ct, suv], None, size))
            union["spacings"].append(spacing)
            union["shapes"].append(shape)
            union["sizes"].append(size)
            union["values"][0].append(ct)
            union["values"][1].append(suv)
        sites.append(fingerprint.site_summary(cases, seed=site))
    merged = fingerprint.merge(sites)
    # lists: exactly the union (order aside), so nnU-Net's median spacing / shape are the union's
    assert sorted(map(tuple, merged["spacings"])) == sorted(map(tuple, union["spacings"]))
    assert sorted(map(tuple, merged["shapes_after_crop"])) == sorted(map(tuple, union["shapes"]))
    assert merged["median_relative_size_after_cropping"] == pytest.approx(np.median(union["sizes"]))
    for channel in (0, 1):
        values = np.concatenate(union["values"][channel])
        expected = _union_properties(values)
        got = merged["foreground_intensity_properties_per_channel"][str(channel)]
        for key in ("mean", "std", "min", "max"):  # exact (pooled moments)
            assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
        tolerance = 0.002 * (expected["percentile_99_5"] - expected["percentile_00_5"])  # stated tolerance
        for key in ("median", "percentile_00_5", "percentile_99_5"):
            assert abs(got[key] - expected[key]) <= tolerance, (channel, key, got[key], expected[key])
    shared = json.dumps(sites[0])
    assert "quantiles" in shared and len(sites[0]["channels"][0]["quantiles"]) == 1001


class ArithmeticSites:
    """Sites that answer at once without training (each adds its number to every weight): enough to test the
    server's round loop, resume and best-round bookkeeping without nnU-Net; the real sites run in
    tests/test_federated_deployment.py."""

    def __init__(self, sites: dict[int, str], dice: dict[int, float]):
        self.sites, self.dice, self.calls = sites, dice, []

    def node_ids(self):
        return list(self.sites)

    def exchange(self, kind, nodes, weights, config, settings):
        self.calls.append((kind, config["server-round"], sorted(nodes)))
        replies = []
        for node in nodes:
            metrics = {
                "num-examples": 2 * node,
                "num-val": 1,
                "train-loss": 0.5,
                "val-dice": self.dice[node],
                "val-loss": 0.5,
            }
            new = {k: v + node for k, v in weights.items()} if kind == "train" else None
            if kind == "evaluate":
                metrics = {"num-examples": 1, "val-dice": self.dice[node], "val-loss": 0.5}
            replies.append(rounds.Reply(node, self.sites[node], metrics, new, bytes_received=8))
        return replies, 8 * len(nodes)


def test_a_restarted_server_resumes_after_the_last_completed_round(tmp_path):
    import torch

    from nnunet_recur.federated import model_folder

    plans = {"dataset_name": "Dataset1_X", "configurations": {"3d_recur": {}}}
    settings = rounds.Settings(rounds=3, min_sites=1, expected_sites=2, wait_for_sites_s=1.0)
    rounds.prepare_federation(tmp_path, plans, {"labels": {"background": 0, "relapse": 1}}, settings, False)
    # the server stopped after round 1: its state and the round-1 global weights are on disk
    model_folder.save_weights(tmp_path / "rounds" / "global_round_001.npz", {"w": np.zeros(2, np.float32)})
    state = rounds.Federation(tmp_path)._new_state()
    state.update(
        rounds_done=1,
        history=[
            {
                "round": 1,
                "sites": ["A", "B"],
                "n_cases": {},
                "train_loss": 0.5,
                "seconds": 1.0,
                "bytes_sent": 8,
                "bytes_received": 8,
            }
        ],
    )
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(rounds.FederationError, match="--resume"):
        rounds.prepare_federation(tmp_path, plans, {"labels": {}}, settings, resume=False)
    sites = ArithmeticSites({1: "A", 2: "B"}, {1: 0.2, 2: 0.8})
    final = rounds.Federation(tmp_path).run(sites, resume=True)
    assert [call[:2] for call in sites.calls] == [("train", 2), ("train", 3), ("evaluate", 3)]
    assert (
        final["rounds_done"] == 3
        and final["finished"]
        and [h["round"] for h in final["history"]] == [1, 2, 3]
    )
    # FedAvg by cases (A 2 cases adds 1, B 4 cases adds 2): +5/3 per round from the resumed zeros
    last = model_folder.load_weights(tmp_path / "rounds" / "global_round_003.npz")["w"]
    assert np.allclose(last, 2 * 5 / 3)
    # global validation Dice: case-weighted (1 validation case each) = 0.5; best = the first scored round
    assert final["history"][0]["global_val_dice"] == pytest.approx(0.5) and final["best"]["round"] == 1
    checkpoint = torch.load(tmp_path / "model" / "fold_0" / "checkpoint_best.pth", weights_only=False)
    assert checkpoint["federated"]["round"] == 1 and checkpoint["trainer_name"] == "nnUNetTrainerRecur"
    assert torch.equal(checkpoint["network_weights"]["w"], torch.zeros(2))
    assert (tmp_path / "model" / "plans.json").is_file() and (tmp_path / "model" / "dataset.json").is_file()


def test_federated_commands_refuse_bad_input_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from nnunet_recur.cli import app

    runner = CliRunner()
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"dataset_name": "Dataset1_X", "configurations": {"3d_recur": {}}}))
    no_tls = runner.invoke(app, ["federated", "server", str(tmp_path / "fed"), "--plans", str(plans)])
    assert no_tls.exit_code == 2 and "--certificates DIR (TLS) or --insecure" in no_tls.output
    no_plans = runner.invoke(
        app,
        [
            "federated",
            "site",
            "--data",
            str(tmp_path),
            "--name",
            "A",
            "--superlink",
            "127.0.0.1:9091",
            "--insecure",
        ],
    )
    assert no_plans.exit_code == 2 and "nnUNetRecurPlans.json: not found" in no_plans.output
    bad_site = runner.invoke(app, ["federated", "simulate", str(tmp_path / "fed"), "--site", "A"])
    assert bad_site.exit_code == 2 and "expected NAME=DATA" in bad_site.output
    wrong_trainer = runner.invoke(
        app,
        [
            "federated",
            "server",
            str(tmp_path / "fed"),
            "--plans",
            str(plans),
            "--dataset-json",
            str(plans),
            "--insecure",
            "--trainer",
            "nnUNetTrainer",
        ],
    )
    assert wrong_trainer.exit_code == 2 and "is not one of nnunet-recur's trainers" in wrong_trainer.output
    for result in (no_tls, no_plans, bad_site, wrong_trainer):
        assert "Traceback" not in result.output


def test_initial_weights_from_a_pretrained_checkpoint_must_fit_the_shared_network(tmp_path):
    import torch

    from nnunet_recur.federated.model_folder import checkpoint_weights

    reference = {"w": np.zeros((2, 3), np.float32)}
    good = tmp_path / "pretrained.pth"
    torch.save({"network_weights": {"w": torch.ones(2, 3)}}, good)
    assert np.array_equal(checkpoint_weights(good, reference)["w"], np.ones((2, 3), np.float32))
    bad = tmp_path / "other.pth"
    torch.save({"network_weights": {"w": torch.ones(3, 3)}}, bad)
    with pytest.raises(ValueError, match="other.pth: does not fit the shared plans' network"):
        checkpoint_weights(bad, reference)


def test_every_round_trains_under_its_own_seed(tmp_path):
    """Regression: every round re-seeded the site's trainer with fold 0's seed, and the trainer's case order
    and flips are functions of (seed, epoch) with the epoch restarting at each round, so every round replayed
    the same batches. The server now sends its seed with the round number; sites train under round_seed."""
    from nnunet_recur.federated.local_training import round_seed
    from nnunet_recur.trainers.sampling import epoch_permutation

    plans = {"dataset_name": "Dataset1_X", "configurations": {"3d_recur": {}}}
    settings = rounds.Settings(rounds=3, min_sites=1, expected_sites=1, wait_for_sites_s=1.0, seed=7)
    rounds.prepare_federation(tmp_path, plans, {"labels": {"background": 0, "relapse": 1}}, settings, False)
    from nnunet_recur.federated import model_folder  # start from saved round-0 weights (no network needed)

    model_folder.save_weights(tmp_path / "rounds" / "global_round_000.npz", {"w": np.zeros(2, np.float32)})
    (tmp_path / "state.json").write_text(json.dumps(rounds.Federation(tmp_path)._new_state()))
    configs = []

    class Recording(ArithmeticSites):
        def exchange(self, kind, nodes, weights, config, settings):
            configs.append(dict(config))
            return super().exchange(kind, nodes, weights, config, settings)

    rounds.Federation(tmp_path).run(Recording({1: "A"}, {1: 0.5}), resume=True)
    train = [c for c in configs if c["server-round"] and c.get("local-epochs")]
    seeds = [round_seed(c["seed"], c["server-round"]) for c in train]
    assert [c["server-round"] for c in train] == [1, 2, 3] and len(set(seeds)) == 3
    assert seeds == [round_seed(7, r) for r in (1, 2, 3)]  # a function of (federation seed, round) only
    orders = {tuple(epoch_permutation(6, 0, s)) for s in seeds}  # each round's first-epoch case order
    assert len(orders) == 3
