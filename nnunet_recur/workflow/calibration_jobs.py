"""The demo's calibration step (issue 21): fit the temperature of the best seed on its validation patients
(`recur calibrate`), then score the test patients' probabilities as saved and calibrated
(`recur-eval calibration --calibration`), so the ECE before and after is measured on held-out patients.

A model whose validation logits do not rise with relapse (the few-epoch runs of the tests) gets no
calibration (`--skip-if-no-signal`): the demo goes on and scores the saved probabilities alone.

Needs the folds' validation probabilities (``nnUNetv2_train --npz``: `StudyPlan.validation_probabilities`)
and the test predictions' ``.npz`` (``--save_probabilities``). The new-patient prediction waits for the
fit, so it applies the calibration.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_recur.workflow.graph import Job
from nnunet_recur.workflow.study import StudyLayout, StudyPlan


def calibration_jobs(lay: StudyLayout, plan: StudyPlan) -> list[Job]:
    """`calibrate_<method>` and `calibration_report` for the method that predicts the new patient."""
    by_key = {m.key: m for m in plan.methods}
    method = by_key.get(plan.new_patient_method) or plan.methods[0]
    model_dir = lay.model_dir(lay.relapse_dataset, method.trainer)
    raw = lay.relapse_raw
    calibration = model_dir / "calibration.json"
    out: Path = lay.report / "calibration"
    return [
        Job(
            f"calibrate_{method.key}",
            f"Fit the temperature of {method.label}'s best seed on its validation patients (recur calibrate)",
            [["recur", "calibrate", str(model_dir), "--gt", str(raw / "labelsTr"),
              "--masks", str(raw / "masksTr"), "--images", str(raw / "imagesTr"), "--skip-if-no-signal"]],
            after=(f"select_{method.key}",),
        ),
        Job(
            "calibration_report",
            f"Calibration of {method.label} on the test patients, before and after the temperature "
            "(recur-eval calibration)",
            lambda: [["recur-eval", "calibration", "--gt", str(raw / "labelsTs"),
              "--masks", str(raw / "masksTs"), "--images", str(raw / "imagesTs"),
              "--pred", f"{method.label}={lay.predictions / method.key}",
              *(["--calibration", str(calibration)] if calibration.is_file() else []), "--out", str(out)]],
            outputs=[out / "calibration.json", out / "reliability.png"],
            after=(f"calibrate_{method.key}", f"predict_{method.key}"),
        ),
    ]  # fmt: skip
