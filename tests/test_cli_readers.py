"""`recur convert pet` / `recur convert rtstruct` through a local typer app (cli.py wires them later)."""

from __future__ import annotations

import shutil

import numpy as np
import SimpleITK as sitk
import typer
from real_data import real
from typer.testing import CliRunner

from nnunet_recur.dataset_conversion.cli_readers import pet, rtstruct

app = typer.Typer()
app.command("pet")(pet)
app.command("rtstruct")(rtstruct)
runner = CliRunner()


def test_help_shows_arguments_and_an_example():
    for command, words in (
        ("pet", ["PET_SERIES_DIR", "--out"]),
        ("rtstruct", ["RTSTRUCT", "--reference", "--out"]),
    ):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120", "TERM": "dumb"})
        assert result.exit_code == 0
        assert "Example:" in result.output
        for word in words:
            assert word in result.output


def test_pet_command_writes_suv_nifti(tmp_path):
    series = real("ibsi_validation_STS_001/dicom/PET/image")
    out = tmp_path / "sub" / "pet_suv.nii.gz"
    result = runner.invoke(app, ["pet", str(series), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "SUV factor 1 (Units GML, 59 slices)" in result.output
    image = sitk.ReadImage(str(out))
    assert image.GetPixelID() == sitk.sitkFloat32 and image.GetSize() == (41, 43, 59)
    reference = sitk.ReadImage(str(real("ibsi_validation_STS_001/nifti/PET_image.nii.gz")))
    assert np.abs(sitk.GetArrayFromImage(image) - sitk.GetArrayFromImage(reference)).max() < 2e-6
    assert [p.name for p in out.parent.iterdir()] == ["pet_suv.nii.gz"]  # no temp file left


def test_pet_command_fails_clearly_without_pet(tmp_path):
    ct_folder = real("rt-utils_mock_data")
    out = tmp_path / "pet.nii.gz"
    result = runner.invoke(app, ["pet", str(ct_folder), "--out", str(out)])
    assert result.exit_code == 2  # exit_status.BAD_INPUT
    assert "pet_missing" in result.output and "rt-utils_mock_data" in result.output
    assert not out.exists()


def test_pet_command_reports_corrupt_file(tmp_path):
    source = real("ibsi_validation_STS_001/dicom/PET/image")
    folder = tmp_path / "pet"
    shutil.copytree(source, folder)
    victim = folder / "000010.dcm"
    victim.write_bytes(victim.read_bytes()[:-500])
    result = runner.invoke(app, ["pet", str(folder), "--out", str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 2  # exit_status.BAD_INPUT
    assert "pet_corrupt" in result.output and "000010.dcm" in result.output
    assert not (tmp_path / "x.nii.gz").exists()


def test_rtstruct_command_writes_masks_and_prints_quirks(tmp_path):
    base = real("rt-utils_mock_data")
    out = tmp_path / "masks"
    result = runner.invoke(
        app, ["rtstruct", str(base / "invalid_reference_rt.dcm"), "--reference", str(base), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"ROI-{i}.nii.gz" for i in range(1, 5)]
    assert result.output.count("match no slice") == 4 and "z = 70.00" in result.output
    mask = sitk.ReadImage(str(out / "ROI-1.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8 and mask.GetSize() == (512, 512, 2)


def test_rtstruct_command_lists_empty_rois_with_safe_names(tmp_path):
    base = real("dicompyler-core_example_data")
    out = tmp_path / "masks"
    result = runner.invoke(app, ["rtstruct", str(base / "rtss.dcm"), "-r", str(base), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "empty ROIs (all-zero masks): Areola" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert "Lt_Lung.nii.gz" in names and "Tumor_Bed_Block.nii.gz" in names and len(names) == 10


def test_rtstruct_command_fails_on_a_non_rtstruct(tmp_path):
    base = real("rt-utils_mock_data")
    result = runner.invoke(
        app, ["rtstruct", str(base / "ct_1.dcm"), "--reference", str(base), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2  # exit_status.BAD_INPUT
    assert "rtstruct_missing" in result.output and "ct_1.dcm" in result.output
