"""The cohort converter on small hand-made NIfTI patients (no synthetic generator needed):
dataset layout, dataset.json, split files, exclusions, privacy, atomic reruns."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.cohort import convert_inhouse
from nnunet_recur.dataset_conversion.nnunet_writer import DatasetLocationError


def _write(array, path: Path, spacing, origin):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def make_patient(folder: Path, seed: int, *, defect: str | None = None) -> None:
    """CT 48 x 48 x 30 (1 x 1 x 2 mm), PET on a 2 mm grid with another origin, GTV ball, relapse ball."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    nz, ny, nx = 30, 48, 48
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    c = np.array([15, 24, 24]) + rng.integers(-3, 4, 3)
    r2 = ((zz - c[0]) * 2.0) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
    gtv = (r2 <= 25).astype(np.uint8)
    rc = c + np.array([1, rng.integers(3, 6), -rng.integers(3, 6)])
    relapse = ((((zz - rc[0]) * 2.0) ** 2 + (yy - rc[1]) ** 2 + (xx - rc[2]) ** 2) <= 16).astype(np.uint8)
    ct = np.full((nz, ny, nx), 40, np.int16) + rng.integers(-10, 10, (nz, ny, nx)).astype(np.int16)
    ct_spacing = (1.0, 1.2, 2.0) if defect == "uneven_spacing" else (1.0, 1.0, 2.0)
    _write(ct, folder / "ct.nii.gz", ct_spacing, (0.0, 0.0, 0.0))
    # PET: 2 mm grid shifted by 1 mm, larger in-plane, axially covering the CT (or not for gtv_outside_pet)
    pz = 8 if defect == "gtv_outside_pet" else 32
    pet = np.ones((pz, 28, 28), np.float32)
    pet[:, 10:18, 10:18] = 5.0
    if defect != "pet_missing":
        _write(pet, folder / "pet.nii.gz", (2.0, 2.0, 2.0), (-2.0, -2.0, -1.0))
    _write(gtv, folder / "gtv.nii.gz", (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    if defect == "relapse_missing":
        relapse[:] = 0
    _write(relapse, folder / "relapse.nii.gz", (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


DEFECTS = {
    "PAT_C": "pet_missing",
    "PAT_F": "relapse_missing",
    "PAT_H": "uneven_spacing",
    "PAT_K": "gtv_outside_pet",
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    src = root / "patients"
    for i, name in enumerate("ABCDEFGHIJKL"):
        patient = f"PAT_{name}"
        make_patient(src / patient, i, defect=DEFECTS.get(patient))
    raw = root / "raw"
    pre = root / "pre"
    report = root / "report"
    summary = convert_inhouse(
        src,
        7,
        "Tiny",
        seed=3,
        report_dir=report,
        id_map=root / "ids.csv",
        raw_dir=raw,
        preprocessed_dir=pre,
        show_progress=False,
    )
    return root, src, summary


def _convert_tiny(src, root):
    """The fixture's conversion again (same id, name and seed), writing under `root`."""
    return convert_inhouse(
        src,
        7,
        "Tiny",
        seed=3,
        report_dir=root / "report",
        raw_dir=root / "raw",
        preprocessed_dir=root / "pre",
        show_progress=False,
    )


def test_exclusions_and_summary(cohort):
    root, _, summary = cohort
    assert summary.line == (
        "8 of 12 patients converted; 4 excluded: 1 PET missing, 1 relapse missing, 1 uneven spacing, "
        "1 GTV outside PET"
    )
    assert summary.exit_code == 0
    with open(root / "report" / "exclusions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["patient"]: r["cause"] for r in rows} == DEFECTS
    assert all(r["detail"] for r in rows)


def test_dataset_layout_json_and_split(cohort):
    root, _, summary = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT", "1": "PET", "2": "PET_zscore_patient"}
    assert ds["labels"] == {"background": 0, "relapse": [1]} and ds["regions_class_order"] == [1]
    assert ds["file_ending"] == ".nii.gz"
    split = summary.split
    assert (len(split.train), len(split.val), len(split.test)) == (4, 2, 2)
    assert ds["numTraining"] == 6
    tr = sorted(p.name for p in (folder / "imagesTr").iterdir())
    assert tr == sorted(f"{c}_{ch}.nii.gz" for c in split.train_val for ch in ("0000", "0001", "0002"))
    ts = sorted(p.name for p in (folder / "labelsTs").iterdir())
    assert ts == sorted(f"{c}.nii.gz" for c in split.test)
    assert sorted(p.name for p in (folder / "masksTs").iterdir()) == sorted(
        f"{c}_{m}.nii.gz" for c in split.test for m in ("brain", "gtv")
    )
    splits = json.loads((root / "pre" / "Dataset007_Tiny" / "splits_final.json").read_text())
    assert len(splits) == 5 and splits[0] == {"train": list(split.train), "val": list(split.val)}
    assert json.loads((folder / "splits_final.json").read_text()) == splits
    crop = ds["recur_crop"]
    assert crop["mode"] == "auto" and crop["derived_from_cases"] == 6
    assert not (folder / ".recur_tmp").exists()


def test_case_files_share_geometry_and_types(cohort):
    root, _, summary = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    case = summary.split.train[0]
    ct = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    pet = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0001.nii.gz"))
    label = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
    gtv = sitk.ReadImage(str(folder / "masksTr" / f"{case}_gtv.nii.gz"))
    assert ct.GetPixelID() == sitk.sitkInt16 and pet.GetPixelID() == sitk.sitkFloat32
    assert label.GetPixelID() == sitk.sitkUInt8 and gtv.GetPixelID() == sitk.sitkUInt8
    for other in (pet, label, gtv):
        assert other.GetSize() == ct.GetSize()
        assert other.GetOrigin() == ct.GetOrigin() and other.GetSpacing() == ct.GetSpacing()
    assert (
        list(ct.GetSize()) == json.loads((folder / "dataset.json").read_text())["recur_crop"]["size_voxels"]
    )
    assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1}
    # PET stays in SUV: the hot square of 5 SUV survives the linear resampling
    assert sitk.GetArrayFromImage(pet).max() == pytest.approx(5.0, abs=1e-4)


def test_privacy_names_never_in_the_dataset(cohort):
    root, _, summary = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    for path in list(folder.rglob("*")) + list((root / "pre").rglob("*")):
        assert "PAT_" not in path.name
        if path.suffix == ".json":
            assert "PAT_" not in path.read_text()
    with open(root / "ids.csv") as fh:
        ids = {r["patient"]: r["case"] for r in csv.DictReader(fh)}
    assert ids == summary.converted
    assert ids["PAT_A"] == "RECUR_001" and ids["PAT_L"] == "RECUR_012"  # sorted names, gaps for exclusions


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_rerun_skips_finished_cases_and_is_byte_identical(cohort, tmp_path):
    root, src, first = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    before = _digest(folder)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")}
    again = _convert_tiny(src, root)
    assert again.written == 0 and again.skipped == 8
    assert _digest(folder) == before
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")} == mtimes
    # a fresh conversion into another folder gives the very same bytes
    fresh = _convert_tiny(src, tmp_path)
    assert fresh.written == 8
    assert _digest(tmp_path / "raw" / "Dataset007_Tiny") == before


def test_interrupted_case_is_redone(cohort):
    root, src, _ = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    victim = next(iter(sorted((folder / "imagesTr").glob("*_0000.nii.gz"))))
    content = victim.read_bytes()
    victim.unlink()  # as if the run died before the last rename of this case
    again = _convert_tiny(src, root)
    assert again.written == 1
    assert victim.read_bytes() == content


def test_location_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    src = tmp_path / "patients"
    make_patient(src / "P1", 0)
    with pytest.raises(DatasetLocationError, match="nnUNet_raw is not set"):
        convert_inhouse(src, 9, "X", show_progress=False)
    (tmp_path / "raw" / "Dataset009_Other").mkdir(parents=True)
    with pytest.raises(DatasetLocationError, match="already used"):
        convert_inhouse(src, 9, "X", raw_dir=tmp_path / "raw", show_progress=False)
    with pytest.raises(DatasetLocationError, match="inside nnUNet_raw"):
        convert_inhouse(
            src, 10, "X", raw_dir=tmp_path / "raw", report_dir=tmp_path / "raw" / "rep", show_progress=False
        )


def test_nothing_converted_gives_nonzero_exit(tmp_path):
    src = tmp_path / "patients"
    make_patient(src / "P1", 0, defect="pet_missing")
    summary = convert_inhouse(
        src, 11, "None", raw_dir=tmp_path / "raw", report_dir=tmp_path / "rep", show_progress=False
    )
    assert summary.exit_code == 1
    assert summary.line == "0 of 1 patients converted; 1 excluded: 1 PET missing"


def test_nnunet_verify_dataset_integrity_accepts_the_dataset(cohort, capfd):
    """nnU-Net's own check (the full plan_and_preprocess command runs on the synthetic DICOM cohort)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    root, _, _ = cohort
    verify_dataset_integrity(str(root / "raw" / "Dataset007_Tiny"), num_processes=1)
    out = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in out and "Error" not in out and "Warning" not in out


def test_cv5_split_writes_five_different_folds(cohort, tmp_path):
    _, src, _ = cohort
    summary = convert_inhouse(
        src,
        8,
        "TinyCv",
        split="cv5",
        seed=3,
        report_dir=tmp_path / "report",
        raw_dir=tmp_path / "raw",
        preprocessed_dir=tmp_path / "pre",
        show_progress=False,
    )
    folds = json.loads((tmp_path / "pre" / "Dataset008_TinyCv" / "splits_final.json").read_text())
    assert len(folds) == 5 and len({tuple(f["val"]) for f in folds}) == 5
    assert sorted(c for f in folds for c in f["val"]) == sorted(summary.split.train_val)
    test_cases = sorted(
        p.name[: -len("_0000.nii.gz")]
        for p in (tmp_path / "raw" / "Dataset008_TinyCv" / "imagesTs").glob("*_0000.nii.gz")
    )
    assert test_cases == sorted(summary.split.test) and len(test_cases) == 2


def test_assemble_case_exclusion_causes():
    from nnunet_recur.dataset_conversion.errors import ConversionError
    from nnunet_recur.dataset_conversion.prepare import assemble_case

    def img(array, origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 2.0)):
        out = sitk.GetImageFromArray(array)
        out.SetOrigin(origin)
        out.SetSpacing(spacing)
        return out

    ct = img(np.zeros((10, 20, 20), np.int16))
    pet = img(np.ones((10, 20, 20), np.float32))
    gtv = np.zeros((10, 20, 20), np.uint8)
    gtv[4:6, 8:12, 8:12] = 1
    relapse_far = img(gtv.copy(), origin=(500.0, 0.0, 0.0))  # on its own grid, far outside the CT
    with pytest.raises(ConversionError) as info:
        assemble_case(ct, pet, relapse_far, img(gtv))
    assert info.value.cause == "relapse_outside_image"
    with pytest.raises(ConversionError) as info:
        assemble_case(ct, pet, img(gtv), img(np.zeros_like(gtv)))
    assert info.value.cause == "gtv_missing"
    with pytest.raises(ConversionError) as info:
        assemble_case(ct, img(np.ones((3, 20, 20), np.float32), origin=(0, 0, 14.0)), img(gtv), img(gtv))
    assert info.value.cause == "gtv_outside_pet"
    # PET covering only part of the CT, GTV inside it: CT cut, relapse voxels outside dropped with a note
    relapse = np.zeros_like(gtv)
    relapse[3:7, 8:12, 8:12] = 1
    case = assemble_case(
        ct, img(np.ones((4, 20, 20), np.float32), origin=(0, 0, 8.0)), img(relapse), img(gtv)
    )
    assert case.ct.GetSize()[2] == 4 and case.ct.GetOrigin()[2] == 8.0
    assert any("dropped" in note for note in case.notes)
    assert (sitk.GetArrayFromImage(case.pet) == 1).all()


def test_new_patient_is_prepared_like_the_training_data(cohort, tmp_path):
    import shutil

    from nnunet_recur.dataset_conversion.new_patient import prepare_new_patient

    root, src, summary = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    new = tmp_path / "PAT_A_followup"
    shutil.copytree(src / "PAT_A", new)
    (new / "relapse.nii.gz").unlink()  # a new patient has no relapse yet
    files = prepare_new_patient(new, folder, tmp_path / "input", "RECUR_NEW")
    assert "label" not in files and all(p.is_file() for p in files.values())
    case = summary.converted["PAT_A"]
    part = "Ts" if case in summary.split.test else "Tr"
    for key, ours in (
        ("ct", f"images{part}/{case}_0000"),
        ("pet", f"images{part}/{case}_0001"),
        ("pet_zscore", f"images{part}/{case}_0002"),
        ("mask_gtv", f"masks{part}/{case}_gtv"),
    ):
        a = sitk.ReadImage(str(files[key]))
        b = sitk.ReadImage(str(folder / f"{ours}.nii.gz"))
        assert a.GetSize() == b.GetSize() and a.GetOrigin() == b.GetOrigin()
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_new_patient_command_writes_predict_input_and_refuses_a_folder_without_dataset_json(cohort, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from nnunet_recur.dataset_conversion.cli import app

    root, src, summary = cohort
    folder = root / "raw" / "Dataset007_Tiny"
    new = tmp_path / "PAT_B_followup"
    shutil.copytree(src / "PAT_B", new)
    (new / "relapse.nii.gz").unlink()
    out = tmp_path / "input"
    result = CliRunner().invoke(app, ["new-patient", str(new), "--dataset", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"RECUR_NEW_000{c}.nii.gz" for c in range(3)]
    assert (out / "masks" / "RECUR_NEW_gtv.nii.gz").is_file()
    assert "PAT_B" not in " ".join(str(p) for p in out.rglob("*"))

    bad = CliRunner().invoke(app, ["new-patient", str(new), "--dataset", str(tmp_path), "--out", str(out)])
    assert bad.exit_code == 2  # bad input (exit_status.BAD_INPUT)
    assert "no dataset.json" in bad.output
