"""A one-machine federated study on Flower's simulation engine (`flwr[simulation]`, Ray).

The ServerApp and ClientApp are the deployment's (apps.py `simulation_apps`): the same round loop, FedAvg and
local training; only the engine differs. Flower's simulation engine keeps the SuperLink state in memory,
runs the ServerApp in a thread of this process and each ClientApp call in a Ray actor (one CPU each, at
most one actor per site and per CPU core), so a study needs no ports, certificates or SuperNode processes.

Ray is started here, local and small: no dashboard, an object store of `OBJECT_STORE_BYTES` (the messages
are model weights, a few hundred MB at most in flight), no usage statistics (no network), and it is shut
down before returning, whatever happened. `ray.shutdown()` ends `raylet` and `gcs_server`, but its actor
processes (`ray::ClientAppActor`, holding torch and nnU-Net) take ~15 s more to exit on their own, orphaned.
On Linux this process is therefore a child subreaper for the run: Ray processes orphaned by the shutdown
become its children and are ended, by pid, before returning, so nothing of the run outlives the command
(tested).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from nnunet_recur.federated import rounds
from nnunet_recur.federated.deployment import LocalSite

#: Ray's object store for one study: the in-flight messages are model weights (~30 M parameters for the
#: paper's network, 2 x 120 MB per site and round); Ray spills to disk beyond it.
OBJECT_STORE_BYTES = 1 << 30


def backend_config(n_sites: int) -> dict:
    """Flower's Ray backend settings: one CPU per ClientApp, as many in parallel as sites and cores allow
    (the sites train on the CPU, as `recur federated site --device cpu`)."""
    cpus = max(1, min(n_sites, os.cpu_count() or 1))
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0},
        "init_args": {
            "num_cpus": cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "ignore_reinit_error": True,
            "object_store_memory": OBJECT_STORE_BYTES,
            "logging_level": "WARNING",
            "log_to_driver": True,
        },
    }


def _ray_environment() -> None:
    """What Ray's processes inherit: no usage report (no network), no uv hook, nothing to compile."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("nnUNet_n_proc_DA", "0")
    os.environ.setdefault("nnUNet_compile", "false")


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _children() -> dict[int, str]:
    """This process's child processes and their command lines (Linux /proc); a zombie's is "<zombie>"."""
    me, found = os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(parent) == me:
                found[int(entry.name)] = (
                    "<zombie>"
                    if state == "Z"
                    else (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
        except (OSError, ValueError, IndexError):
            continue
    return found


def is_ray_command(command: str) -> bool:
    """A Ray process by its command line (workers rename themselves `ray::ClassName`)."""
    return (
        command.startswith("ray::")
        or "/ray/" in command
        or any(name in command for name in ("raylet", "gcs_server"))
    )


def _reap(pids: list[int], grace_s: float) -> None:
    """Wait up to `grace_s` for `pids` (our children) to exit, then SIGTERM, then SIGKILL; reap them all."""
    pending = set(pids)
    for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in list(pending) if sig is not None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                pending.discard(pid)
            if pending:
                time.sleep(0.2)
        if not pending:
            return


@contextlib.contextmanager
def ray_processes_ended(grace_s: float = 0.5):
    """Around a Ray run: afterwards, end the Ray processes it orphaned (Linux; elsewhere: Ray's shutdown)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    before = set(_children())
    subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        try:
            for _ in range(3):  # a process orphaned while we look is ours a moment later
                time.sleep(0.5)
                # Ray processes we adopted, and zombies: an adopted process that exited is ours to reap
                # (left unreaped, it outlives this command as a zombie under an init that may not reap)
                left = [
                    pid
                    for pid, cmd in _children().items()
                    if pid not in before and (is_ray_command(cmd) or cmd == "<zombie>")
                ]
                if not left:
                    break
                _reap(left, grace_s)
        finally:
            if subreaper:
                libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def run_simulation(federation_dir: Path, sites: list[LocalSite], resume: bool = False) -> dict:
    """Run the federation folder's study with one simulated SuperNode per site; returns the final state.

    Raises RuntimeError when the run ended unfinished (the ServerApp's FederationError included)."""
    import ray
    from flwr.simulation import run_simulation as flower_run_simulation

    from nnunet_recur.federated.apps import simulation_apps

    folder = Path(federation_dir).resolve()
    table = [
        {
            "site-name": site.name,
            "data": str(Path(site.data).resolve()),
            "work": str(Path(site.work).resolve()),
            "device": "cpu",
        }
        for site in sites
    ]
    server_app, client_app = simulation_apps(folder, table, resume)
    _ray_environment()
    with ray_processes_ended():
        try:
            flower_run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=len(sites),
                backend_config=backend_config(len(sites)),
            )
        finally:
            if ray.is_initialized():  # Flower shuts Ray down on a normal end; not always on an error
                ray.shutdown()
    state = rounds.read_state(folder) or {}
    if not state.get("finished"):
        raise RuntimeError(
            f"the simulated federated run ended unfinished (phase {state.get('phase')!r}, "
            f"{state.get('rounds_done', 0)} round(s) done); see the log above"
        )
    return state
