"""Driver overhead per Slurm job: `recur study`'s driver (journal, submitit, squeue polling) against a bare
`sbatch --wrap` of the same command, both measured in the same run on the same cluster.

    scripts/slurm-local.sh start          # or any Slurm cluster: SLURM_CONF / sbatch on PATH
    python bench/study_overhead.py --jobs 10

Each of N independent jobs runs `python -c pass`. Baseline: N `sbatch --wrap` calls, then poll squeue until
all ended. Driver: the same N commands as jobs of one graph on the Slurm executor, run to the end (wait).
Reported: seconds to submit, seconds until all ended, and the per-job overhead (driver - bare) / N.
Target (issue 11): <= 2 s per job.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from nnunet_recur.workflow.driver import Driver
from nnunet_recur.workflow.executors.slurm import SlurmExecutor, SlurmResources
from nnunet_recur.workflow.graph import Job, JobGraph


def _wait_until_ended(job_ids: list[str], poll: float) -> None:
    pending = set(job_ids)
    while pending:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%T"], capture_output=True, text=True
        ).stdout
        states = dict(line.split("|", 1) for line in out.split() if "|" in line)
        pending = {j for j in pending if states.get(j, "COMPLETED") in ("PENDING", "RUNNING", "CONFIGURING",
                                                                         "COMPLETING")}  # fmt: skip
        if pending:
            time.sleep(poll)


def bare(n: int, folder: Path, poll: float) -> tuple[float, float]:
    command = f"{sys.executable} -c pass"
    start = time.monotonic()
    ids = []
    for i in range(n):
        out = subprocess.run(
            ["sbatch", "--parsable", "-J", f"bare{i}", "-c", "1", "--mem=500M",
             "-o", str(folder / f"bare{i}.out"), "--wrap", command],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        ids.append(out.strip().split(";")[0])
    submitted = time.monotonic() - start
    _wait_until_ended(ids, poll)
    return submitted, time.monotonic() - start


def driven(n: int, folder: Path, poll: float) -> tuple[float, float]:
    jobs = [Job(f"job{i}", f"job {i}", [[sys.executable, "-c", "pass"]], after=()) for i in range(n)]
    profiles = {"default": SlurmResources(cpus_per_task=1, mem_gb=0.5, timeout_min=5)}
    executor = SlurmExecutor(folder / "slurm", profiles)
    console = Console(file=io.StringIO())
    start = time.monotonic()
    Driver(JobGraph(jobs), folder, executor, console=console, poll_seconds=poll).run(wait=False)
    submitted = time.monotonic() - start
    Driver(JobGraph(jobs), folder, executor, console=console, poll_seconds=poll).run(wait=True)
    return submitted, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between squeue calls (both sides)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recur-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "bare").mkdir()
        b_sub, b_all = bare(args.jobs, tmp / "bare", args.poll)
        d_sub, d_all = driven(args.jobs, tmp / "driver", args.poll)
    result = {
        "jobs": args.jobs,
        "bare_submit_s_per_job": round(b_sub / args.jobs, 3),
        "driver_submit_s_per_job": round(d_sub / args.jobs, 3),
        "bare_total_s": round(b_all, 2),
        "driver_total_s": round(d_all, 2),
        "overhead_s_per_job": round((d_all - b_all) / args.jobs, 3),
        "ratio_total": round(d_all / b_all, 2),
    }
    print(json.dumps(result, indent=1))
    verdict = "meets" if result["overhead_s_per_job"] <= 2.0 else "MISSES"
    print(f"driver overhead {result['overhead_s_per_job']:.2f} s per job: {verdict} the <= 2 s target")


if __name__ == "__main__":
    main()
