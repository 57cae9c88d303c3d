"""Done-when checks of the conversion issue on the synthetic cohort (`recur synth`):
every defect excluded with the right cause, clean patients converted with masks and SUV matching the
generator's ground truth, all three formats convert, nnU-Net accepts every output."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.cohort import convert_hecktor, convert_inhouse
from nnunet_recur.dataset_conversion.geometry import resample_onto

synthetic = pytest.importorskip("nnunet_recur.synthetic", reason="synthetic generator not available")
try:
    from nnunet_recur.synthetic import make_cohort  # noqa: F401
except ImportError:  # pragma: no cover - only while the generator is being written
    pytest.skip("nnunet_recur.synthetic.make_cohort not available", allow_module_level=True)

SEED = 1
CASES = 12  # >= 10: every defect cause hits one patient, 7 stay clean


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_dicom")
    synthetic.make_cohort(
        root / "synth", cases=CASES, seed=SEED, fmt="inhouse-dicom", size="small", defects=True
    )
    summary = convert_inhouse(
        root / "synth" / "patients",
        501,
        "SynthDicom",
        seed=SEED,
        report_dir=root / "report",
        id_map=root / "ids.csv",
        raw_dir=root / "raw",
        preprocessed_dir=root / "pre",
        workers=1,
        show_progress=False,
    )
    return root, summary


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _case_files(folder: Path, case: str) -> dict[str, Path]:
    part = "Tr" if (folder / "imagesTr" / f"{case}_0000.nii.gz").exists() else "Ts"
    return {
        "ct": folder / f"images{part}" / f"{case}_0000.nii.gz",
        "pet": folder / f"images{part}" / f"{case}_0001.nii.gz",
        "label": folder / f"labels{part}" / f"{case}.nii.gz",
        "gtv": folder / f"masks{part}" / f"{case}_gtv.nii.gz",
        "brain": folder / f"masks{part}" / f"{case}_brain.nii.gz",
    }


def test_every_defect_is_excluded_with_its_cause(dicom_cohort):
    root, summary = dicom_cohort
    defects = json.loads((root / "synth" / "ground_truth" / "defects.json").read_text())
    assert len(defects) == 5
    with open(root / "report" / "exclusions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["patient"]: r["cause"] for r in rows} == defects
    assert len(summary.converted) == CASES - len(defects)
    assert summary.line.startswith(f"{CASES - len(defects)} of {CASES} patients converted; 5 excluded: ")
    assert summary.exit_code == 0


def test_clean_patients_match_the_ground_truth(dicom_cohort):
    """GTV and relapse Dice >= 0.95 against the generator's masks cropped the same way (ground truth
    resampled, nearest neighbour, onto the converted grid); PET equals the intended SUV."""
    root, summary = dicom_cohort
    folder = root / "raw" / "Dataset501_SynthDicom"
    truth_dir = root / "synth" / "ground_truth"
    for patient, case in sorted(summary.converted.items()):
        files = _case_files(folder, case)
        ct = _read(files["ct"])
        for key, truth_name in (("label", "relapse"), ("gtv", "gtv")):
            truth = resample_onto(
                _read(truth_dir / f"{patient}_{truth_name}.nii.gz"), ct, interpolator="nearest"
            )
            ours = sitk.GetArrayFromImage(_read(files[key])) > 0
            expected = sitk.GetArrayFromImage(truth) > 0
            if not expected.any():
                continue  # a test patient's relapse may lie outside the train/val box
            assert _dice(ours, expected) >= 0.95, (patient, key, _dice(ours, expected))
        brain_truth = sitk.GetArrayFromImage(
            resample_onto(_read(truth_dir / f"{patient}_brain.nii.gz"), ct, interpolator="nearest")
        )
        brain = sitk.GetArrayFromImage(_read(files["brain"])) > 0
        if brain_truth.sum() > 50:
            assert (brain & (brain_truth > 0)).sum() / (brain_truth > 0).sum() >= 0.95, patient
        assert not (brain & (sitk.GetArrayFromImage(_read(files["gtv"])) > 0)).any()

        info = json.loads((truth_dir / f"{patient}.json").read_text())
        intended = synthetic.generate_patient(SEED, info["index"], "small").pet
        pet = _read(files["pet"])
        expected_pet = sitk.GetArrayFromImage(resample_onto(intended, pet, pixel_type=sitk.sitkFloat32))
        ours_pet = sitk.GetArrayFromImage(pet)
        inside = expected_pet > 0  # the padding outside the PET field of view is 0 in both
        assert np.abs(ours_pet - expected_pet)[inside].max() <= 1e-3 * max(1.0, ours_pet.max()), patient
        assert ours_pet.dtype == np.float32


def test_dataset_json_crop_and_privacy(dicom_cohort):
    root, summary = dicom_cohort
    folder = root / "raw" / "Dataset501_SynthDicom"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "relapse": [1]} and ds["regions_class_order"] == [1]
    crop = ds["recur_crop"]
    assert crop["mode"] == "auto" and crop["derived_from_cases"] == len(summary.split.train_val)
    size = crop["size_voxels"]
    # the small synthetic size gives a small box (the demo trains on it)
    assert np.prod(size) <= 100_000, size
    assert list(_read(next((folder / "imagesTr").glob("*_0000.nii.gz"))).GetSize()) == size
    text = " ".join(p.read_text() for p in folder.rglob("*.json"))
    for patient in summary.converted:
        assert patient not in text
        assert not any(patient in str(p) for p in folder.rglob("*"))
    assert "Synthetic^Patient" not in text and "SYN-" not in text


@pytest.mark.slow
def test_nnunet_plan_and_preprocess_accepts_it(dicom_cohort, tmp_path):
    """The stock command of the issue, on the converted synthetic DICOM cohort."""
    root, summary = dicom_cohort
    # The user's environment plus the three folders, alike in shape to bench/gpu_epoch.py's stock
    # environment (which adds compile and the trainer folder): this test runs the stock command as a user
    # would.
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(root / "raw"),
        nnUNet_preprocessed=str(root / "pre"),
        nnUNet_results=str(tmp_path / "results"),
        nnUNet_def_n_proc="1",
    )
    exe = Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"
    cmd = [str(exe), "-d", "501", "--verify_dataset_integrity", "-c", "3d_fullres", "-np", "1", "-npfp", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verify_dataset_integrity Done" in done.stdout
    assert "Error" not in done.stdout
    pre = root / "pre" / "Dataset501_SynthDicom"
    assert (pre / "nnUNetPlans.json").is_file()
    splits = json.loads((pre / "splits_final.json").read_text())
    assert splits[4] == {"train": list(summary.split.train), "val": list(summary.split.val)}


def _verify(folder: Path, capfd) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)
    out = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in out and "Error" not in out and "Warning" not in out


def test_inhouse_nifti_converts(tmp_path, capfd):
    synthetic.make_cohort(
        tmp_path / "synth", cases=6, seed=2, fmt="inhouse-nifti", size="small", defects=True
    )
    summary = convert_inhouse(
        tmp_path / "synth" / "patients",
        502,
        "SynthNifti",
        split="paper",
        seed=2,
        report_dir=tmp_path / "report",
        raw_dir=tmp_path / "raw",
        show_progress=False,
    )
    defects = json.loads((tmp_path / "synth" / "ground_truth" / "defects.json").read_text())
    assert {e.patient: e.cause for e in summary.exclusions} == defects
    assert len(summary.converted) == 6 - len(defects) >= 3
    folder = tmp_path / "raw" / "Dataset502_SynthNifti"
    truth_dir = tmp_path / "synth" / "ground_truth"
    for patient, case in summary.converted.items():
        files = _case_files(folder, case)
        truth = resample_onto(
            _read(truth_dir / f"{patient}_gtv.nii.gz"), _read(files["ct"]), interpolator="nearest"
        )
        assert (
            _dice(sitk.GetArrayFromImage(_read(files["gtv"])) > 0, sitk.GetArrayFromImage(truth) > 0) >= 0.99
        )
    _verify(folder, capfd)


@pytest.mark.parametrize("labels", ["gtvp", "gtvp+gtvn"])
def test_hecktor_converts(tmp_path, capfd, labels):
    synthetic.make_cohort(tmp_path / "synth", cases=4, seed=3, fmt="hecktor", size="small")
    summary = convert_hecktor(
        tmp_path / "synth",
        503,
        "SynthHecktor",
        labels=labels,
        crop="fixed",
        report_dir=tmp_path / "report",
        raw_dir=tmp_path / "raw",
        show_progress=False,
    )
    assert summary.line == "4 of 4 patients converted; none excluded"
    folder = tmp_path / "raw" / "Dataset503_SynthHecktor"
    ds = json.loads((folder / "dataset.json").read_text())
    if labels == "gtvp":
        assert ds["labels"] == {"background": 0, "GTVp": [1]} and ds["regions_class_order"] == [1]
    else:
        assert ds["labels"] == {"background": 0, "GTVp": [1], "GTVn": [2]} and ds["regions_class_order"] == [
            1,
            2,
        ]
    assert ds["numTraining"] == 4 and not (folder / "imagesTs").exists()
    values = set()
    for path in (folder / "labelsTr").glob("*.nii.gz"):
        label = _read(path)
        assert label.GetSize() == (160, 224, 128)
        values |= set(np.unique(sitk.GetArrayFromImage(label)).tolist())
    assert values == ({0, 1} if labels == "gtvp" else {0, 1, 2})
    _verify(folder, capfd)


def test_hecktor_empty_gtvp_is_excluded(tmp_path):
    synthetic.make_cohort(tmp_path / "synth", cases=2, seed=4, fmt="hecktor", size="small")
    label_path = sorted((tmp_path / "synth" / "labelsTr").glob("*.nii.gz"))[0]
    label = _read(label_path)
    array = sitk.GetArrayFromImage(label)
    array[array == 1] = 0
    emptied = sitk.GetImageFromArray(array)
    emptied.CopyInformation(label)
    sitk.WriteImage(emptied, str(label_path))
    # Keyword arguments alike in shape to other tests' convert calls: each test states its own settings.
    summary = convert_hecktor(
        tmp_path / "synth",
        504,
        "SynthHecktor",
        crop="none",
        report_dir=tmp_path / "report",
        raw_dir=tmp_path / "raw",
        show_progress=False,
    )
    assert [(e.patient, e.cause) for e in summary.exclusions] == [
        (label_path.name[: -len(".nii.gz")], "gtv_missing")
    ]


@pytest.mark.slow
def test_cli_runs_with_workers_and_reports(tmp_path):
    """`recur convert inhouse` end to end through the console script, two worker processes."""
    synthetic.make_cohort(tmp_path / "synth", cases=4, seed=5, fmt="inhouse-dicom", size="small")
    env = dict(os.environ)
    env.pop("nnUNet_preprocessed", None)
    env["nnUNet_raw"] = str(tmp_path / "raw")
    exe = Path(sys.executable).parent / "recur"
    cmd = [
        str(exe),
        "convert",
        "inhouse",
        str(tmp_path / "synth" / "patients"),
        "--dataset-id",
        "505",
        "--workers",
        "2",
        "--crop",
        "fixed",
        "--split",
        "paper",
        "--seed",
        "5",
        "--report-dir",
        str(tmp_path / "report"),
        "--id-map",
        str(tmp_path / "ids.csv"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 of 4 patients converted; none excluded" in done.stdout
    assert "nnUNet_preprocessed is not set" in done.stdout
    assert (tmp_path / "report" / "splits_final.json").is_file()
    assert (tmp_path / "raw" / "Dataset505_RecurOPSCC" / "splits_final.json").is_file()
    ct = _read(next((tmp_path / "raw" / "Dataset505_RecurOPSCC" / "imagesTr").glob("*_0000.nii.gz")))
    assert ct.GetSize() == (160, 224, 128)
    with open(tmp_path / "ids.csv") as fh:
        assert [r["case"] for r in csv.DictReader(fh)] == ["RECUR_001", "RECUR_002", "RECUR_003", "RECUR_004"]
    # nothing convertible -> non-zero exit
    empty = tmp_path / "empty" / "P1"
    empty.mkdir(parents=True)
    done = subprocess.run(
        cmd[:3] + [str(tmp_path / "empty"), "--dataset-id", "506", "--report-dir", str(tmp_path / "r2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "0 of 1 patients converted; 1 excluded: 1 CT missing" in done.stdout


def test_frame_of_reference_mismatch_is_excluded(tmp_path):
    import pydicom

    synthetic.make_cohort(tmp_path / "synth", cases=1, seed=6, fmt="inhouse-dicom", size="small")
    patient = next((tmp_path / "synth" / "patients").iterdir())
    changed = 0
    for path in patient.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path)
            if ds.Modality == "PT":
                ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
                ds.save_as(path)
                changed += 1
    assert changed > 0
    summary = convert_inhouse(
        tmp_path / "synth" / "patients",
        507,
        "SynthFor",
        report_dir=tmp_path / "report",
        raw_dir=tmp_path / "raw",
        show_progress=False,
    )
    assert [(e.patient, e.cause) for e in summary.exclusions] == [
        (patient.name, "frame_of_reference_mismatch")
    ]
    assert summary.exit_code == 1
