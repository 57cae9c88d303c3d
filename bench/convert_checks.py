"""What the hostile-input and storage checks of issues 13 and 19 cost, as a share of `recur convert inhouse`
time.

The checks: the NIfTI guard (header, voxel limit, and the chunked NaN/Inf scan of floating-point input
files), the SUV preconditions, non-file detection in the DICOM scan, the voxel limit of DICOM series,
the bow-tie test of every used contour, the oblique test of NIfTI input, and the full read-back (gzip
CRC) of every written and staged file before it is renamed into place; issue 19: contour placement
accounting and coverage (area inside/outside the CT), NIfTI mask coverage, minimum CT slices, the
soft-label check, qform/sform, SUV floor and DecayFactor, the DICOM cross-check (files of no series,
ContourImageSequence against the CT) and the cohort folder's stray entries and look-alike names.
The same synthetic cohorts (DICOM and NIfTI, `paper` size) are converted in this process with the
checks on, then with them replaced by the pre-issue-13 behaviour (only the old size check of NIfTI
input), alternating, median of --repeat runs each. Target: checks <= 10 % of conversion time.
Results go to docs/benchmarks_conversion.md.

Usage: .venv/bin/python bench/convert_checks.py [--cases 2] [--size paper] [--repeat 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

MARK = "<!-- convert_checks -->"


@contextlib.contextmanager
def checks_off():
    """Replace each issue-13 check by what ran before it (nothing, or the old size-only NIfTI check)."""
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion import (
        cohort,
        dicom_crosscheck,
        dicom_series,
        inhouse,
        nifti_io,
        nnunet_writer,
        prepare,
        rtstruct,
        suv,
    )
    from nnunet_recur.dataset_conversion.errors import ConversionError

    def old_read_nifti(path, cause):  # the reader before issue 13: size check, then ITK
        try:
            nifti_io.check_nifti_complete(path)
            return sitk.ReadImage(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConversionError(cause, str(exc), str(path)) from exc

    patches = [
        (inhouse, "read_nifti", old_read_nifti),
        (nifti_io, "verify_written_nifti", lambda path: None),
        (nnunet_writer, "verify_written_nifti", lambda path: None),
        (suv, "check_suv_preconditions", lambda series: None),
        (rtstruct, "self_intersects", lambda polygon: False),
        (dicom_series, "_not_a_regular_file", lambda path: None),
        (dicom_series, "check_voxel_limit", lambda size, series: None),
        (inhouse, "check_axial", lambda image, path: None),
        # issue 19
        (rtstruct, "check_placement", lambda placement, what, path: None),
        (rtstruct, "_area", lambda polygon: 0.0),
        (rtstruct, "_outside_in_plane", lambda polygon, nx, ny: 0.0),
        (prepare, "check_mask_coverage", lambda mask, ct, what, path: None),
        (prepare, "check_ct_slices", lambda ct, path: None),
        (inhouse, "check_ct_slices", lambda ct, path: None),
        (inhouse, "binarise_label", lambda image, threshold, what: (prepare.binary_uint8(image), None)),
        (inhouse, "check_suv_floor", lambda peak, source: None),
        (suv, "check_suv_floor", lambda peak, source: None),
        (suv, "check_decay_factor", lambda series: None),
        (dicom_crosscheck, "check_unassigned_files", lambda found, ct, structures, folder: []),
        (cohort, "skipped_entries", lambda src: []),
        (cohort, "lookalike_groups", lambda names: []),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, replacement in patches:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def digests(raw: Path) -> dict[str, str]:
    """sha256 of every dataset file: the checks must not change a byte of the output."""
    import hashlib

    return {
        str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(raw.rglob("*.nii.gz"))
    }


def convert_once(src: Path, workdir: Path, tag: str) -> float:
    from nnunet_recur.dataset_conversion.cohort import convert_inhouse

    raw, report = workdir / f"raw_{tag}", workdir / f"rep_{tag}"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(report, ignore_errors=True)
    start = time.process_time()  # CPU time: robust to other jobs on a shared machine, unlike wall time
    summary = convert_inhouse(src, 990, "Bench", raw_dir=raw, report_dir=report, show_progress=False)
    elapsed = time.process_time() - start
    assert summary.converted, summary.line
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--size", default="paper")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--formats", nargs="+", default=["inhouse-dicom", "inhouse-nifti"])
    parser.add_argument(
        "--doc", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_conversion.md"
    )
    args = parser.parse_args()

    import SimpleITK as sitk

    from nnunet_recur.synthetic import make_cohort

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # CPU time then counts the work, not spinning
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recur_checks_bench_"))
    rows = []
    for fmt in args.formats:
        synth = workdir / fmt
        if not (synth / "patients").is_dir():
            make_cohort(synth, cases=args.cases, seed=3, fmt=fmt, size=args.size)
        src = synth / "patients"
        with_checks, without = [], []
        for run in range(args.repeat):
            with_checks.append(convert_once(src, workdir, f"{fmt}_on{run}"))
            with checks_off():
                without.append(convert_once(src, workdir, f"{fmt}_off{run}"))
        on, off = statistics.median(with_checks) / args.cases, statistics.median(without) / args.cases
        same = digests(workdir / f"raw_{fmt}_on0") == digests(workdir / f"raw_{fmt}_off0")
        rows.append((fmt, off, on, (on - off) / off, same))
        share = 100 * (on - off) / off
        print(f"{fmt}: {off:.2f} s/patient without the checks, {on:.2f} s with: {share:+.1f} %")

    table = [
        MARK,
        "## Cost of the hostile-input and storage checks, issues 13 and 19 (bench/convert_checks.py)",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()} "
        f"(2 CPU cores shared with other jobs), Python {platform.python_version()}, one process, "
        f"{args.cases} synthetic `{args.size}` patients per format, median of {args.repeat} alternating "
        "runs, "
        "CPU time of the process (SimpleITK 1 thread; wall time on this loaded machine varied by 25 %).",
        "The checks: NIfTI guard (voxel limit, 4-D/NIfTI-2/pixdim, NaN/Inf scan of float input in one pass), "
        "SUV preconditions, non-file detection, DICOM voxel limit, bow-tie test of used contours, oblique "
        "NIfTI test, and the full gzip read-back of every written and staged file before its rename; "
        "issue 19: contour placement accounting and coverage, NIfTI mask coverage, minimum CT slices, "
        "soft-label check, qform/sform, SUV floor and DecayFactor, DICOM cross-check (files of no "
        "series, ContourImageSequence), stray entries and look-alike names of the cohort folder.",
        "",
        "| input | without checks (CPU s/patient) | with checks (CPU s/patient) | cost of the checks "
        "| same output bytes |",
        "|---|---|---|---|---|",
    ]
    for fmt, off, on, share, same in rows:
        verdict = "yes" if same else "NO"
        table.append(
            f"| {fmt} | {off:.2f} | {on:.2f} | **{100 * share:+.1f} %** (target <= 10 %) | {verdict} |"
        )
    table += [
        "",
        "Timing noise on this shared machine is a few %; a negative cost means the difference is below it.",
        f"Reproduce: `.venv/bin/python bench/convert_checks.py --cases {args.cases} --size {args.size} "
        f"--repeat {args.repeat}`.",
        "",
    ]
    text = args.doc.read_text() if args.doc.exists() else ""
    if MARK in text:
        text = text[: text.index(MARK)].rstrip() + "\n\n"
    else:
        text = text.rstrip() + "\n\n"
    args.doc.write_text(text + "\n".join(table))
    print(f"written to {args.doc}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
