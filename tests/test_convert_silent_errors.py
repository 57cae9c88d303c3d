"""Issue 19: inputs that used to convert silently wrong (exit 0, "none excluded") now convert correctly or
are excluded with a named cause. Fast tests on tiny patients from tests/hostile_corpus.py; the slow
hostile-corpus test runs the same inputs through `recur convert inhouse`."""

from __future__ import annotations

import gzip
import shutil
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus as hc  # noqa: E402

from nnunet_recur.dataset_conversion.errors import ConversionError  # noqa: E402
from nnunet_recur.dataset_conversion.inhouse import InhouseOptions, load_inhouse_patient  # noqa: E402
from nnunet_recur.dataset_conversion.rtstruct import (  # noqa: E402
    RoiPlacement,
    check_placement,
    rasterise_roi,
)
from nnunet_recur.dataset_conversion.source_entries import (  # noqa: E402
    lookalike_groups,
    shown_name,
    skipped_entries,
)


def cause_of(folder: Path, **options) -> str:
    with pytest.raises(ConversionError) as info:
        load_inhouse_patient(folder, InhouseOptions(**options))
    return info.value.cause, str(info.value)


# -- 1. contours between the CT's slice planes -----------------------------------------------------------
def _reference(step: float, n: int = 24) -> sitk.Image:
    image = sitk.Image(48, 48, n, sitk.sitkUInt8)
    image.SetSpacing((1.0, 1.0, step))
    image.SetOrigin((-24.0, -24.0, 0.0))
    return image


def _sphere_contours(z_planes, radius=14.0, centre_z=46.0) -> list[np.ndarray]:
    """Cross-sections of a sphere at the given z planes (32-gon), as an RTSTRUCT holds them."""
    contours = []
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    for z in z_planes:
        r2 = radius**2 - (z - centre_z) ** 2
        if r2 <= 1.0:
            continue
        r = np.sqrt(r2)
        contours.append(np.column_stack([r * np.cos(angles), r * np.sin(angles), np.full(32, z)]))
    return contours


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("step", [4.0, 2.0])
@pytest.mark.parametrize("fraction", [0.125, 0.25, 0.4, 0.5, -0.5])
def test_contours_off_the_slice_planes_match_on_plane_contours(step, fraction):
    """Relapse drawn on the recurrence scan's planes, carried onto the planning CT by rigid registration:
    contours off the CT planes by up to half a slice step give the mask of on-plane contours."""
    reference = _reference(step)
    planes = step * np.arange(24)
    on_plane = sitk.GetArrayFromImage(rasterise_roi(_sphere_contours(planes), reference)).astype(bool)
    notes: list[str] = []
    shifted = _sphere_contours(planes + fraction * step)
    off_plane = sitk.GetArrayFromImage(rasterise_roi(shifted, reference, notes)).astype(bool)
    assert on_plane.sum() > 1000
    assert _dice(on_plane, off_plane) >= 0.95, (step, fraction)
    assert any("contours lie between CT slices" in n for n in notes)


def test_mostly_unplaceable_or_outside_contours_exclude():
    placement = RoiPlacement(n_contours=4, n_failed=3, total_area=10.0)
    with pytest.raises(ConversionError) as info:
        check_placement(placement, "GTV ROI 'GTV_T'", "RS.dcm")
    assert info.value.cause == "contours_unplaceable" and "3 of 4 contours" in str(info.value)
    placement = RoiPlacement(n_contours=4, total_area=100.0, outside_area=6.0)
    with pytest.raises(ConversionError) as info:
        check_placement(placement, "relapse ROI 'R'", "RS.dcm")
    assert info.value.cause == "contour_outside_ct" and "6 % of its contour area" in str(info.value)
    check_placement(RoiPlacement(n_contours=4, total_area=100.0, outside_area=4.0), "x", None)  # 4 %: fine


def test_relapse_contours_above_the_ct_exclude_the_patient(tmp_path):
    hc.dicom_patient(tmp_path / "p", 40)
    hc._edit_rtstruct(
        tmp_path / "p" / "RS.dcm", 1, lambda pts: [v + 16 if i % 3 == 2 else v for i, v in enumerate(pts)]
    )
    cause, message = cause_of(tmp_path / "p")
    assert cause == "contour_outside_ct" and "Relapse Volume" in message


# -- 2. a DICOM file truncated before its Modality ---------------------------------------------------------
def test_top_ct_slice_cut_before_modality_is_named(tmp_path):
    hc.dicom_patient(tmp_path / "p", 41)
    hc._cut_before_modality(tmp_path / "p" / "CT" / "ct_015.dcm")
    cause, message = cause_of(tmp_path / "p")
    assert cause == "unassigned_dicom_file" and "ct_015.dcm" in message


def test_middle_ct_slice_cut_before_modality_names_the_damaged_file(tmp_path):
    hc.dicom_patient(tmp_path / "p", 42)
    hc._cut_before_modality(tmp_path / "p" / "CT" / "ct_007.dcm")
    cause, message = cause_of(tmp_path / "p")
    assert cause == "missing_slice" and "damaged file CT/ct_007.dcm" in message


def test_slice_listed_in_contour_image_sequence_but_absent_is_missing_slice(tmp_path):
    hc.dicom_patient(tmp_path / "p", 43)
    hc._reference_ct_slices(tmp_path / "p")
    gone = pydicom.dcmread(tmp_path / "p" / "CT" / "ct_000.dcm", stop_before_pixels=True).SOPInstanceUID
    (tmp_path / "p" / "CT" / "ct_000.dcm").unlink()
    cause, message = cause_of(tmp_path / "p")
    assert cause == "missing_slice" and f"SOPInstanceUID {gone}" in message


# -- 3. soft labels ----------------------------------------------------------------------------------------
def _relapse_voxels(folder: Path, **options) -> tuple[int, list[str]]:
    case = load_inhouse_patient(folder, InhouseOptions(**options))
    return int(sitk.GetArrayViewFromImage(case.label).sum()), case.notes


def test_soft_relapse_is_thresholded_and_reported_and_0_255_stays_binary(tmp_path):
    hc.nifti_patient(tmp_path / "hard", 44)
    hard, _ = _relapse_voxels(tmp_path / "hard")
    mask = hc._nifti_mask(tmp_path / "hard" / "relapse.nii.gz").astype(np.float32)
    blurred = mask.copy()
    for axis in range(3):  # a linear resampling's border: 0 < value < 1 around the relapse
        blurred = np.maximum(blurred, 0.3 * (np.roll(mask, 1, axis) + np.roll(mask, -1, axis)).clip(0, 1))
    shutil.copytree(tmp_path / "hard", tmp_path / "soft")
    hc._nifti1(blurred.astype(np.float32), tmp_path / "soft" / "relapse.nii.gz")
    soft, notes = _relapse_voxels(tmp_path / "soft")
    assert soft == hard
    assert any("relapse.nii.gz: soft label" in n and ">= 0.5" in n for n in notes)
    low, _ = _relapse_voxels(tmp_path / "soft", label_threshold=0.2)
    assert low > hard  # the threshold is the user's
    shutil.copytree(tmp_path / "hard", tmp_path / "u255")
    hc._nifti1((mask * 255).astype(np.uint8), tmp_path / "u255" / "relapse.nii.gz")
    assert _relapse_voxels(tmp_path / "u255")[0] == hard


# -- 4. NIfTI qform and sform that disagree ---------------------------------------------------------------
def test_qform_sform_disagreement_is_refused_and_agreement_accepted(tmp_path):
    hc.nifti_patient(tmp_path / "p", 45)
    hc._with_qform(tmp_path / "p" / "pet.nii.gz", 0.0)
    load_inhouse_patient(tmp_path / "p", InhouseOptions())
    hc._with_qform(tmp_path / "p" / "pet.nii.gz", 30.0)
    cause, message = cause_of(tmp_path / "p")
    assert cause == "orientation_conflict" and "pet.nii.gz" in message and "30.00 mm apart" in message


# -- 5. SUV floor, DecayCorrection against DecayFactor -----------------------------------------------------
def test_suv_far_below_any_fdg_scan_is_implausible(tmp_path):
    hc.dicom_patient(tmp_path / "d", 46, slope=0.01)  # a vendor factor 1000x too small
    cause, message = cause_of(tmp_path / "d")
    assert cause == "suv_implausible" and "below 1" in message
    hc.nifti_patient(tmp_path / "n", 47, pet=np.full((16, 32, 32), 0.006, np.float32))
    assert cause_of(tmp_path / "n")[0] == "suv_implausible"


def test_decay_correction_admin_with_decay_factor_1_contradicts(tmp_path):
    hc.dicom_patient(tmp_path / "p", 48)
    hc._edit_pet(tmp_path / "p", DecayCorrection="ADMIN", DecayFactor=1.0)
    cause, message = cause_of(tmp_path / "p")
    assert cause == "suv_not_computable" and "DecayFactor 1" in message
    hc._edit_pet(tmp_path / "p", DecayFactor=1.42)  # a consistent ADMIN series converts
    load_inhouse_patient(tmp_path / "p", InhouseOptions())


# -- 6. too little CT --------------------------------------------------------------------------------------
def test_one_slice_ct_is_refused(tmp_path):
    hc.dicom_patient(tmp_path / "p", 49)
    for path in (tmp_path / "p" / "CT").iterdir():
        if path.name != "ct_007.dcm":
            path.unlink()
    assert cause_of(tmp_path / "p")[0] == "too_few_slices"


def test_ct_that_misses_part_of_the_gtv_is_refused(tmp_path):
    hc.dicom_patient(tmp_path / "p", 50)
    for k in range(8, 16):  # CT keeps z = 0 .. 14 mm; the GTV is drawn at 12 .. 18 mm
        (tmp_path / "p" / "CT" / f"ct_{k:03d}.dcm").unlink()
    cause, message = cause_of(tmp_path / "p")
    assert cause == "contour_outside_ct" and "GTV ROI 'GTV_T'" in message


def test_nifti_gtv_partly_outside_the_ct_is_refused(tmp_path):
    hc.nifti_patient(tmp_path / "p", 51)
    with gzip.open(tmp_path / "p" / "gtv.nii.gz", "rb") as fh:
        data = bytearray(fh.read())
    import struct

    struct.pack_into("<f", data, 280 + 16 * 2 + 12, 14.0)  # the GTV mask's z origin moved up 14 mm
    with gzip.GzipFile(tmp_path / "p" / "gtv.nii.gz", "wb", mtime=0) as fh:
        fh.write(bytes(data))
    assert cause_of(tmp_path / "p")[0] == "contour_outside_ct"


# -- 7, 8. stray entries, look-alike names ------------------------------------------------------------------
def test_stray_entries_are_listed_with_their_reason(tmp_path):
    (tmp_path / "PAT_A").mkdir()
    (tmp_path / ".PAT_H").mkdir()
    (tmp_path / "PAT_X.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (tmp_path / "notes.txt").write_text("x")
    entries = {e.name: e.reason for e in skipped_entries(tmp_path)}
    assert set(entries) == {".PAT_H", "PAT_X.zip", "notes.txt"}
    assert "unpack it first" in entries["PAT_X.zip"] and "plain file" in entries["notes.txt"]


def test_names_differing_by_normalisation_or_trailing_space_are_grouped_and_escaped():
    nfc, nfd = "PAT_\u00e9", unicodedata.normalize("NFD", "PAT_\u00e9")
    groups = lookalike_groups([nfc, nfd, "PAT_1", "PAT_1 ", "PAT_2"])
    assert groups == [sorted(["PAT_1", "PAT_1 "]), sorted([nfc, nfd])]
    assert shown_name(nfd) == "'PAT_e\\u0301'" and shown_name("PAT_1 ") == "'PAT_1 '"
    assert shown_name("PAT_2") == "PAT_2"
