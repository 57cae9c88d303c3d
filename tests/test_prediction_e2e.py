"""`recur predict` end to end: a tiny synthetic DICOM cohort through `recur synth`, `recur convert inhouse`,
`recur plan` and `nnUNetv2_train` (2 epochs, CPU), then a test patient predicted from its ORIGINAL DICOM
folder, compared with `nnUNetv2_predict --save_probabilities` on the converter's file of the same case;
ensemble, rerun, model zip on a machine without the training data, batches and bad input."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from nnunet_env import tiny_nnunet_env

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DATASET_ID = 996
DATASET = f"Dataset{DATASET_ID}_PredictTiny"
TRAINER = "nnUNetTrainerRecur_2epochs"
MODEL_FOLDER = f"{TRAINER}__nnUNetRecurPlans__3d_recur"


def run(command: list[str], env: dict, timeout: int = 600) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic DICOM cohort -> dataset -> plans -> one 2-epoch model; returns (root, env, test patient)."""
    root = tmp_path_factory.mktemp("predict_e2e")
    env = tiny_nnunet_env(root, preprocessed="pre")
    for line in run([str(BIN / "recur"), "env"], env).splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0]
    run([str(BIN / "recur"), "synth", str(root / "synth"), "--cases", "6", "--seed", "0"], env)
    run(
        [str(BIN / "recur"), "convert", "inhouse", str(root / "synth" / "patients")]
        + ["--dataset-id", str(DATASET_ID), "--name", "PredictTiny", "--seed", "1"]
        + ["--report-dir", str(root / "report")],
        env,
    )
    run([str(BIN / "recur"), "plan", str(DATASET_ID)], env)
    run(
        [str(BIN / "nnUNetv2_train"), str(DATASET_ID), "3d_recur", "0", "-p", "nnUNetRecurPlans"]
        + ["-tr", TRAINER, "-device", "cpu", "--npz"],  # --npz: validation probabilities for recur calibrate
        {**env, "nnUNet_n_proc_DA": "0"},
    )
    with open(root / "report" / "cases.csv") as handle:
        test_rows = [row for row in csv.DictReader(handle) if row["role"] == "test"]
    patient = root / "synth" / "patients" / test_rows[0]["patient"]
    return root, env, patient, test_rows[0]["case"]


def model_dir(root: Path) -> Path:
    return root / "results" / DATASET / MODEL_FOLDER


def predict(args: list[str], env: dict, monkeypatch):
    """`recur predict` in-process (the model loads in this process, as a user's run would)."""
    from typer.testing import CliRunner

    from nnunet_recur.cli import app

    for key, value in env.items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    return CliRunner().invoke(app, ["predict", *args])


def without_pet(patient: Path, target: Path) -> Path:
    shutil.copytree(patient, target)
    for path in target.rglob("*"):
        if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).Modality == "PT":
            path.unlink()
    return target


def test_predict_from_the_original_dicom_equals_nnunetv2_predict(trained, monkeypatch, dciodvfy):
    root, env, patient, case = trained
    out = root / "out_single"
    result = predict(
        [str(patient), "--model", str(model_dir(root)), "--out", str(out), "--device", "cpu"]
        + ["--thresholds", "0.3,0.5", "--boost-cc", "5", "--include-gtv"]
        + ["--dose-map", "--boost-gy", "80", "--levels", "5"],
        env,
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {
        "probability.nii.gz",
        "RS_recur_prediction.dcm",
        "SEG_recur_rois.dcm",
        "SEG_recur_probability.dcm",
        "report.html",
        "summary.json",
        "dose_prescription.nii.gz",
        "RD_recur_prescription.dcm",
        "RP_recur_prescription.dcm",
        "PM_recur_prescription.dcm",
        "RS_recur_dose_levels.dcm",
        "dose_map.json",
    }

    # nnU-Net's own prediction of the converter's file of this very case
    stock = root / "stock"
    run(
        [str(BIN / "nnUNetv2_predict"), "-i", str(root / "raw" / DATASET / "imagesTs"), "-o", str(stock)]
        + ["-d", str(DATASET_ID), "-c", "3d_recur", "-p", "nnUNetRecurPlans", "-tr", TRAINER, "-f", "0"]
        + ["--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"],
        env,
    )
    expected = np.load(stock / f"{case}.npz")["probabilities"][0]
    crop = sitk.ReadImage(str(root / "raw" / DATASET / "imagesTs" / f"{case}_0000.nii.gz"))
    probability = sitk.ReadImage(str(out / "probability.nii.gz"))
    assert probability.GetPixelID() == sitk.sitkFloat32
    start = np.round(probability.TransformPhysicalPointToContinuousIndex(crop.GetOrigin())).astype(int)
    full = sitk.GetArrayFromImage(probability)
    size = crop.GetSize()
    lo = np.maximum(start, 0)
    hi = np.minimum(start + np.asarray(size), probability.GetSize())
    ours = full[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
    theirs = expected[
        lo[2] - start[2] : hi[2] - start[2],
        lo[1] - start[1] : hi[1] - start[1],
        lo[0] - start[0] : hi[0] - start[0],
    ]
    # float32 convolutions sum in another order with another thread count (in-process predictor here, a
    # subprocess there): CI saw 3 of 83,520 voxels differ by up to 6.6e-5. A wrong crop, channel or
    # normalisation moves probabilities by far more than 2e-4.
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    outside = full.copy()
    outside[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = 0
    assert not outside.any()  # outside the crop = 0

    # on the full planning CT, and the DICOM objects file under the planning CT's patient and frame
    from nnunet_recur.dataset_conversion.dicom_series import read_image_series, scan_folder

    series = next(s for s in scan_folder(patient) if s.modality == "CT")
    ct = read_image_series(series)
    assert probability.GetSize() == ct.GetSize()
    np.testing.assert_allclose(probability.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    rs = pydicom.dcmread(out / "RS_recur_prediction.dcm")
    assert rs.FrameOfReferenceUID == series.frame_of_reference_uid and rs.PatientID == series.first.PatientID
    assert [r.ROIName for r in rs.StructureSetROISequence] == [
        "Recur_p30",
        "Recur_p50",
        "Recur_5cc",
        "GTV_used",
    ]
    from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct

    structure = read_rtstruct(out / "RS_recur_prediction.dcm")
    p50 = sitk.GetArrayFromImage(rasterise_roi(structure.roi("Recur_p50").contours, ct)).astype(bool)
    np.testing.assert_array_equal(p50, full > 0.5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["folds"] == [0] and summary["statement"] == "RESEARCH TOOL, NOT A MEDICAL DEVICE"
    assert summary["levels"][1]["volume_ml"] == pytest.approx(
        p50.sum() * np.prod(ct.GetSpacing()) / 1000, abs=1e-3
    )
    assert summary["gtv"]["suvmax"] > 0 and len(summary["provenance"]["input"]["sha256"]) == 64
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "NOT A MEDICAL DEVICE" in report
    assert patient.name not in report and patient.name not in json.dumps(summary)

    # --dose-map: the RT Dose is dose_prescription.nii.gz on the CT's grid; every DICOM object validates
    assert "prescription-volume histogram" in report and "Patient ID" not in report
    dose = sitk.ReadImage(str(out / "dose_prescription.nii.gz"))
    assert dose.GetSize() == ct.GetSize()
    np.testing.assert_allclose(dose.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    rd = pydicom.dcmread(out / "RD_recur_prescription.dcm")
    assert rd.FrameOfReferenceUID == series.frame_of_reference_uid
    scaling = float(rd.DoseGridScaling)
    dose_array = sitk.GetArrayFromImage(dose)
    assert np.abs(rd.pixel_array * scaling - dose_array).max() <= scaling / 2 + 1e-6
    dose_summary = json.loads((out / "dose_map.json").read_text())
    assert dose_summary == summary["dose_map"] and dose_summary["parameters"]["boost_gy"] == 80
    assert dose_summary["region"]["max_gy"] <= 80 and 1 <= len(dose_summary["levels"]) <= 5
    assert dose_array.min() >= 68.0 - scaling  # escalation: nowhere below the base dose
    for path in sorted(out.glob("*.dcm")):
        errors, warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
        assert all("Laterality" in w for w in warnings), (path.name, warnings)  # docs/prediction.md


def test_calibrate_on_nnunet_validation_npz_then_predict_applies_it(trained, monkeypatch, tmp_path):
    """`recur calibrate` on nnU-Net's own validation .npz, then `recur predict` with and without it."""
    from typer.testing import CliRunner

    from nnunet_recur.cli import app

    root, env, patient, _ = trained
    copied = tmp_path / DATASET / MODEL_FOLDER
    shutil.copytree(model_dir(root), copied)
    assert list((copied / "fold_0" / "validation").glob("*.npz"))
    for key, value in env.items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["calibrate", str(copied)])  # labels, GTV, CT from nnU-Net's folders
    if result.exit_code == 0:
        record = json.loads((copied / "calibration.json").read_text())
        temperature = record["parameters"]["temperature"]
        assert record["fitted_on"]["cases"] and record["fitted_on"]["region"] == "gtv+20mm"
        assert record["metrics"]["after"]["nll"]["value"] <= record["metrics"]["before"]["nll"]["value"]
    else:  # a 2-epoch model may have no signal yet: refused in one line (the npz were read and fitted)
        assert result.exit_code == 2 and "do not rise with relapse" in result.output, result.output
        skipped = CliRunner().invoke(app, ["calibrate", str(copied), "--skip-if-no-signal"])
        assert skipped.exit_code == 0 and not (copied / "calibration.json").exists()
        from nnunet_recur.prediction.calibration import Calibration, write_calibration

        temperature = 2.0
        write_calibration(copied, Calibration("temperature", 1 / temperature))

    out = tmp_path / "calibrated"
    args = [str(patient), "--model", str(copied), "--out", str(out), "--thresholds", "0.3,0.5"]
    result = predict([*args, "--boost-cc", "5,10", "--dose-map"], env, monkeypatch)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"]["parameters"]["temperature"] == temperature
    # the dose map reads the calibrated probability (the file it was written beside)
    assert json.loads((out / "dose_map.json").read_text())["probability_source"].startswith("calibrated")
    assert "temperature scaling" in (out / "report.html").read_text()
    # out_single: the same patient predicted before calibration.json existed (nnU-Net's own probabilities)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "out_single" / "probability.nii.gz")))
    calibrated = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "probability.nii.gz")))
    inside = (raw > 1e-6) & (raw < 1 - 1e-6)
    logit = np.log(raw[inside].astype(np.float64)) - np.log1p(-raw[inside].astype(np.float64))
    # sigmoid(z / T) of nnU-Net's logit; 1e-4: the float32 of `raw` near 0 or 1 carries its logit to ~1e-4
    np.testing.assert_allclose(calibrated[inside], 1 / (1 + np.exp(-logit / temperature)), atol=1e-4)
    voxel_ml = float(np.prod(summary["probability"]["spacing_mm"])) / 1000
    boosts = [lv for lv in summary["levels"] if lv["kind"] == "boost_cc"]
    for level in boosts:  # each volume met within one voxel, or the name says what was reached
        met = abs(level["volume_ml"] - level["requested"]) <= voxel_ml * 1.001
        assert met or "_got" in level["roi"], level
    assert len({lv["volume_ml"] for lv in boosts}) == len(boosts)  # never two identical ROIs
    before = json.loads((root / "out_single" / "summary.json").read_text())
    p50 = [next(lv for lv in s["levels"] if lv["roi"] == "Recur_p50") for s in (before, summary)]
    assert abs(p50[0]["volume_ml"] - p50[1]["volume_ml"]) <= voxel_ml * 1.001  # T keeps the 0.5 level


def test_ensemble_then_rerun_and_a_zip_on_a_machine_without_the_training_data(trained, monkeypatch, tmp_path):
    root, env, patient, _ = trained
    single = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "out_single" / "probability.nii.gz")))
    # two "seeds" with the same weights: the ensemble mean equals the single fold, the SD is 0
    copied = tmp_path / DATASET / MODEL_FOLDER
    shutil.copytree(model_dir(root), copied)
    shutil.copytree(copied / "fold_0", copied / "fold_1")
    out = tmp_path / "out"
    result = predict(
        [str(patient), "--model", str(copied), "--out", str(out), "--folds", "0", "1"], env, monkeypatch
    )
    assert result.exit_code == 0, result.output
    assert "folds [0, 1]" in result.output
    mean = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "probability.nii.gz")))
    np.testing.assert_allclose(mean, single, atol=1e-6)
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out / "uncertainty_std.nii.gz"))).any()
    level = json.loads((out / "summary.json").read_text())["levels"][0]
    assert len(level["volume_ml_per_fold"]) == 2 and level["volume_ml_sd_over_folds"] == 0
    # a rerun replaces the outputs and leaves none of the earlier run behind
    result = predict(
        [str(patient), "--model", str(copied), "--out", str(out), "--folds", "1"], env, monkeypatch
    )
    assert result.exit_code == 0, result.output
    assert not (out / "uncertainty_std.nii.gz").exists()
    assert json.loads((out / "summary.json").read_text())["model"]["folds"] == [1]

    archive = tmp_path / "model.zip"
    run(
        [
            str(BIN / "nnUNetv2_export_model_to_zip"),
            "-d",
            str(DATASET_ID),
            "-o",
            str(archive),
            "-c",
            "3d_recur",
        ]
        + ["-tr", TRAINER, "-p", "nnUNetRecurPlans", "-f", "0"],
        env,
    )
    elsewhere = {
        k: str(tmp_path / "empty" / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    }
    result = predict(
        [str(patient), "--model", str(archive), "--out", str(tmp_path / "zip_out")],
        {**env, **elsewhere},
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    from_zip = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "zip_out" / "probability.nii.gz")))
    np.testing.assert_array_equal(from_zip, single)


def test_a_batch_reports_the_failing_and_the_killed_patient_and_carries_on(trained, monkeypatch, tmp_path):
    """Two worker processes: a patient without PET fails, the worker of another is killed (SIGKILL, as the
    out-of-memory killer does) while the third waits or runs: that patient alone fails, the pool is rebuilt
    and the third is predicted (before, every pending patient failed with BrokenProcessPool)."""
    import signal
    import tempfile
    import threading
    import time

    root, env, patient, _ = trained
    cohort = tmp_path / "cohort"
    without_pet(patient, cohort / "A_NO_PET")
    shutil.copytree(patient, cohort / "B_KILLED")
    shutil.copytree(patient, cohort / "C_OK")
    out = tmp_path / "batch"
    markers = tmp_path / "tmp"  # the worker pool's job markers (worker pid -> patient folder) land here
    markers.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(markers))
    args = [str(cohort), "--cohort", "--workers", "2", "--model", str(model_dir(root)), "--out", str(out)]
    finished: dict = {}
    run = threading.Thread(target=lambda: finished.setdefault("result", predict(args, env, monkeypatch)))
    run.start()

    def running() -> dict[str, int]:
        found = {}
        for marker in markers.glob("recur_workers_*/round*/*"):
            try:
                found[Path(marker.read_text()).name] = int(marker.name)
            except (OSError, ValueError):
                pass  # removed or being written right now
        return found

    deadline = time.time() + 300
    while "B_KILLED" not in running() and run.is_alive() and time.time() < deadline:
        time.sleep(0.01)
    os.kill(running()["B_KILLED"], signal.SIGKILL)
    run.join(timeout=300)
    result = finished["result"]
    assert result.exit_code == 1, result.output
    assert "FAIL A_NO_PET [pet_missing]" in result.output
    assert "FAIL B_KILLED [worker]" in result.output and "worker process died" in result.output
    assert "1 of 3 patient(s) predicted" in result.output and "Traceback" not in result.output
    assert (out / "C_OK" / "RS_recur_prediction.dcm").is_file()
    assert not (out / "A_NO_PET").exists() and not (out / "B_KILLED").exists()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("error", "FAIL"))]


def test_bad_input_gives_one_line_naming_the_problem_and_writes_nothing(trained, monkeypatch, tmp_path):
    root, env, patient, _ = trained
    model = model_dir(root)
    no_gtv = tmp_path / "NO_GTV"
    shutil.copytree(patient, no_gtv)
    for path in no_gtv.rglob("*"):
        ds = pydicom.dcmread(path) if path.is_file() else None
        if ds is not None and ds.Modality == "RTSTRUCT":
            keep = {
                r.ROINumber for r in ds.StructureSetROISequence if not r.ROIName.upper().startswith("GTV")
            }
            ds.StructureSetROISequence = [r for r in ds.StructureSetROISequence if r.ROINumber in keep]
            ds.ROIContourSequence = [r for r in ds.ROIContourSequence if r.ReferencedROINumber in keep]
            ds.RTROIObservationsSequence = [
                r for r in ds.RTROIObservationsSequence if r.ReferencedROINumber in keep
            ]
            ds.save_as(path)
    wrong_channels = tmp_path / "channels" / MODEL_FOLDER
    shutil.copytree(model, wrong_channels)
    dataset_json = json.loads((wrong_channels / "dataset.json").read_text())
    (wrong_channels / "dataset.json").write_text(
        json.dumps({**dataset_json, "channel_names": {"0": "CT", "1": "MR"}})
    )
    wrong_crop = tmp_path / "crop" / MODEL_FOLDER
    shutil.copytree(model, wrong_crop)
    crop = {**dataset_json["recur_crop"], "reference_spacing_mm": [0.5, 0.5, 1.0]}
    (wrong_crop / "dataset.json").write_text(json.dumps({**dataset_json, "recur_crop": crop}))
    cases = {
        "gtv_missing": [str(no_gtv), "--model", str(model)],
        "pet_missing": [str(without_pet(patient, tmp_path / "NO_PET")), "--model", str(model)],
        "input channels": [str(patient), "--model", str(wrong_channels)],
        "crop box was derived at CT spacing": [str(patient), "--model", str(wrong_crop)],
        "unknown fold 7": [str(patient), "--model", str(model), "--folds", "7"],
    }
    for expected, args in cases.items():
        out = tmp_path / f"out_{expected.replace(' ', '_')}"
        result = predict([*args, "--out", str(out)], env, monkeypatch)
        assert result.exit_code != 0, (expected, result.output)
        lines = _error_lines(result.output)
        assert len(lines) == 1 and expected in lines[0], (expected, result.output)
        assert "Traceback" not in result.output
        assert not out.exists(), expected
