"""One regression test per item of issue 13 (hostile exports, damaged values, storage faults, paths and
trust), on tiny patients written by tests/hostile_corpus.py. Each test failed on the converter before
the fix; docs/conversion.md says why each check exists."""

from __future__ import annotations

import csv
import gzip
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus as hc  # noqa: E402

from nnunet_recur.dataset_conversion.cohort import (  # noqa: E402
    SourceCase,
    convert_inhouse,
    fingerprint,
)
from nnunet_recur.dataset_conversion.dicom_series import scan_folder  # noqa: E402
from nnunet_recur.dataset_conversion.errors import ConversionError  # noqa: E402
from nnunet_recur.dataset_conversion.inhouse import InhouseOptions, load_inhouse_patient  # noqa: E402
from nnunet_recur.dataset_conversion.locking import DatasetBusyError, dataset_lock  # noqa: E402
from nnunet_recur.dataset_conversion.new_patient import prepare_new_patient  # noqa: E402
from nnunet_recur.dataset_conversion.nifti_io import (  # noqa: E402
    check_nifti_file,
    nifti_problem,
    read_nifti,
    verify_written_nifti,
)
from nnunet_recur.dataset_conversion.nnunet_writer import DatasetLocationError, DatasetWriter  # noqa: E402
from nnunet_recur.dataset_conversion.prepare import PreparedCase, load_staged, stage_case  # noqa: E402
from nnunet_recur.dataset_conversion.quality import safe_csv_cell  # noqa: E402
from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, self_intersects  # noqa: E402
from nnunet_recur.dataset_conversion.suv import pet_series_to_suv, suv_factor  # noqa: E402
from nnunet_recur.dataset_conversion.workers import run_jobs  # noqa: E402


def _cause(folder: Path, options: InhouseOptions = InhouseOptions()) -> tuple[str, str]:
    with pytest.raises(ConversionError) as info:
        load_inhouse_patient(folder, options)
    return info.value.cause, str(info.value)


def _patient_uids(folder: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(next((folder / "CT").iterdir()), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.FrameOfReferenceUID


# -- 1. PET series chosen by CorrectedImage -----------------------------------------------------------------
def test_nac_twin_of_same_length_sorting_first_is_not_chosen(tmp_path):
    hc.dicom_patient(tmp_path / "P", 1)
    study, frame = _patient_uids(tmp_path / "P")
    hc.write_pet(
        tmp_path / "P", np.random.default_rng(1), hc._Uids(5), study, frame, sub="A_NAC",
        description="PET NAC", corrected=("DECY",), uptake_scale=0.25,
    )  # fmt: skip
    case = load_inhouse_patient(tmp_path / "P")
    assert case.series["pet"].startswith("PET AC [")
    assert float(sitk.GetArrayViewFromImage(case.pet).max()) > 2.0  # the NAC one peaks below 1


def test_only_nac_or_two_corrected_pets_are_named_exclusions_and_pet_series_overrides(tmp_path):
    hc.dicom_patient(tmp_path / "N", 2, corrected=("DECY",), description="PET NAC")
    assert _cause(tmp_path / "N")[0] == "pet_not_corrected"
    hc.dicom_patient(tmp_path / "A", 3)
    study, frame = _patient_uids(tmp_path / "A")
    hc.write_pet(
        tmp_path / "A", np.random.default_rng(3), hc._Uids(6), study, frame, sub="PET2", description="PSF"
    )
    assert _cause(tmp_path / "A")[0] == "pet_series_ambiguous"
    case = load_inhouse_patient(tmp_path / "A", InhouseOptions(pet_series="^PSF$"))
    assert case.series["pet"].startswith("PSF [")


# -- 2. CT series ambiguity ----------------------------------------------------------------------------------
def test_two_ct_series_without_reference_are_ambiguous_unless_ct_series_names_one(tmp_path):
    p = tmp_path / "P"
    rng, uids = np.random.default_rng(4), hc._Uids(7)
    study, frame = uids(), uids()
    hc.write_ct(p / "a", rng, uids, study, frame, description="CT contrast")
    hc.write_ct(p / "b", rng, uids, study, frame, offset_hu=500, description="CT native")
    hc.write_pet(p, rng, uids, study, frame)
    hc.write_rtstruct(p, uids, study, frame, None)
    assert _cause(p)[0] == "ct_series_ambiguous"
    case = load_inhouse_patient(p, InhouseOptions(ct_series="native"))
    assert float(np.mean(sitk.GetArrayViewFromImage(case.ct))) > 400


# -- 3. SUV preconditions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "cause"),
    [
        ({"weight": 700.0}, "suv_implausible"),
        ({"slope_on_slice": (3, 1e38)}, "suv_implausible"),
        ({"slope_on_slice": (3, -2.0)}, "suv_implausible"),
        ({"weight_on_slice": (5, 80.0)}, "suv_not_computable"),
        ({"corrected": ("DECY", "SCAT")}, "pet_not_corrected"),
    ],
)
def test_suv_preconditions(tmp_path, options, cause):
    hc.dicom_patient(tmp_path / "P", 5, **options)
    (pet,) = scan_folder(tmp_path / "P" / "PET")
    with pytest.raises(ConversionError) as info:
        pet_series_to_suv(pet)
    assert info.value.cause == cause


def test_ge_private_post_injection_time_is_the_scan_time_when_the_series_was_recreated(tmp_path):
    hc.dicom_patient(tmp_path / "P", 6)
    (pet,) = scan_folder(tmp_path / "P" / "PET")
    before = suv_factor(pet)
    for path in pet.files:  # series re-created at 12:00; GE says the scan started 10:30 (not 11:00)
        ds = pydicom.dcmread(path)
        ds.SeriesTime = "120000"
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0x0D, "DT", "20200101103000")
        ds.save_as(path, enforce_file_format=True)
    (pet,) = scan_folder(tmp_path / "P" / "PET")
    expected = before * 2.0 ** (-1800 / 6586.2)  # 30 min less decay
    assert suv_factor(pet) == pytest.approx(expected, rel=1e-9)


# -- 4, 7, 10. NIfTI guard -----------------------------------------------------------------------------------
def test_nifti_guard_names_each_problem(tmp_path):
    nan = np.ones((4, 5, 6), np.float32)
    nan[1, 2, 3] = np.nan
    hc._nifti1(nan, tmp_path / "nan.nii.gz")
    with pytest.raises(ConversionError) as info:
        read_nifti(tmp_path / "nan.nii.gz", "pet_corrupt")
    assert info.value.cause == "non_finite_values"
    hc._nifti1(np.zeros((2, 4, 5, 6), np.int16), tmp_path / "4d.nii.gz")
    assert "4-D image" in nifti_problem(tmp_path / "4d.nii.gz")
    hc._write_nifti2(np.zeros((4, 5, 6), np.int16), tmp_path / "n2.nii.gz")
    assert "NIfTI-2" in nifti_problem(tmp_path / "n2.nii.gz")
    hc._nifti1(np.zeros((4, 5, 6), np.int16), tmp_path / "p0.nii.gz", spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ConversionError) as info:
        read_nifti(tmp_path / "p0.nii.gz", "ct_corrupt")
    assert info.value.cause == "invalid_spacing"


def test_voxel_limit_is_checked_before_allocating_and_configurable(tmp_path, monkeypatch):
    hc.nifti_patient(tmp_path / "P", 7)
    assert check_nifti_file(tmp_path / "P" / "ct.nii.gz").n_voxels == 16 * 32 * 32
    monkeypatch.setenv("RECUR_MAX_VOXELS", "1000")
    assert _cause(tmp_path / "P")[0] == "image_too_large"
    hc.dicom_patient(tmp_path / "D", 8)
    assert _cause(tmp_path / "D")[0] == "image_too_large"


def test_oblique_nifti_is_refused_like_oblique_dicom(tmp_path):
    angle = np.radians(10)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    hc.nifti_patient(tmp_path / "P", 9, ct_kwargs={"affine_rot": tilt})
    assert _cause(tmp_path / "P")[0] == "oblique_series"


# -- 5. slice truncated inside its header --------------------------------------------------------------------
def test_slice_cut_inside_its_header_makes_the_series_corrupt_naming_the_file(tmp_path):
    for modality, sub, name in (("ct", "CT", "ct_007.dcm"), ("pet", "PET", "pet_004.dcm")):
        uids = hc.dicom_patient(tmp_path / modality, 10)
        hc._cut_inside_header(
            tmp_path / modality / sub / name, tmp_path / modality / sub / "cut.dcm", uids[modality]
        )
        cause, message = _cause(tmp_path / modality)
        assert cause == f"{modality}_corrupt" and "cut.dcm" in message


# -- 6. contours ---------------------------------------------------------------------------------------------
def test_nan_contour_names_roi_and_file_and_bowtie_warns(tmp_path):
    p = tmp_path / "P"
    rng, uids = np.random.default_rng(11), hc._Uids(11)
    study, frame = uids(), uids()
    ct = hc.write_ct(p, rng, uids, study, frame)
    hc.write_pet(p, rng, uids, study, frame)
    hc.write_rtstruct(p, uids, study, frame, ct, gtv_points=hc._square(-4.5, 3.5, -4.5, float("nan"), 14.0))
    cause, message = _cause(p)
    assert cause == "contour_invalid" and "GTV_T" in message and "RS.dcm" in message
    bowtie = np.array([[0, 0], [4, 4], [4, 0], [0, 4]], float)
    assert self_intersects(bowtie) and not self_intersects(np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float))
    reference = sitk.Image(8, 8, 2, sitk.sitkUInt8)
    notes: list[str] = []
    rasterise_roi([np.column_stack([bowtie, np.zeros(4)])], reference, notes, roi_name="GTV")
    assert any("crosses itself" in n for n in notes)


# -- 8, 9. files that are not files, hidden folders ----------------------------------------------------------
def test_symlink_loop_dangling_symlink_and_fifo_exclude_only_their_patient(tmp_path):
    src = tmp_path / "src"
    for name, seed in (("C_ok", 12), ("H_loop", 13), ("H_dangling", 14), ("H_fifo", 15)):
        hc.dicom_patient(src / name, seed)
    os.symlink("b.dcm", src / "H_loop" / "CT" / "a.dcm")
    os.symlink("a.dcm", src / "H_loop" / "CT" / "b.dcm")
    os.symlink("gone.dcm", src / "H_dangling" / "CT" / "x.dcm")
    os.mkfifo(src / "H_fifo" / "PET" / "f.dcm")
    hc.dicom_patient(src / ".H_hidden", 16)
    fingerprint(SourceCase("H_loop", "inhouse", folder=str(src / "H_loop")))  # no crash
    summary = convert_inhouse(
        src, 21, "T", crop="none", raw_dir=tmp_path / "raw", report_dir=tmp_path / "rep", show_progress=False
    )
    assert summary.converted == {"C_ok": "RECUR_001"}
    assert {e.patient: e.cause for e in summary.exclusions} == dict.fromkeys(
        ["H_dangling", "H_fifo", "H_loop"], "not_a_file"
    )
    with open(tmp_path / "rep" / "cases.csv") as fh:
        rows = {r["patient"]: r for r in csv.DictReader(fh)}
    assert rows[".H_hidden"]["status"] == "skipped" and summary.hidden == [".H_hidden"]


# -- 11. verified writes, rerun re-verifies ------------------------------------------------------------------
def test_truncated_written_file_fails_verification_and_a_rerun_rewrites_it(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        hc.nifti_patient(src / f"P{i}", 30 + i)

    def run():
        # Keyword arguments alike in shape to other tests' convert calls: each test states its own settings.
        return convert_inhouse(
            src,
            22,
            "T",
            crop="none",
            raw_dir=tmp_path / "raw",
            report_dir=tmp_path / "rep",
            show_progress=False,
        )

    run()
    pet = next((tmp_path / "raw" / "Dataset022_T").glob("images*/RECUR_001_0001.nii.gz"))
    good = pet.read_bytes()
    pet.write_bytes(good[: len(good) // 2])  # what a full disk left behind
    with pytest.raises(OSError, match="disk full"):
        verify_written_nifti(pet)
    summary = run()
    assert summary.written == 1 and pet.read_bytes() == good


# -- 12, 13. dead worker, orphaned workers -------------------------------------------------------------------
def job_ok(value: int) -> dict:
    time.sleep(0.2)
    return {"value": value}


def job_die(value: int) -> dict:
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)
    return {"value": value}


def test_a_killed_worker_costs_only_its_own_job():
    jobs = [(f"k{i}", job_die if i == 2 else job_ok, (i,)) for i in range(6)]
    results: dict[str, dict] = {}
    killed = run_jobs(
        jobs,
        2,
        results.__setitem__,
        killed_result=lambda key: {"killed": True},
        failed_result=lambda key, exc: {"failed": str(exc)},
    )
    assert killed == ["k2"]
    assert results["k2"] == {"killed": True}
    assert {k: v for k, v in results.items() if k != "k2"} == {f"k{i}": {"value": i} for i in (0, 1, 3, 4, 5)}


# -- 14. lock ----------------------------------------------------------------------------------------------
def test_second_conversion_into_a_locked_dataset_is_refused(tmp_path):
    hc.nifti_patient(tmp_path / "src" / "P0", 40)
    with dataset_lock(tmp_path / "raw", 23):
        with pytest.raises(DatasetBusyError, match="being written by recur convert"):
            convert_inhouse(tmp_path / "src", 23, "T", raw_dir=tmp_path / "raw", report_dir=tmp_path / "r")
    assert not (tmp_path / "raw" / "Dataset023_T").exists()


# -- 15. float64 geometry through the staging ----------------------------------------------------------------
def test_staged_geometry_keeps_float64(tmp_path):
    image = sitk.Image(4, 4, 3, sitk.sitkInt16)
    image.SetOrigin((-249.51171875 + 1e-7, 0.1 + 3e-9, 17.3000001))
    image.SetSpacing((0.9765625 + 1e-9, 0.9765625 + 1e-9, 3.27))
    mask = sitk.Image(4, 4, 3, sitk.sitkUInt8)
    mask.CopyInformation(image)
    pet = sitk.Cast(image, sitk.sitkFloat32)
    stage_case(PreparedCase(ct=image, pet=pet, label=mask, gtv=mask), tmp_path / "s")
    staged = load_staged(tmp_path / "s")
    assert staged.ct.GetOrigin() == image.GetOrigin() and staged.ct.GetSpacing() == image.GetSpacing()


# -- 16. report files --------------------------------------------------------------------------------------
def test_report_write_error_is_one_line_and_leaves_no_temporary_file(tmp_path):
    from nnunet_recur.dataset_conversion.nnunet_writer import write_text_atomic

    (tmp_path / "cases.csv").mkdir()  # os.replace onto a folder fails like a full disk would
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "cases.csv", "x")
    assert str(info.value).startswith("[Errno") and "cannot write" in str(info.value)
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["cases.csv"]


# -- 17, 18. paths ------------------------------------------------------------------------------------------
def test_case_id_with_separators_is_refused_before_writing(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(ValueError, match="letters, digits"):
        prepare_new_patient(tmp_path / "none", tmp_path / "none", out, "../../ESCAPED")
    assert not (tmp_path / "a").exists()


def test_id_map_inside_raw_and_report_dir_inside_preprocessed_are_refused(tmp_path):
    hc.nifti_patient(tmp_path / "src" / "P0", 41)
    common = {"raw_dir": tmp_path / "raw", "preprocessed_dir": tmp_path / "pre", "show_progress": False}
    with pytest.raises(DatasetLocationError, match="--id-map .* inside nnUNet_raw"):
        convert_inhouse(
            tmp_path / "src", 24, "T", id_map=tmp_path / "raw" / "Dataset024_T" / "ids.csv",
            report_dir=tmp_path / "rep", **common,
        )  # fmt: skip
    with pytest.raises(DatasetLocationError, match="--report-dir .* inside nnUNet_preprocessed"):
        convert_inhouse(tmp_path / "src", 24, "T", report_dir=tmp_path / "pre" / "rep", **common)


# -- 20. CSV formula injection -----------------------------------------------------------------------------
def test_formula_cells_are_escaped():
    assert [safe_csv_cell(v) for v in ("=HYPERLINK(1)", "+1", "-1", "@x", "PAT_1", "a=b")] == [
        "'=HYPERLINK(1)",
        "'+1",
        "'-1",
        "'@x",
        "PAT_1",
        "a=b",
    ]


def test_written_gzip_is_checked_in_full(tmp_path):
    """A flipped byte inside the stream (CRC mismatch) fails the write check, not only a short file."""
    hc._nifti1(np.arange(4000, dtype=np.int16).reshape(10, 20, 20), tmp_path / "x.nii.gz")
    data = bytearray((tmp_path / "x.nii.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "y.nii.gz").write_bytes(bytes(data))
    verify_written_nifti(tmp_path / "x.nii.gz")
    with pytest.raises(OSError):
        verify_written_nifti(tmp_path / "y.nii.gz")
    assert gzip.decompress((tmp_path / "x.nii.gz").read_bytes())
    assert DatasetWriter(tmp_path).case_verified("RECUR_001", "Tr", ()) is False
