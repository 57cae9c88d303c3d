"""Disk-full scenario for tests/test_convert_faults.py, run inside a private mount namespace
(`unshare -m`, or `unshare -rm` without root) so that the small tmpfs it mounts vanishes with it.

    python tests/fault_disk_full.py SRC WORK   -> prints one JSON object with what it saw

1. nnUNet_raw on a tmpfs with little room left: the conversion must fail the cases it cannot write
   (write_failed, non-zero exit, no traceback), and every file left in the dataset must be whole;
2. room made, same command again: every case converts and verifies;
3. the report folder on a full tmpfs: one error line, exit 2, no temporary file left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nnunet_recur.dataset_conversion.nifti_io import verify_written_nifti


def _mount(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def _fill(where: Path, keep_bytes: int) -> Path:
    filler = where / "filler.bin"
    free = shutil.disk_usage(where).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - keep_bytes))
    return filler


def _convert(src: Path, raw: Path, report: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "recur"
    cmd = [str(exe), "convert", "inhouse", str(src), "--dataset-id", "31", "--crop", "none"]
    cmd += ["--raw-dir", str(raw), "--report-dir", str(report)]
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_preprocessed"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _damaged_files(raw: Path) -> list[str]:
    bad = []
    for path in raw.rglob("*.nii.gz"):
        try:
            verify_written_nifti(path)
        except OSError as exc:
            bad.append(str(exc))
    return bad


def _outcome(run: subprocess.CompletedProcess) -> dict:
    return {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr}


def main(src: Path, work: Path) -> dict:
    result: dict = {}
    full = work / "tmpfs"
    _mount(full, "3m")
    raw = full / "raw"
    filler = _fill(full, keep_bytes=260_000)
    first = _convert(src, raw, work / "report")
    result["first"] = {
        **_outcome(first),
        "damaged": _damaged_files(raw),
        "leftovers": [str(p) for p in raw.rglob("*") if ".tmp" in p.name or ".recur_tmp" in str(p)],
    }
    filler.unlink()
    second = _convert(src, raw, work / "report")
    result["second"] = {
        **_outcome(second),
        "damaged": _damaged_files(raw),
        "n_images": len(list(raw.rglob("images*/*_0000.nii.gz"))),
    }
    reports = work / "tmpfs_reports"
    _mount(reports, "1m")
    (reports / "rep").mkdir()
    _fill(reports, keep_bytes=0)
    third = _convert(src, work / "raw_ok", reports / "rep")
    result["report_full"] = {
        **_outcome(third),
        "left_in_report_dir": sorted(p.name for p in (reports / "rep").iterdir()),
    }
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
