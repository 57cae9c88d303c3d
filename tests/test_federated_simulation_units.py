"""The simulation engine's Ray settings and its clean-up of the Ray processes a run orphans (fast, no Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnunet_recur.federated import simulation


def test_ray_starts_small_without_dashboard_one_cpu_per_site():
    config = simulation.backend_config(n_sites=5)
    assert config["client_resources"] == {"num_cpus": 1, "num_gpus": 0}
    init = config["init_args"]
    assert init["include_dashboard"] is False and init["ignore_reinit_error"] is True
    assert init["num_cpus"] == min(5, os.cpu_count() or 1) and init["num_gpus"] == 0
    assert init["object_store_memory"] == simulation.OBJECT_STORE_BYTES <= 1 << 30
    assert simulation.backend_config(n_sites=1)["init_args"]["num_cpus"] == 1


def test_ray_commands_are_recognised():
    assert simulation.is_ray_command("ray::ClientAppActor")
    assert simulation.is_ray_command("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --x")
    assert not simulation.is_ray_command("sleep 60")


def _orphan(name: str) -> int:
    """Start `sleep 60` named `name` through a shell that exits at once: the sleep is orphaned."""
    done = subprocess.run(
        ["bash", "-c", f"(exec -a {name} sleep 60 </dev/null >/dev/null 2>&1) & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper: Linux only")
def test_ray_processes_orphaned_by_a_run_are_ended_before_it_returns():
    with simulation.ray_processes_ended(grace_s=0.2):
        ray_like, other = _orphan("ray::FakeActor"), _orphan("not-ours")
        deadline = time.monotonic() + 5
        while _parent(ray_like) != os.getpid() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _parent(ray_like) == os.getpid()  # orphans of the run are this process's children
    try:
        assert not Path(f"/proc/{ray_like}").exists()  # ended and reaped
        assert Path(f"/proc/{other}").exists()  # a process that is not Ray's is left alone
    finally:
        os.kill(other, signal.SIGKILL)
        os.waitpid(other, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper: Linux only")
def test_an_adopted_process_that_exited_is_reaped_not_left_a_zombie():
    """Regression (fresh-clone CI): a Ray process that exited after the run adopted it stayed a zombie child
    of the command (its empty command line is not Ray's), and outlived it under an init that does not reap."""
    with simulation.ray_processes_ended(grace_s=0.2):
        done = subprocess.run(  # the shell exits at once; its child exits 0.3 s later, adopted by us
            ["bash", "-c", "(sleep 0.3 </dev/null >/dev/null 2>&1) & echo $!"],
            capture_output=True,
            text=True,
            check=True,
        )
        pid = int(done.stdout.strip())
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
            and Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
        ):
            time.sleep(0.05)
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"  # a zombie child of ours
    assert not Path(f"/proc/{pid}").exists()  # reaped by the clean-up
