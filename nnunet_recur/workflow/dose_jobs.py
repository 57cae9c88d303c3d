"""The demo's dose steps (issues 20 and 21): the relapse pattern against the planned dose, the in-field
column of Table 1, and the dose-painting prescription of the new patient.

The synthetic in-house cohort carries an RT Plan and RT Dose per patient, and `recur convert inhouse` writes
them beside the dataset as ``doseTs/<case>.nii.gz`` + ``<case>.json`` (dataset_conversion.dose_conversion).
Three hooks, each a public command a user could type:

- ``dose_pattern``: `recur-eval dose-pattern` on the test patients, with every method that Table 1
  compares (the ``--pred`` and ``--best`` of the ``compare`` job, read when it runs, so the SUVmax name
  carries the percent the sweep chose) and the target masks (``masksTs``; the brain mask is no target);
- ``compare --dose``: the "In-field POs captured" column of Table 1;
- ``recur predict --dose-map``: the new patient's prescription (NIfTI, RT Dose, RT Plan, Parametric Map)
  with the defaults of docs/prediction.md (68 Gy base, 80 Gy boost inside the GTV + 5 mm).

Kept apart from study.py so that a study file can opt in later without touching the demo.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from nnunet_recur.workflow.graph import Job
from nnunet_recur.workflow.study import StudyLayout

DOSE_PATTERN_FILES = ("dose_pattern.md", "dose_pattern.csv", "dose_pattern.json", "dose_pattern.png")
# what `recur predict --dose-map` writes beside report.html (prediction.dose_outputs)
DOSE_MAP_FILES = ("dose_prescription.nii.gz", "RD_recur_prescription.dcm", "dose_map.json")
CARRIED_OPTIONS = ("--pred", "--best")  # taken from the compare job's command line


def dose_folder_ts(lay: StudyLayout) -> Path:
    """The converter's dose folder of the test patients (dose_conversion.dose_paths, part "Ts")."""
    return lay.relapse_raw / "doseTs"


def with_arguments(job: Job, extra: list[str], outputs: tuple[Path, ...] = ()) -> Job:
    """`job` with `extra` appended to its (only) command, resolved when the job runs, and more outputs."""

    def commands() -> list[list[str]]:
        return [[*argv, *extra] for argv in job.resolved_commands()]

    def all_outputs() -> list[Path]:
        return [*job.resolved_outputs(), *outputs]

    return replace(job, commands=commands, outputs=all_outputs)


def dose_pattern_job(lay: StudyLayout, compare: Job) -> Job:
    """`recur-eval dose-pattern` on the test patients with the methods of `compare`, into
    OUT/report/dose_pattern."""
    raw = lay.relapse_raw
    out = lay.report / "dose_pattern"

    def command() -> list[list[str]]:
        argv = compare.resolved_commands()[0]
        pairs = zip(argv, argv[1:], strict=False)
        carried = [a for option, value in pairs if option in CARRIED_OPTIONS for a in (option, value)]
        return [
            ["recur-eval", "dose-pattern", "--gt", str(raw / "labelsTs"), "--dose", str(dose_folder_ts(lay)),
             "--targets", str(raw / "masksTs"), *carried, "--out", str(out)],
        ]  # fmt: skip

    return Job(
        "dose_pattern",
        "Where each relapse started against the planned dose, and the in-field POs each method captures "
        "(recur-eval dose-pattern)",
        command,
        outputs=[out / name for name in DOSE_PATTERN_FILES],
        after=compare.after,
        show=lambda console: show_infield_capture(console, out / "dose_pattern.json"),
    )


def show_infield_capture(console, summary_path: Path) -> None:
    """One line per method: the in-field POs its mask captures (the question a boost trial asks)."""
    try:
        capture = json.loads(summary_path.read_text())["capture_by_po_class"]
    except (OSError, ValueError, KeyError):
        return
    for name, per_class in capture.items():
        p = per_class.get("in-field", {})
        console.print(f"    {name}: {p.get('count', 0)} / {p.get('n', 0)} in-field PO(s) captured")
    console.print(f"    table: {summary_path.with_suffix('.md')}", soft_wrap=True)


def add_dose_jobs(jobs: list[Job], lay: StudyLayout) -> list[Job]:
    """The demo's graph with `compare --dose`, the dose-pattern job after it, `recur predict --dose-map`."""
    out: list[Job] = []
    for job in jobs:
        if job.name == "compare":
            job = with_arguments(job, ["--dose", str(dose_folder_ts(lay))])
            out += [job, dose_pattern_job(lay, job)]
            continue
        if job.name == "predict_new_patient":
            new = lay.folder / "predict_new_patient"
            job = with_arguments(job, ["--dose-map"], tuple(new / name for name in DOSE_MAP_FILES))
            job = replace(job, title=f"{job.title}, and its dose-painting prescription (--dose-map)")
        out.append(job)
    return out
