"""`recur federated server|site|simulate`: Flower's deployment and simulation engines, the paper's trainer.

The commands parse options and start processes; the work is in rounds.py (server loop), local_training.py
(a site's round), deployment.py (SuperLink, SuperNodes, `flwr run`) and simulation.py (Flower's simulation
engine on Ray). Flower is imported on use only,
so `recur --help` works without the `[federated]` extra. docs/federated.md describes the workflows.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nnunet_recur.device_choice import DEVICE_HELP, DeviceChoice, DeviceError, resolve_device
from nnunet_recur.exit_status import BAD_INPUT, FAILED_CASES
from nnunet_recur.federated import cli_plans

app = typer.Typer(
    help="Federated training on Flower: sites keep their images and share model weights only "
    "(docs/federated.md). Needs the \\[federated] extra (flwr).",
    no_args_is_help=True,
)


def _fail(message: str, status: int = BAD_INPUT):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(status)


def _require_flower() -> None:
    try:
        import flwr  # noqa: F401
    except ImportError:
        _fail("Flower is not installed: pip install 'nnunet-recur[federated]'")


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{path}: unreadable {what} ({exc})")


def _settings(
    *,
    rounds,
    local_epochs,
    min_sites,
    sites,
    trainer,
    fedprox_mu,
    seed,
    straggler,
    round_timeout,
    wait,
    start=None,
):
    """The round settings from the command's options (keyword-only: eleven values of alike types)."""
    from nnunet_recur.federated.rounds import Settings

    if start is not None and not Path(start).is_file():
        _fail(f"--initial-weights {start}: not found")
    if min_sites < 1 or min_sites > sites:
        _fail(f"--min-sites {min_sites}: must be between 1 and --sites ({sites})")
    return Settings(
        rounds=rounds,
        local_epochs=local_epochs,
        min_sites=min_sites,
        expected_sites=sites,
        trainer=trainer,
        proximal_mu=fedprox_mu,
        seed=seed,
        straggler_timeout_s=straggler,
        round_timeout_s=round_timeout,
        wait_for_sites_s=wait,
        initial_checkpoint=None if start is None else str(Path(start).resolve()),
    )


def _prepare(federation: Path, plans: Path | None, dataset_json: Path | None, settings, resume: bool) -> None:
    from nnunet_recur.federated.model_folder import trainer_class_by_name
    from nnunet_recur.federated.rounds import PLANS_FILE, FederationError, prepare_federation

    try:
        trainer_class_by_name(settings.trainer)
    except ValueError as exc:
        _fail(f"--trainer: {exc}")
    if resume and plans is None:
        plans = federation / PLANS_FILE
    if plans is None or dataset_json is None and not resume:
        _fail("--plans and --dataset-json are required (the shared plans and the raw dataset.json)")
    plan_data = _read_json(plans, "plans")
    dataset = _read_json(dataset_json, "dataset.json") if dataset_json else None
    if dataset is None:  # resume: the model's dataset.json is in the folder already
        dataset = _read_json(federation / "dataset.json", "dataset.json")
    try:
        prepare_federation(federation, plan_data, dataset, settings, resume)
    except FederationError as exc:
        _fail(str(exc))


def _report(state: dict, federation: Path) -> None:
    best = state.get("best") or {}
    for entry in state.get("history", []):
        dice = entry.get("global_val_dice")
        typer.echo(
            f"round {entry['round']}: sites {', '.join(entry['sites'])}; global validation Dice "
            f"{'n/a' if dice is None else f'{dice:.4f}'}; "
            f"{entry['bytes_sent'] + entry['bytes_received']} bytes"
        )
    for refused in state.get("refused", []):
        typer.echo(f"refused: round {refused['round']}: {refused['reason']}", err=True)
    for failed in state.get("failed", []):
        typer.echo(f"left out: round {failed['round']}: site {failed['site']}: {failed['error']}", err=True)
    typer.echo(f"best round {best.get('round')} -> nnU-Net model folder {federation / 'model'}")


def server(
    federation: Path = typer.Argument(..., help="the federation folder (settings, state, weights, model)"),
    plans: Path | None = typer.Option(
        None, "--plans", help="the shared nnUNetRecurPlans.json every site uses"
    ),
    dataset_json: Path | None = typer.Option(
        None, "--dataset-json", help="the raw dataset.json (labels, channels)"
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, help="federated rounds"),
    local_epochs: int = typer.Option(1, "--local-epochs", min=1, help="epochs each site trains per round"),
    sites: int = typer.Option(2, "--sites", min=1, help="how many sites to wait for before a round"),
    min_sites: int = typer.Option(1, "--min-sites", min=1, help="fewest site updates a round needs"),
    trainer: str = typer.Option(
        "nnUNetTrainerRecur", "--trainer", help="the sites' trainer (e.g. nnUNetTrainerRecurFinetune)"
    ),
    fedprox_mu: float = typer.Option(
        0.0, "--fedprox-mu", min=0.0, help="FedProx proximal weight (0: FedAvg)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the initial weights"),
    straggler_timeout: float = typer.Option(
        600.0, "--straggler-timeout", help="seconds to wait for the other sites once --min-sites replied"
    ),
    round_timeout: float = typer.Option(24 * 3600.0, "--round-timeout", help="longest round in seconds"),
    wait_for_sites: float = typer.Option(
        3600.0, "--wait-for-sites", help="seconds to wait for --sites to connect"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address the SuperLink listens on"),
    port: int = typer.Option(9091, "--port", help="the SuperLink's port (Fleet and Control APIs)"),
    certificates: Path | None = typer.Option(
        None, "--certificates", help="folder with ca.crt, server.pem, server.key (TLS)"
    ),
    insecure: bool = typer.Option(False, "--insecure", help="no TLS (a closed test network only)"),
    resume: bool = typer.Option(False, "--resume", help="continue after the last completed round"),
    initial_weights: Path | None = typer.Option(
        None,
        "--initial-weights",
        help="an nnU-Net checkpoint (e.g. pre-trained on HECKTOR) to start from; with the fine-tune trainer",
    ),
    supernode_auth: bool = typer.Option(
        False,
        "--supernode-auth",
        help="accept only SuperNodes whose public key is registered (--register-key)",
    ),
    register_key: list[Path] = typer.Option(
        [], "--register-key", help="a site's public key (OpenSSH, EC) to register; repeat per site"
    ),
) -> None:
    """Run the SuperLink and the ServerApp: FedAvg weighted by cases over the sites that connect.

    Sites connect with `recur federated site`. The best round (case-weighted validation Dice) is written to
    FEDERATION/model as a standard nnU-Net model folder; FEDERATION/state.json records every round.

    Example: recur federated server fed --plans shared/nnUNetRecurPlans.json --dataset-json raw/dataset.json
    --sites 3 --rounds 50 --certificates certs
    """
    _require_flower()
    from nnunet_recur.federated import deployment

    tls = None
    if certificates is not None:
        tls = deployment.Certificates(
            certificates / "ca.crt", certificates / "server.pem", certificates / "server.key"
        )
        for path in (tls.ca, tls.cert, tls.key):
            if not path.is_file():
                _fail(f"{path}: not found (--certificates needs ca.crt, server.pem, server.key)")
    elif not insecure:
        _fail("give --certificates DIR (TLS) or --insecure")
    settings = _settings(
        rounds=rounds, local_epochs=local_epochs, min_sites=min_sites, sites=sites, trainer=trainer,
        fedprox_mu=fedprox_mu, seed=seed, straggler=straggler_timeout, round_timeout=round_timeout,
        wait=wait_for_sites, start=initial_weights,
    )  # fmt: skip
    _prepare(federation, plans, dataset_json, settings, resume)
    try:
        state = deployment.run_federation(
            federation, None, tls, host, port, resume, node_auth=supernode_auth, registered_keys=register_key
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        _fail(str(exc), FAILED_CASES)
    _report(state, federation)


def site(
    data: Path = typer.Option(
        ..., "--data", help="the site's preprocessed nnU-Net dataset folder (shared plans)"
    ),
    name: str = typer.Option(..., "--name", help="the site's name (shown in the server's records)"),
    superlink: str = typer.Option(..., "--superlink", help="the server's address, HOST:PORT"),
    root_certificates: Path | None = typer.Option(
        None, "--root-certificates", help="the federation's CA certificate"
    ),
    insecure: bool = typer.Option(False, "--insecure", help="no TLS (a closed test network only)"),
    work: Path | None = typer.Option(
        None, "--work", help="scratch folder for local training (default DATA/../federated_work)"
    ),
    port: int = typer.Option(9094, "--port", help="local port of the SuperNode's ClientApp API (127.0.0.1)"),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help=DEVICE_HELP),
    auth_key: Path | None = typer.Option(
        None, "--auth-key", help="this site's private key when the server uses --supernode-auth"
    ),
) -> None:
    """Run this site's SuperNode: it trains the paper's trainer on DATA when asked; images stay here.

    Example: recur federated site --data $nnUNet_preprocessed/Dataset501_Recur --name "Centre A"
    --superlink fed.example.org:9091 --root-certificates ca.crt
    """
    _require_flower()
    import subprocess

    from nnunet_recur.federated import deployment
    from nnunet_recur.federated.shared_plans import site_plans_path

    if not site_plans_path(data).is_file():
        _fail(f"{site_plans_path(data)}: not found (preprocess this site with the federation's shared plans)")
    if root_certificates is None and not insecure:
        _fail("give --root-certificates CA (TLS) or --insecure")
    if root_certificates is not None and not root_certificates.is_file():
        _fail(f"{root_certificates}: not found")
    work = work or data.resolve().parent / f"federated_work_{name}"
    try:
        device = resolve_device(device)  # the SuperNode trains here: an absent GPU is one line now
    except DeviceError as exc:
        _fail(str(exc))
    if auth_key is not None and not auth_key.is_file():
        _fail(f"{auth_key}: not found")
    command = deployment.supernode_command(
        superlink, port, name, data, work, root_certificates, device, auth_key
    )
    env = deployment.flower_env(work / "flwr_home")
    raise typer.Exit(subprocess.call(command, env=env))


def simulate(
    federation: Path = typer.Argument(..., help="the federation folder"),
    site_specs: list[str] = typer.Option(
        ..., "--site", help="NAME=DATA, a site's preprocessed folder; repeat"
    ),
    plans: Path | None = typer.Option(None, "--plans", help="the shared plans (default: the first site's)"),
    dataset_json: Path | None = typer.Option(
        None, "--dataset-json", help="raw dataset.json (default: the first site's)"
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, help="federated rounds"),
    local_epochs: int = typer.Option(1, "--local-epochs", min=1, help="epochs each site trains per round"),
    min_sites: int = typer.Option(1, "--min-sites", min=1, help="fewest site updates a round needs"),
    trainer: str = typer.Option("nnUNetTrainerRecur", "--trainer", help="the sites' trainer"),
    fedprox_mu: float = typer.Option(
        0.0, "--fedprox-mu", min=0.0, help="FedProx proximal weight (0: FedAvg)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the initial weights"),
    resume: bool = typer.Option(False, "--resume", help="continue after the last completed round"),
    initial_weights: Path | None = typer.Option(
        None,
        "--initial-weights",
        help="an nnU-Net checkpoint (e.g. pre-trained on HECKTOR) to start from; with the fine-tune trainer",
    ),
) -> None:
    """A one-machine federated study on Flower's simulation engine (Ray): one simulated SuperNode per site.

    The ServerApp and ClientApp are the deployment's (same rounds, FedAvg, local training); each site trains
    on its own folder, on the CPU, one Ray actor per site and core. Needs flwr\\[simulation] (the
    \\[federated] extra). docs/federated.md compares it with the deployment engine.

    Example: recur federated simulate fed --site A=pre/SITE_A --site B=pre/SITE_B --rounds 20
    """
    _require_flower()
    import importlib.util

    from nnunet_recur.federated import deployment

    if importlib.util.find_spec("ray") is None:
        _fail("Flower's simulation engine needs Ray: pip install 'nnunet-recur[federated]'")
    local = []
    for spec in site_specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not Path(folder).is_dir():
            _fail(f"--site {spec!r}: expected NAME=DATA with an existing folder")
        local.append(deployment.LocalSite(name.strip(), Path(folder), federation / "work" / name.strip()))
    plans = plans or local[0].data / "nnUNetRecurPlans.json"
    dataset_json = dataset_json or local[0].data / "dataset.json"
    settings = _settings(  # one machine: no stragglers to wait for beyond 2 min, no round limit to speak of
        rounds=rounds, local_epochs=local_epochs, min_sites=min_sites, sites=len(local), trainer=trainer,
        fedprox_mu=fedprox_mu, seed=seed, straggler=120.0, round_timeout=24 * 3600.0, wait=300.0,
        start=initial_weights,
    )  # fmt: skip
    _prepare(federation, plans, dataset_json, settings, resume)
    from nnunet_recur.federated.simulation import run_simulation

    try:
        state = run_simulation(federation, local, resume=resume)
    except (RuntimeError, TimeoutError, OSError) as exc:
        _fail(str(exc), FAILED_CASES)
    _report(state, federation)


def fingerprint_summary(
    raw_dataset: Path = typer.Argument(
        ..., help="the site's raw nnU-Net dataset folder (imagesTr, labelsTr)"
    ),
    out: Path = typer.Option(..., "--out", help="the summary to send to the server (JSON)"),
    samples: int = typer.Option(
        10000, "--samples-per-case", min=1, help="foreground voxels sampled per case"
    ),
) -> None:
    """Summarise this site's dataset for a federated fingerprint: spacings, shapes, intensity statistics.

    No image and no case id leaves: per-case spacings/shapes/relative sizes (shuffled) and, per channel,
    sample counts, moments, min/max and 1001 quantiles of the foreground intensities.

    Example: recur federated fingerprint-summary $nnUNet_raw/Dataset501_Recur --out centre_a_fingerprint.json
    """
    from nnunet_recur.atomic_io import write_json_atomic
    from nnunet_recur.federated.fingerprint import summarise_dataset

    if not (raw_dataset / "dataset.json").is_file():
        _fail(f"{raw_dataset / 'dataset.json'}: not found (a raw nnU-Net dataset folder)")
    try:
        summary = summarise_dataset(raw_dataset, samples)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(f"{raw_dataset}: {exc}")
    write_json_atomic(out, summary)
    typer.echo(f"wrote {out} ({summary['n_cases']} cases)")


def merge_fingerprints(
    summaries: list[Path] = typer.Argument(..., help="the sites' fingerprint summaries"),
    out: Path = typer.Option(..., "--out", help="dataset_fingerprint.json for nnU-Net's planner"),
) -> None:
    """Merge the sites' fingerprint summaries into one nnU-Net dataset_fingerprint.json (federated plans).

    Put it in nnUNet_preprocessed/DatasetXXX/ of the planning dataset and run `recur plan` there: nnU-Net
    plans from it instead of reading images (docs/federated.md).

    Example: recur federated merge-fingerprints a.json b.json c.json --out dataset_fingerprint.json
    """
    from nnunet_recur.atomic_io import write_json_atomic
    from nnunet_recur.federated.fingerprint import FORMAT, merge

    loaded = []
    for path in summaries:
        data = _read_json(path, "fingerprint summary")
        if data.get("format") != FORMAT:
            _fail(f"{path}: not a fingerprint summary ({FORMAT!r} expected)")
        loaded.append(data)
    try:
        merged = merge(loaded)
    except ValueError as exc:
        _fail(str(exc))
    write_json_atomic(out, merged)
    typer.echo(f"wrote {out} ({len(merged['spacings'])} cases from {len(loaded)} sites)")


app.command("server")(server)
app.command("fingerprint-summary")(fingerprint_summary)
app.command("merge-fingerprints")(merge_fingerprints)
app.command("plan")(cli_plans.plan)
app.command("preprocess")(cli_plans.preprocess)
app.command("check-plans")(cli_plans.check_plans)
app.command("site")(site)
app.command("simulate")(simulate)
