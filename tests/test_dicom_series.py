"""DICOM series discovery and reading: real exports plus tiny synthetic series written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_files import new_dataset
from pydicom.uid import generate_uid
from real_data import real

from nnunet_recur.dataset_conversion.dicom_series import (
    image_series_in,
    read_image_series,
    scan_folder,
    series_geometry,
)
from nnunet_recur.dataset_conversion.errors import ConversionError

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


def write_slice(
    path: Path,
    pixels: np.ndarray,
    z: float,
    series_uid: str,
    modality: str = "CT",
    spacing=(1.0, 1.0),
    iop=(1, 0, 0, 0, 1, 0),
    origin_xy=(-10.0, -20.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    instance: int = 1,
) -> Path:
    """One minimal, valid single-frame slice (int16 stored values) written by pydicom.

    Its Image Pixel lines match the synthetic generator's (synthetic/write_dicom.py) on purpose: the reader's
    tests must not call the generator's writer, or a shared mistake would pass both (shared/design.md)."""
    ds = new_dataset(modality, PET_STORAGE if modality == "PT" else CT_STORAGE)
    ds.PatientID = "SYNTH"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [origin_xy[0], origin_xy[1], float(z)]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_series(folder: Path, zs, modality="CT", shape=(4, 5), **kwargs) -> tuple[str, list[np.ndarray]]:
    """A series of slices at positions `zs`, named in *reverse* order so that name sorting is wrong."""
    uid = generate_uid()
    stored = []
    for i, z in enumerate(zs):
        pixels = (np.arange(shape[0] * shape[1]).reshape(shape) + 100 * i).astype(np.int16)
        stored.append(pixels)
        write_slice(
            folder / f"img{len(zs) - i:03d}", pixels, z, uid, modality, instance=len(zs) - i, **kwargs
        )
    return uid, stored


# --------------------------------------------------------------------------------------------------
# scan_folder


def test_scan_groups_series_in_nested_folders_and_skips_non_dicom(tmp_path):
    ct_uid, _ = write_series(tmp_path / "a" / "deep" / "ct", [0, 2, 4])
    pt_uid, _ = write_series(tmp_path / "b", [0, 3], modality="PT")
    (tmp_path / "notes.txt").write_text("not dicom at all\n" * 20)
    (tmp_path / "b" / "DICOMDIR_like.bin").write_bytes(b"\x00" * 50)

    found = scan_folder(tmp_path)

    assert sorted((s.modality, s.series_instance_uid, len(s)) for s in found) == sorted(
        [("CT", ct_uid, 3), ("PT", pt_uid, 2)]
    )
    assert found.unreadable == []
    ct = found.of_modality("CT")[0]
    assert ct.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2"
    assert len(ct.sop_instance_uids) == 3 and len(set(ct.sop_instance_uids)) == 3


def test_slices_sorted_by_position_along_normal_not_by_name(tmp_path):
    write_series(tmp_path, [10.0, 12.0, 14.0, 16.0])
    (series,) = scan_folder(tmp_path)
    zs = [float(h.ImagePositionPatient[2]) for h in series.headers]
    assert zs == [10.0, 12.0, 14.0, 16.0]
    # files are named in reverse order: img004 is the lowest slice
    assert [p.name for p in series.files] == ["img004", "img003", "img002", "img001"]


def test_truncated_header_is_reported_unreadable_with_recovered_modality(tmp_path):
    uid, _ = write_series(tmp_path / "pet", [0, 3, 6], modality="PT")
    victim = tmp_path / "pet" / "img001"
    data = victim.read_bytes()
    victim.write_bytes(data[: data.index(uid.encode())])  # cut just before the SeriesInstanceUID value
    (tmp_path / "cut").write_bytes(data[:140])  # DICM preamble, nothing else

    found = scan_folder(tmp_path)

    unreadable = {u.path.name: u for u in found.unreadable}
    assert set(unreadable) == {"cut", "img001"}
    assert unreadable["img001"].modality == "PT"  # so the caller can say pet_corrupt
    assert "truncated" in unreadable["img001"].reason
    (pet,) = found.of_modality("PT")
    assert len(pet) == 2


def test_scan_of_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "nope")


# --------------------------------------------------------------------------------------------------
# read_image_series: values and geometry


def test_read_applies_rescale_per_slice_and_geometry(tmp_path):
    uid = generate_uid()
    slopes = [0.5, 2.0, 0.25]
    stored = []
    for i, slope in enumerate(slopes):
        pixels = np.full((3, 4), 10 + i, dtype=np.int16)
        pixels[0, 0] = -7
        stored.append(pixels)
        write_slice(
            tmp_path / f"x{i}",
            pixels,
            5.0 + 2.5 * i,
            uid,
            "PT",
            spacing=(1.5, 1.5),
            slope=slope,
            intercept=1.0,
        )
    (series,) = scan_folder(tmp_path)

    image = read_image_series(series)

    assert image.GetPixelID() == sitk.sitkFloat32
    assert image.GetSize() == (4, 3, 3)
    assert image.GetSpacing() == pytest.approx((1.5, 1.5, 2.5))
    assert image.GetOrigin() == pytest.approx((-10.0, -20.0, 5.0))
    arr = sitk.GetArrayFromImage(image)
    for i, slope in enumerate(slopes):
        np.testing.assert_allclose(arr[i], stored[i] * slope + 1.0, rtol=1e-6)


def test_large_slices_read_from_file_offset_match_pydicom(tmp_path):
    uid, stored = write_series(tmp_path, [0, 2], shape=(70, 80), intercept=-1024.0)
    (series,) = scan_folder(tmp_path)
    arr = sitk.GetArrayFromImage(read_image_series(series))
    for i, f in enumerate(series.files):
        ds = pydicom.dcmread(f)
        np.testing.assert_array_equal(arr[i], ds.pixel_array.astype(np.int32) - 1024)
        np.testing.assert_array_equal(arr[i], stored[i].astype(np.int32) - 1024)


def test_ct_is_int16_hounsfield(tmp_path):
    write_series(tmp_path, [0, 1, 2], intercept=-1024.0)
    (series,) = scan_folder(tmp_path)
    image = read_image_series(series)
    assert image.GetPixelID() == sitk.sitkInt16
    arr = sitk.GetArrayFromImage(image)
    assert arr[0, 0, 0] == -1024 and arr[2, 0, 1] == 200 + 1 - 1024


def test_flipped_in_plane_axes_give_matching_direction(tmp_path):
    write_series(tmp_path, [0, 2], iop=(-1, 0, 0, 0, -1, 0))
    (series,) = scan_folder(tmp_path)
    image = read_image_series(series)
    assert image.GetDirection() == pytest.approx((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    # first stored pixel sits at the IPP of the lowest slice
    assert image.TransformIndexToPhysicalPoint((0, 0, 0)) == pytest.approx((-10.0, -20.0, 0.0))


# --------------------------------------------------------------------------------------------------
# quality checks -> causes


def refusal_of(folder: Path) -> ConversionError:
    """The error that reading the folder's one series raises (the test fails when it reads)."""
    (series,) = scan_folder(folder)
    with pytest.raises(ConversionError) as err:
        read_image_series(series)
    return err.value


def test_uneven_in_plane_spacing_is_refused(tmp_path):
    write_series(tmp_path, [0, 2, 4], spacing=(1.0, 1.2))
    refusal = refusal_of(tmp_path)
    assert refusal.cause == "uneven_spacing"
    assert "img" in str(refusal) and "PixelSpacing" in str(refusal)


def test_spacing_changing_between_slices_is_uneven(tmp_path):
    uid = generate_uid()
    for i, sp in enumerate([1.0, 1.0, 1.1]):
        write_slice(tmp_path / f"s{i}", np.zeros((3, 3), np.int16), 2.0 * i, uid, spacing=(sp, sp))
    refusal = refusal_of(tmp_path)
    assert refusal.cause == "uneven_spacing"


def test_gap_in_z_is_a_missing_slice(tmp_path):
    write_series(tmp_path, [0, 2, 4, 8, 10])  # slice at z=6 missing
    refusal = refusal_of(tmp_path)
    assert refusal.cause == "missing_slice"
    assert "1 slice(s) missing" in str(refusal) and "median step 2.000" in str(refusal)


def test_small_rounding_jitter_in_z_is_accepted(tmp_path):
    write_series(tmp_path, [0.0, 3.27, 6.54, 9.73, 13.02])  # 3.19 / 3.29 steps as in the TCIA PET
    (series,) = scan_folder(tmp_path)
    geometry = series_geometry(series)
    assert geometry.spacing[2] == pytest.approx(13.02 / 4)


def test_oblique_series_is_refused(tmp_path):
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    write_series(tmp_path, [0, 2, 4], iop=(1, 0, 0, 0, c, s))
    refusal = refusal_of(tmp_path)
    assert refusal.cause == "oblique_series"
    assert "10.00 degrees" in str(refusal)


@pytest.mark.parametrize("shape", [(20, 20), (64, 64)])  # pydicom path / direct-offset path (> 4 KiB)
@pytest.mark.parametrize("modality,cause", [("PT", "pet_corrupt"), ("CT", "ct_corrupt")])
def test_truncated_pixel_data_is_corrupt(tmp_path, modality, cause, shape):
    write_series(tmp_path, [0, 2, 4], modality=modality, shape=shape)
    victim = tmp_path / "img002"
    victim.write_bytes(victim.read_bytes()[:-150])
    refusal = refusal_of(tmp_path)
    assert refusal.cause == cause
    assert "img002" in str(refusal) and "truncated" in str(refusal)


def test_image_series_in_reports_missing_and_corrupt_pet(tmp_path):
    write_series(tmp_path / "ct", [0, 2])
    with pytest.raises(ConversionError) as err:
        image_series_in(tmp_path, "PT")
    assert err.value.cause == "pet_missing"
    write_series(tmp_path / "pet", [0, 2], modality="PT")
    for f in (tmp_path / "pet").iterdir():
        f.write_bytes(f.read_bytes()[:140])  # preamble only: header unreadable
    with pytest.raises(ConversionError) as err:
        image_series_in(tmp_path, "PT")
    assert err.value.cause == "pet_corrupt"


# --------------------------------------------------------------------------------------------------
# real exports


def test_real_ibsi_ct_and_pet_match_reference_nifti():
    base = real("ibsi_validation_STS_001")
    for modality, tol in (("CT", 0.0), ("PET", 2e-6)):
        image = read_image_series(image_series_in(base / "dicom" / modality / "image"))
        ref = sitk.ReadImage(str(base / "nifti" / f"{modality}_image.nii.gz"))
        assert image.GetSize() == ref.GetSize()
        assert image.GetOrigin() == pytest.approx(ref.GetOrigin(), abs=1e-3)
        assert image.GetSpacing() == pytest.approx(ref.GetSpacing(), abs=1e-5)
        assert np.abs(sitk.GetArrayFromImage(image) - sitk.GetArrayFromImage(ref)).max() <= tol


def test_real_scan_of_all_test_data_finds_every_series():
    found = scan_folder(real("."))
    kinds = sorted((s.modality, len(s)) for s in found if s.is_image)
    assert ("PT", 267) in kinds and ("CT", 59) in kinds and ("PT", 59) in kinds and ("CT", 2) in kinds
    assert found.unreadable == []


def test_real_multibed_pet_with_jittered_steps_reads():
    series = image_series_in(real("mirp_sts_raw_STS001_FDG_PET/image"), "PT")
    image = read_image_series(series)
    assert image.GetSize() == (128, 128, 267)
    assert image.GetSpacing()[2] == pytest.approx(3.27, abs=1e-4)
    # every slice lies within 0.05 mm of the uniform grid used for the image
    positions = np.asarray(series_geometry(series).slice_positions)
    grid = image.GetOrigin()[2] + image.GetSpacing()[2] * np.arange(len(positions))
    assert np.abs(positions - grid).max() < 0.05
