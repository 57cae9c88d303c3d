"""Flower's deployment engine as processes: one SuperLink, one SuperNode per site, `flwr run` for the app.

Everything listens on 127.0.0.1 unless told otherwise. With TLS, the SuperLink serves a certificate signed by
a CA that SuperNodes and `flwr run` trust (`make_certificates` writes a throw-away CA and a server
certificate for 127.0.0.1/localhost, for tests and one-machine studies; a hospital network uses its own).
Processes start in their own process group, so `stop()` ends them with every child (ServerApp, ClientApp).

The Flower App is a tiny folder (`write_app`): a pyproject.toml whose components point at
`nnunet_recur.federated.apps`, so the installed package runs at every site (no code in the bundle).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "recurfed"
version = "1.0.0"
description = "nnunet-recur federated training (the code is the installed nnunet_recur package)"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "nnunet-recur"

[tool.flwr.app.components]
serverapp = "nnunet_recur.federated.apps:server_app"
clientapp = "nnunet_recur.federated.apps:client_app"

[tool.flwr.app.config]
federation-dir = ""
resume = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_bin(name: str) -> str:
    """A Flower executable beside this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found: install the federated extra (pip install nnunet-recur[federated])"
        )
    return found


def write_app(folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(APP_PYPROJECT, encoding="utf-8")
    return folder


def write_flower_config(home: Path, address: str, root_certificates: Path | None) -> Path:
    """FLWR_HOME/config.toml with one SuperLink connection, 'local' (what `flwr run APP local` uses)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    tls = (
        f'root-certificates = "{Path(root_certificates).resolve()}"'
        if root_certificates
        else "insecure = true"
    )
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{address}"\n{tls}\n',
        encoding="utf-8",
    )
    return home


def make_certificates(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """A throw-away CA and a SuperLink certificate for `hosts` (PEM files): ca.crt, server.pem, server.key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nnunet-recur federation CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(paths["key"], 0o600)
    return paths


def make_node_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's authentication key pair (EC P-384, OpenSSH format): NAME (private) and NAME.pub.

    The SuperLink (started with SuperNode authentication) accepts only SuperNodes whose public key was
    registered with `flwr supernode register NAME.pub local`; the private key never leaves the site."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    os.chmod(private, 0o600)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public


def register_node_key(public_key: Path, env: dict, name: str | None = None) -> None:
    """Register a SuperNode's public key with the running SuperLink (Flower's Control API, `flwr`)."""
    command = [flower_bin("flwr"), "supernode", "register", str(Path(public_key).resolve()), "local"]
    if name:
        command += ["--name", name]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{public_key}: registration refused: {(done.stdout + done.stderr).strip()[-500:]}"
        )


@dataclass
class Certificates:
    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass
class Processes:
    """Started processes (each its own group), stopped together."""

    started: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        handle.close()
        self.started[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.started.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop(self, grace_s: float = 5.0) -> None:
        for process in self.started.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for process in self.started.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the whole group, children included, whatever the leader did
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if process.poll() is None:
                process.wait(timeout=30)


def superlink_command(
    port: int, host: str = "127.0.0.1", certificates: Certificates | None = None, node_auth: bool = False
) -> list[str]:
    command = [
        flower_bin("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--database",
        ":flwr-in-memory:",
        "--disable-runtime-dependency-installation",
    ]
    if node_auth:
        command.append("--enable-supernode-auth")
    if certificates is None:
        return [*command, "--insecure"]
    return [
        *command,
        "--ssl-ca-certfile",
        str(certificates.ca),
        "--ssl-certfile",
        str(certificates.cert),
        "--ssl-keyfile",
        str(certificates.key),
    ]


def supernode_command(
    superlink: str,
    port: int,
    site: str,
    data: Path,
    work: Path,
    root_certificates: Path | None,
    device: str = "cpu",
    auth_private_key: Path | None = None,
) -> list[str]:
    config = (
        f'site-name="{site}" data="{Path(data).resolve()}" work="{Path(work).resolve()}" device="{device}"'
    )
    command = [
        flower_bin("flower-supernode"),
        "--superlink",
        superlink,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--node-config",
        config,
    ]
    if auth_private_key is not None:
        command += ["--auth-supernode-private-key", str(Path(auth_private_key).resolve())]
    if root_certificates is None:
        return [*command, "--insecure"]
    return [*command, "--root-certificates", str(Path(root_certificates).resolve())]


def flwr_run_command(app: Path, federation_dir: Path, resume: bool) -> list[str]:
    return [
        flower_bin("flwr"),
        "run",
        str(app),
        "local",
        "--stream",
        "--run-config",
        f'federation-dir="{Path(federation_dir).resolve()}" resume={str(resume).lower()}',
    ]


def flower_env(home: Path) -> dict:
    """The environment for Flower processes: FLWR_HOME, and this package importable in every child."""
    env = dict(os.environ)
    env["FLWR_HOME"] = str(Path(home).resolve())
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    # Flower's SuperLink and SuperNode start their helper processes (flower-superexec, flwr-serverapp,
    # flwr-clientapp) by name from PATH: this Python's bin folder first, so a venv that is not activated
    # (CI calls .venv/bin/... by path) still finds them
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("nnUNet_compile", "false")
    return env


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 60.0, process=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with status {process.returncode} before listening on {host}:{port}"
            )
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


@dataclass
class LocalSite:
    name: str
    data: Path
    work: Path
    auth_key: Path | None = None  # private key; its NAME.pub is registered before the SuperNode starts


def run_federation(
    federation_dir: Path,
    sites: list[LocalSite] | None = None,
    certificates: Certificates | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    resume: bool = False,
    timeout_s: float = 7 * 24 * 3600.0,
    on_poll=None,
    node_auth: bool = False,
    registered_keys: list[Path] | None = None,
) -> dict:
    """SuperLink (+ a SuperNode per `sites`, for a one-machine run) and `flwr run`, until the run ends.

    `on_poll(processes, state)` is called about once a second (the deployment test kills a site from it).
    Every process started here is stopped before returning, whatever happens. Returns the final state."""
    from nnunet_recur.federated import rounds

    folder = Path(federation_dir).resolve()
    port = port or free_port()
    address = f"{host}:{port}"
    home = write_flower_config(folder / "flwr_home", address, certificates.ca if certificates else None)
    env = flower_env(home)
    app = write_app(folder / "app")
    logs = folder / "logs"
    processes = Processes()
    try:
        command = superlink_command(port, host, certificates, node_auth)
        link = processes.start("superlink", command, logs / "superlink.log", env)
        wait_for_port(port, host, process=link)
        for key in registered_keys or []:
            register_node_key(key, env)
        for site in sites or []:
            if node_auth and site.auth_key is not None:
                register_node_key(Path(f"{site.auth_key}.pub"), env, site.name)
            command = supernode_command(
                address,
                free_port(),
                site.name,
                site.data,
                site.work,
                certificates.ca if certificates else None,
                auth_private_key=site.auth_key,
            )
            processes.start(f"site {site.name}", command, logs / f"site_{site.name}.log", env)
        run = processes.start("flwr run", flwr_run_command(app, folder, resume), logs / "flwr_run.log", env)
        deadline = time.monotonic() + timeout_s
        while run.poll() is None:  # `flwr run --stream` returns when the run has ended
            if time.monotonic() > deadline:
                raise TimeoutError(f"the federated run did not finish within {timeout_s:.0f} s; see {logs}")
            if on_poll is not None:
                on_poll(processes, rounds.read_state(folder) or {})
            time.sleep(1.0)
    finally:
        processes.stop()
    state = rounds.read_state(folder) or {}
    if not state.get("finished"):
        tail = (logs / "flwr_run.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the federated run ended unfinished (see {logs}): {' | '.join(tail)}")
    return state
