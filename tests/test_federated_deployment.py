"""A real Flower deployment on one machine: a SuperLink and two SuperNodes as separate processes, TLS and
SuperNode authentication on (certificates and node keys made here), 2 rounds x 1 epoch of nnUNetTrainerRecur
on a tiny 2-site cohort. One SuperNode is killed during round 2; the round completes with the other site,
and the best round's model folder predicts with the stock `nnUNetv2_predict`. Every process is stopped by
`run_federation`, whatever happens.

Then Flower's simulation engine (Ray) runs round 1 on the same cohort with the same seed through
`recur federated simulate`, and its global weights after round 1 must equal the deployment's bit for bit
(both tests pin the sites' torch threads to 1: see docs/federated.md). The two tests share the cohort, so
the comparison costs one simulated round, not a second deployment; run them together (the second skips
without the first's round-1 weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("flwr")

sys.path.insert(0, str(Path(__file__).parent))
import federated_cohort  # noqa: E402

from nnunet_recur.federated import deployment, rounds  # noqa: E402
from nnunet_recur.federated import model_folder as models  # noqa: E402
from nnunet_recur.federated.simulation import is_ray_command  # noqa: E402

#: A narrower network than the planned one (every site gets the same shared plans, so this is legitimate):
#: keeps a CPU round at a few seconds.
TINY_FEATURES = [4, 8, 16, 32]
#: torch's intra-op threads per ClientApp. Ray gives each simulated site OMP_NUM_THREADS = its 1 CPU; a
#: SuperNode's ClientApp would use every core, and 2 threads vs 1 changes the round-1 weights by ~3e-4.
SITE_THREADS = "1"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    info = federated_cohort.build(tmp_path_factory.mktemp("federated"))
    plans = json.loads(info["plans"].read_text())
    plans["configurations"]["3d_recur"]["architecture"]["arch_kwargs"]["features_per_stage"] = TINY_FEATURES
    for folder in info["sites"].values():
        (folder / "nnUNetRecurPlans.json").write_text(json.dumps(plans))
    info["shared_plans"] = plans
    return info


def test_tls_deployment_survives_a_killed_site_and_its_model_predicts(cohort, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", SITE_THREADS)  # the SuperNodes inherit it (see SITE_THREADS)
    federation = cohort["root"] / "federation"
    settings = rounds.Settings(
        rounds=2,
        local_epochs=1,
        min_sites=1,
        expected_sites=2,
        straggler_timeout_s=10.0,
        wait_for_sites_s=120.0,
        round_timeout_s=300.0,
    )
    raw_dataset_json = json.loads(cohort["dataset_json"].read_text())
    rounds.prepare_federation(federation, cohort["shared_plans"], raw_dataset_json, settings, resume=False)
    certificates = deployment.make_certificates(federation / "certs")
    keys = {name: deployment.make_node_keys(federation / "keys", name)[0] for name in cohort["sites"]}
    sites = [  # SuperNode authentication on: each site's public key registered, its private key at the site
        deployment.LocalSite(name, folder, cohort["root"] / f"work_{name}", auth_key=keys[name])
        for name, folder in cohort["sites"].items()
    ]
    killed: dict = {}
    started: dict = {}

    def kill_site_b_in_round_2(processes, state):
        started.update(processes.started)
        if state.get("current_round") == 2 and not killed:
            processes.kill("site SITE_B")
            killed["round"] = 2

    state = deployment.run_federation(
        federation,
        sites,
        deployment.Certificates(certificates["ca"], certificates["cert"], certificates["key"]),
        on_poll=kill_site_b_in_round_2,
        node_auth=True,
        timeout_s=420,
    )
    assert all(process.poll() is not None for process in started.values())  # nothing left running
    assert killed == {"round": 2}
    assert state["finished"] and state["rounds_done"] == 2
    first, second = state["history"]
    assert sorted(first["sites"]) == ["SITE_A", "SITE_B"] and first["n_cases"] == {"SITE_A": 2, "SITE_B": 1}
    assert second["sites"] == ["SITE_A"]
    assert any(f["round"] == 2 and f["site"] == "SITE_B" for f in state["failed"])
    assert first["global_val_dice"] is not None and second["global_val_dice"] is not None
    assert first["bytes_sent"] > 0 and first["bytes_received"] > 0
    # TLS was on: the SuperLink served HTTPS, the clients were given the CA
    config = (federation / "flwr_home" / "config.toml").read_text()
    assert "root-certificates" in config and "insecure" not in config
    assert "insecure" not in (federation / "logs" / "superlink.log").read_text().lower()
    assert "SuperNode authentication is disabled" not in (federation / "logs" / "superlink.log").read_text()

    model = federation / "model"
    best = state["best"]
    assert best["round"] in (1, 2) and (model / "fold_0" / "checkpoint_best.pth").is_file()
    # the stock command looks in $nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>
    results = Path(cohort["env"]["nnUNet_results"]) / federated_cohort.DATASET
    results.mkdir(parents=True, exist_ok=True)
    (results / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur").symlink_to(model, target_is_directory=True)
    out = cohort["root"] / "predicted"
    env = dict(cohort["env"], nnUNet_n_proc_DA="0")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "nnUNetv2_predict"),
            "-i",
            str(cohort["images_ts"]),
            "-o",
            str(out),
            "-d",
            str(federated_cohort.DATASET_ID),
            "-c",
            "3d_recur",
            "-p",
            "nnUNetRecurPlans",
            "-tr",
            "nnUNetTrainerRecur",
            "-f",
            "0",
            "-chk",
            "checkpoint_best.pth",
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import SimpleITK as sitk

    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "FED_006.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort["labels_ts"] / "FED_006.nii.gz")))
    assert predicted.shape == reference.shape and set(np.unique(predicted)) <= {0, 1}


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (process group, command line) of every process (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                group = int(stat[stat.rindex(")") + 2 :].split()[2])
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (group, command)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftover processes")
def test_the_simulation_engine_gives_the_deployments_round_1_weights(cohort):
    pytest.importorskip("ray")
    deployed = cohort["root"] / "federation" / "rounds" / "global_round_001.npz"  # kept: the run had 2 rounds
    if not deployed.is_file():
        pytest.skip("needs the round-1 weights of the deployment test above (run the whole module)")
    federation = cohort["root"] / "simulation"
    sites = [f"--site={name}={folder}" for name, folder in cohort["sites"].items()]
    ray_before = {pid for pid, (_, command) in _processes().items() if is_ray_command(command)}
    env = dict(os.environ, OMP_NUM_THREADS=SITE_THREADS)
    started = time.monotonic()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "recur"), "federated", "simulate", str(federation), *sites,
         "--rounds", "1", "--local-epochs", "1", "--seed", "0", "--min-sites", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    seconds = time.monotonic() - started
    assert process.returncode == 0, output[-4000:]
    assert "ClientAppActor" in output  # the sites ran in Ray actors
    # nothing of the run is left: no process in its group, no new raylet, gcs_server or ray:: worker
    deadline = time.monotonic() + 5  # a process may still be exiting when the command returns
    while (left := {pid: cmd for pid, (group, cmd) in _processes().items() if group == process.pid}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not left, left
    ray_after = {pid: cmd for pid, (_, cmd) in _processes().items() if is_ray_command(cmd)}
    assert not set(ray_after) - ray_before, ray_after

    state = rounds.read_state(federation)
    assert state["finished"] and state["rounds_done"] == 1
    assert state["history"][0]["n_cases"] == {"SITE_A": 2, "SITE_B": 1}
    simulated = models.load_weights(federation / "rounds" / "global_round_001.npz")
    reference = models.load_weights(deployed)
    assert set(simulated) == set(reference)
    different = [k for k in reference if not np.array_equal(simulated[k], reference[k])]
    assert not different, (
        different[:5],
        max(float(np.abs(simulated[k] - reference[k]).max()) for k in different),
    )
    print(f"simulation engine: 1 round x 1 epoch, 2 sites, {seconds:.1f} s")
