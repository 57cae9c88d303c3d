"""Generate the hostile corpus for `recur convert inhouse` (issue 13): tiny DICOM and NIfTI patients, each
damaged in one way that real exports and real storage produce, beside clean patients.

    python tests/hostile_corpus.py OUT        # writes OUT/clean/ and OUT/mixed/, prints the expectations

OUT/clean holds the clean patients only; OUT/mixed holds the same clean patients (byte-identical copies)
plus the hostile ones. `EXPECTED` maps every mixed patient to what the converter must do with it: an
exclusion cause, "converted", or "skipped" (dot-prefixed folders). `TWINS` maps a hostile patient that
must convert to the clean patient whose output it must equal byte for byte.

Written with pydicom and numpy only (never the converter, never the synthetic generator), so the
converter is checked against an independent writer.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
UID_ROOT = "1.2.826.0.1.3680043.8.498.13."

N_SLICES = 16  # z = 0, 2, ..., 30 mm
CT_SIZE = 32  # 1 mm pixels, x and y from -16 mm
PET_SIZE = 16  # 2 mm pixels

CLEAN_DICOM = ("C_D1", "C_D2", "C_D3")
CLEAN_NIFTI = ("C_N1", "C_N2")

EXPECTED = {
    **{name: "converted" for name in CLEAN_DICOM + CLEAN_NIFTI},
    # wrong series, silently
    "H_nac_twin": "converted",  # AC + NAC of the same length, NAC path first: the AC one is chosen
    "H_nac_only": "pet_not_corrected",
    "H_two_ac": "pet_series_ambiguous",
    "H_two_ct": "ct_series_ambiguous",
    # SUV preconditions
    "H_weight_700": "suv_implausible",
    "H_slope_1e38": "suv_implausible",
    "H_slope_negative": "suv_implausible",
    "H_weight_disagrees": "suv_not_computable",
    # damaged files
    "H_ct_cut_header": "ct_corrupt",
    "H_pet_cut_header": "pet_corrupt",
    "H_contour_nan": "contour_invalid",
    "H_bowtie": "converted",
    "H_huge_dicom": "image_too_large",
    # files that are not files
    "H_symlink_loop": "not_a_file",
    "H_dangling_symlink": "not_a_file",
    "H_fifo": "not_a_file",
    # hidden folders: listed as skipped
    ".H_hidden": "skipped",
    "..H_hidden2": "skipped",
    # a folder name that is a spreadsheet formula
    '=HYPERLINK("evil","click")': "converted",
    # NIfTI
    "N_nan_ct": "non_finite_values",
    "N_inf_pet": "non_finite_values",
    "N_huge_header": "image_too_large",
    "N_4d": "unsupported_image",
    "N_nifti2": "unsupported_image",
    "N_oblique": "oblique_series",
    "N_pixdim0": "invalid_spacing",
    "N_truncated": "ct_corrupt",
    # issue 19: inputs that used to convert silently wrong
    "H_relapse_off_plane": "converted",  # relapse contours 0.6 mm off the 2 mm CT planes
    "H_relapse_above_ct": "contour_outside_ct",
    "H_gtv_unplaceable": "contours_unplaceable",
    "H_ct_top_cut_before_modality": "unassigned_dicom_file",
    "H_ct_mid_cut_before_modality": "missing_slice",
    "H_ct_referenced_slice_gone": "missing_slice",
    "H_decay_admin_factor_1": "suv_not_computable",
    "H_suv_factor_tiny": "suv_implausible",
    "H_one_ct_slice": "too_few_slices",
    "N_soft_relapse": "converted",
    "N_relapse_0_255": "converted",
    "N_qform_agrees": "converted",
    "N_qform_30mm_off": "orientation_conflict",
    "N_pet_1000x_low": "suv_implausible",
    "N_caf\u00e9": "converted",  # NFC
    "N_cafe\u0301": "converted",  # NFD: looks the same
    "N_space": "converted",
    "N_space ": "converted",  # trailing space
    "PAT_X.zip": "skipped",
    "notes.txt": "skipped",
}
TWINS = {
    "H_nac_twin": "C_D1",
    '=HYPERLINK("evil","click")': "C_D3",
    "H_relapse_off_plane": "C_D2",
    "N_soft_relapse": "C_N1",
    "N_relapse_0_255": "C_N2",
    "N_qform_agrees": "C_N1",
    "N_caf\u00e9": "C_N2",
    "N_cafe\u0301": "C_N2",
    "N_space": "C_N1",
    "N_space ": "C_N1",
}
NAMED_FILES = {
    "H_ct_cut_header": "ct_cut.dcm",
    "H_pet_cut_header": "pet_cut.dcm",
    "H_ct_top_cut_before_modality": "ct_015.dcm",
    "H_ct_mid_cut_before_modality": "ct_007.dcm",
}
LOOKALIKES = ("N_caf\u00e9", "N_cafe\u0301", "N_space", "N_space ")  # shown escaped in the report


class _Uids:
    """Deterministic UIDs, so two generations of the corpus are byte-identical."""

    def __init__(self, seed: int):
        self.seed, self.n = seed, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{UID_ROOT}{self.seed}.{self.n}"


def _base(modality: str, sop_class: str, uid: str, study: str, frame: str, series: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.Modality = modality
    ds.PatientID, ds.PatientName = "HOSTILE", "Hostile^Corpus"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    return ds


def _image_slice(ds: Dataset, pixels: np.ndarray, z: float, spacing: float, instance: int) -> None:
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = [-16.0 + spacing / 2, -16.0 + spacing / 2, float(z)]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.astype("<i2").tobytes()


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_ct(folder: Path, rng, uids, study, frame, *, offset_hu: int = 0, description="CT HEAD NECK") -> str:
    series = uids()
    for k in range(N_SLICES):
        ds = _base("CT", CT_STORAGE, uids(), study, frame, series)
        ds.SeriesDescription = description
        pixels = (1064 + offset_hu + rng.integers(-20, 20, (CT_SIZE, CT_SIZE))).astype(np.int16)
        _image_slice(ds, pixels, 2.0 * k, 1.0, k + 1)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        _save(ds, folder / "CT" / f"ct_{k:03d}.dcm")
    return series


def write_pet(
    folder: Path,
    rng,
    uids,
    study,
    frame,
    *,
    sub="PET",
    description="PET AC",
    corrected=("DECY", "ATTN", "SCAT"),
    weight=75.0,
    slope=10.0,
    slope_on_slice: tuple[int, float] | None = None,
    weight_on_slice: tuple[int, float] | None = None,
    uptake_scale=1.0,
) -> str:
    series = uids()
    for k in range(N_SLICES):
        ds = _base("PT", PET_STORAGE, uids(), study, frame, series)
        ds.SeriesDescription = description
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.CorrectedImage = list(corrected)
        ds.SeriesDate = ds.AcquisitionDate = "20200101"
        ds.SeriesTime = ds.AcquisitionTime = "110000"
        odd_weight = weight_on_slice is not None and weight_on_slice[0] == k
        ds.PatientWeight = weight_on_slice[1] if odd_weight else weight
        item = Dataset()
        item.RadionuclideTotalDose = 3.7e8
        item.RadionuclideHalfLife = 6586.2
        item.RadiopharmaceuticalStartDateTime = "20200101100000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        pixels = 200 + rng.integers(0, 20, (PET_SIZE, PET_SIZE))
        if 5 <= k <= 10:
            pixels[6:10, 6:10] += 800
        pixels = (pixels * uptake_scale).astype(np.int16)
        _image_slice(ds, pixels, 2.0 * k, 2.0, k + 1)
        ds.RescaleSlope = slope if slope_on_slice is None or slope_on_slice[0] != k else slope_on_slice[1]
        ds.RescaleIntercept = 0
        _save(ds, folder / sub / f"pet_{k:03d}.dcm")
    return series


def _square(x0, x1, y0, y1, z) -> list[float]:
    return [x0, y0, z, x1, y0, z, x1, y1, z, x0, y1, z]


def write_rtstruct(
    folder: Path, uids, study, frame, referenced_series: str | None, *, gtv_points=None, bowtie=False
) -> None:
    ds = _base("RTSTRUCT", RTSTRUCT_STORAGE, uids(), study, frame, uids())
    ds.StructureSetLabel = "RS"
    ref = Dataset()
    ref.FrameOfReferenceUID = frame
    if referenced_series:
        series_ref = Dataset()
        series_ref.SeriesInstanceUID = referenced_series
        study_ref = Dataset()
        study_ref.ReferencedSOPInstanceUID = study
        study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
        ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    rois = {
        1: ("GTV_T", [_square(-4.5, 3.5, -4.5, 3.5, z) for z in (12.0, 14.0, 16.0, 18.0)]),
        2: ("Relapse Volume", [_square(0.5, 6.5, -2.5, 3.5, z) for z in (14.0, 16.0, 18.0)]),
    }
    if gtv_points is not None:
        rois[1][1][1] = gtv_points
    if bowtie:  # the crossing diagonals of a figure eight on one GTV slice
        rois[1][1][2] = [-4.5, -4.5, 16.0, 3.5, 3.5, 16.0, 3.5, -4.5, 16.0, -4.5, 3.5, 16.0]
    structure_rois, contour_rois = [], []
    for number, (name, contours) in rois.items():
        item = Dataset()
        item.ROINumber, item.ROIName, item.ReferencedFrameOfReferenceUID = number, name, frame
        structure_rois.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        contour_items = []
        for points in contours:
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points) // 3
            contour.ContourData = points
            contour_items.append(contour)
        roi_contour.ContourSequence = Sequence(contour_items)
        contour_rois.append(roi_contour)
    ds.StructureSetROISequence = Sequence(structure_rois)
    ds.ROIContourSequence = Sequence(contour_rois)
    _save(ds, folder / "RS.dcm")


def dicom_patient(folder: Path, seed: int, **pet_options) -> dict[str, str]:
    """A clean DICOM patient (CT, corrected PET, RTSTRUCT referencing the CT); returns its UIDs."""
    rng = np.random.default_rng(seed)
    uids = _Uids(seed)
    study, frame = uids(), uids()
    ct = write_ct(folder, rng, uids, study, frame)
    pet = write_pet(folder, rng, uids, study, frame, **pet_options)
    write_rtstruct(folder, uids, study, frame, ct)
    return {"study": study, "frame": frame, "ct": ct, "pet": pet, "seed": seed}


# -- NIfTI -------------------------------------------------------------------------------------------------
def _nifti1(array: np.ndarray, path: Path, *, spacing=(1.0, 1.0, 2.0), affine_rot=None) -> None:
    """A NIfTI-1 file written by hand (numpy + struct), LPS geometry as ITK reads it back."""
    dtype_codes = {np.dtype("int16"): (4, 16), np.dtype("float32"): (16, 32), np.dtype("uint8"): (2, 8)}
    code, bitpix = dtype_codes[array.dtype]
    shape = array.shape[::-1]  # numpy (z, y, x) -> NIfTI (x, y, z)
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    dims = [len(shape), *shape] + [1] * (7 - len(shape))
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<2h", header, 70, code, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *spacing, *([1.0] * 4))
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    struct.pack_into("<2h", header, 252, 0, 1)  # qform 0, sform 1 (scanner)
    rotation = np.eye(3) if affine_rot is None else affine_rot
    ras = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(spacing)  # LPS -> RAS
    origin = np.array([16.0, 16.0, 0.0])
    for row in range(3):
        struct.pack_into("<4f", header, 280 + 16 * row, *ras[row], origin[row])
    header[344:348] = b"n+1\x00"
    payload = bytes(header) + b"\x00" * 4 + np.ascontiguousarray(array).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(payload)


def nifti_patient(
    folder: Path, seed: int, *, ct=None, pet=None, ct_kwargs=None, pet_kwargs=None, shape=(16, 32)
) -> None:
    """ct/pet/gtv/relapse NIfTI of `shape` = (slices, in-plane size); `ct`/`pet` replace the arrays."""
    rng = np.random.default_rng(seed)
    nz, n = shape
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(n), np.arange(n), indexing="ij")
    cz, cy = nz // 2, n // 2
    gtv = (((zz - cz) * 2.0) ** 2 + (yy - cy) ** 2 + (xx - cy) ** 2 <= 16).astype(np.uint8)
    relapse = (((zz - cz) * 2.0) ** 2 + (yy - cy - 2) ** 2 + (xx - cy - 3) ** 2 <= 9).astype(np.uint8)
    ct_array = (40 + rng.integers(-10, 10, (nz, n, n))).astype(np.int16) if ct is None else ct
    pet_array = np.where(gtv > 0, 6.0, 1.0).astype(np.float32) if pet is None else pet
    _nifti1(ct_array, folder / "ct.nii.gz", **(ct_kwargs or {}))
    _nifti1(pet_array, folder / "pet.nii.gz", **(pet_kwargs or {}))
    _nifti1(gtv, folder / "gtv.nii.gz")
    _nifti1(relapse, folder / "relapse.nii.gz")


# -- the corpus ----------------------------------------------------------------------------------------------
def _cut_inside_header(path: Path, target: Path, keep_uid: str) -> None:
    """Cut a slice just after its SeriesInstanceUID value: the header ends mid-element."""
    data = path.read_bytes()
    end = data.index(keep_uid.encode()) + len(keep_uid) + 40
    path.unlink()
    target.write_bytes(data[:end])


def make_clean(root: Path) -> None:
    for i, name in enumerate(CLEAN_DICOM):
        dicom_patient(root / name, 100 + i)
    for i, name in enumerate(CLEAN_NIFTI):
        nifti_patient(root / name, 200 + i)


def make_hostile(mixed: Path, clean: Path) -> None:
    # wrong series
    twin = mixed / "H_nac_twin"
    shutil.copytree(clean / "C_D1", twin)
    info = {"seed": 100}
    uids = _Uids(900)
    frame_study = pydicom.dcmread(twin / "CT" / "ct_000.dcm", stop_before_pixels=True)
    study, frame = frame_study.StudyInstanceUID, frame_study.FrameOfReferenceUID
    write_pet(
        twin, np.random.default_rng(info["seed"]), uids, study, frame, sub="A_NAC", description="PET NAC",
        corrected=("DECY",), uptake_scale=0.25,
    )  # fmt: skip
    p = mixed / "H_nac_only"
    rng, uids = np.random.default_rng(1), _Uids(901)
    study, frame = uids(), uids()
    ct = write_ct(p, rng, uids, study, frame)
    write_pet(p, rng, uids, study, frame, description="PET NAC", corrected=("DECY",))
    write_rtstruct(p, uids, study, frame, ct)
    p = mixed / "H_two_ac"
    rng, uids = np.random.default_rng(2), _Uids(902)
    study, frame = uids(), uids()
    ct = write_ct(p, rng, uids, study, frame)
    write_pet(p, rng, uids, study, frame, description="PET AC OSEM")
    write_pet(p, rng, uids, study, frame, sub="PET2", description="PET AC PSF")
    write_rtstruct(p, uids, study, frame, ct)
    p = mixed / "H_two_ct"
    rng, uids = np.random.default_rng(3), _Uids(903)
    study, frame = uids(), uids()
    write_ct(p / "a", rng, uids, study, frame, description="CT contrast")
    write_ct(p / "b", rng, uids, study, frame, offset_hu=500, description="CT native")
    write_pet(p, rng, uids, study, frame)
    write_rtstruct(p, uids, study, frame, None)
    # SUV preconditions
    for name, seed, options in (
        ("H_weight_700", 4, {"weight": 700.0}),
        ("H_slope_1e38", 5, {"slope_on_slice": (3, 1e38)}),
        ("H_slope_negative", 6, {"slope_on_slice": (3, -2.0)}),
        ("H_weight_disagrees", 7, {"weight_on_slice": (5, 80.0)}),
    ):
        dicom_patient(mixed / name, seed, **options)
    # damaged files
    p = mixed / "H_ct_cut_header"
    uids_of = dicom_patient(p, 8)
    _cut_inside_header(p / "CT" / "ct_007.dcm", p / "CT" / NAMED_FILES["H_ct_cut_header"], uids_of["ct"])
    p = mixed / "H_pet_cut_header"
    uids_of = dicom_patient(p, 9)
    _cut_inside_header(p / "PET" / "pet_004.dcm", p / "PET" / NAMED_FILES["H_pet_cut_header"], uids_of["pet"])
    p = mixed / "H_contour_nan"
    rng, uids = np.random.default_rng(10), _Uids(910)
    study, frame = uids(), uids()
    ct = write_ct(p, rng, uids, study, frame)
    write_pet(p, rng, uids, study, frame)
    write_rtstruct(p, uids, study, frame, ct, gtv_points=_square(-4.5, 3.5, -4.5, float("nan"), 14.0))
    p = mixed / "H_bowtie"
    shutil.copytree(clean / "C_D2", p)
    frame_study = pydicom.dcmread(p / "CT" / "ct_000.dcm", stop_before_pixels=True)
    structure = pydicom.dcmread(p / "RS.dcm")
    points = [-4.5, -4.5, 16.0, 3.5, 3.5, 16.0, 3.5, -4.5, 16.0, -4.5, 3.5, 16.0]
    structure.ROIContourSequence[0].ContourSequence.append(Dataset())
    extra = structure.ROIContourSequence[0].ContourSequence[-1]
    extra.ContourGeometricType, extra.NumberOfContourPoints, extra.ContourData = "CLOSED_PLANAR", 4, points
    # a bow-tie on a slice of its own (z = 20), so the rest of the GTV is that of the clean twin
    extra.ContourData = [v if i % 3 != 2 else 20.0 for i, v in enumerate(points)]
    structure.save_as(p / "RS.dcm", enforce_file_format=True)
    p = mixed / "H_huge_dicom"
    dicom_patient(p, 11)
    for path in sorted((p / "CT").iterdir()):
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 16384
        ds.save_as(path, enforce_file_format=True)
    # files that are not files
    for name, seed in (("H_symlink_loop", 12), ("H_dangling_symlink", 13), ("H_fifo", 14)):
        dicom_patient(mixed / name, seed)
    os.symlink("loop_b.dcm", mixed / "H_symlink_loop" / "CT" / "loop_a.dcm")
    os.symlink("loop_a.dcm", mixed / "H_symlink_loop" / "CT" / "loop_b.dcm")
    os.symlink("gone/ct_099.dcm", mixed / "H_dangling_symlink" / "CT" / "ct_099.dcm")
    os.mkfifo(mixed / "H_fifo" / "PET" / "pet_fifo.dcm")
    # hidden folders
    dicom_patient(mixed / ".H_hidden", 15)
    nifti_patient(mixed / "..H_hidden2", 16)
    shutil.copytree(clean / "C_D3", mixed / '=HYPERLINK("evil","click")')
    # NIfTI
    nan_ct = (40 + np.zeros((16, 32, 32))).astype(np.float32)
    nan_ct[8, 16, 16] = np.nan
    nifti_patient(mixed / "N_nan_ct", 20, ct=nan_ct)
    inf_pet = np.ones((16, 32, 32), np.float32)
    inf_pet[8, 16, 16] = np.inf
    nifti_patient(mixed / "N_inf_pet", 21, pet=inf_pet)
    p = mixed / "N_huge_header"
    nifti_patient(p, 22)
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 16384, 16384, 16, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 16, 32)
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\x00"
    raw = gzip.compress(bytes(header), mtime=0)
    claimed = (352 + 16384 * 16384 * 16 * 4) % 2**32  # the gzip size field claims the same
    (p / "ct.nii.gz").write_bytes(raw[:-4] + struct.pack("<I", claimed))
    p = mixed / "N_4d"
    nifti_patient(p, 23)
    _nifti1(np.zeros((3, 16, 32, 32), np.int16), p / "ct.nii.gz")
    p = mixed / "N_nifti2"
    nifti_patient(p, 24)
    _write_nifti2(np.zeros((16, 32, 32), np.int16), p / "ct.nii.gz")
    angle = np.radians(10)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    nifti_patient(mixed / "N_oblique", 25, ct_kwargs={"affine_rot": tilt})
    nifti_patient(mixed / "N_pixdim0", 26, ct_kwargs={"spacing": (1.0, 0.0, 2.0)})
    p = mixed / "N_truncated"
    nifti_patient(p, 27)
    data = (p / "ct.nii.gz").read_bytes()
    (p / "ct.nii.gz").write_bytes(data[: len(data) // 2])


def _cut_before_modality(path: Path) -> None:
    """Cut a slice at its Modality element (0008,0060): group 0008's SOP UIDs survive, nothing after."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\x08\x00\x60\x00CS")])


def _edit_rtstruct(path: Path, roi_index: int, edit) -> None:
    """Replace the ContourData of every contour of one ROI by `edit(points)` (None drops the contour)."""
    structure = pydicom.dcmread(path)
    sequence = structure.ROIContourSequence[roi_index].ContourSequence
    kept = []
    for contour in sequence:
        points = edit([float(v) for v in contour.ContourData])
        if points is not None:
            contour.ContourData, contour.NumberOfContourPoints = points, len(points) // 3
            kept.append(contour)
    structure.ROIContourSequence[roi_index].ContourSequence = Sequence(kept)
    structure.save_as(path, enforce_file_format=True)


def _reference_ct_slices(folder: Path) -> None:
    """Write the ContourImageSequence of the RTSTRUCT's referenced series: every CT slice of the folder."""
    structure = pydicom.dcmread(folder / "RS.dcm")
    images = []
    for path in sorted((folder / "CT").iterdir()):
        ct = pydicom.dcmread(path, stop_before_pixels=True)
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ct.SOPClassUID, ct.SOPInstanceUID
        images.append(item)
    series = structure.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    series.RTReferencedSeriesSequence[0].ContourImageSequence = Sequence(images)
    structure.save_as(folder / "RS.dcm", enforce_file_format=True)


def _edit_pet(folder: Path, **values) -> None:
    for path in sorted((folder / "PET").iterdir()):
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)


def _with_qform(path: Path, shift_mm: float) -> None:
    """Set the qform of a `_nifti1` file (sform: LPS->RAS flip, origin (16, 16, 0)) to the same transform
    (a 180 degree turn about z: quaternion (0, 0, 1)), its origin moved by `shift_mm` along x."""
    with gzip.open(path, "rb") as fh:
        data = bytearray(fh.read())
    struct.pack_into("<h", data, 252, 1)  # qform_code scanner
    struct.pack_into("<f", data, 76, 1.0)  # qfac
    struct.pack_into("<6f", data, 256, 0.0, 0.0, 1.0, 16.0 + shift_mm, 16.0, 0.0)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(bytes(data))


def _nifti_mask(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    return np.frombuffer(data[352:], np.uint8).reshape(16, 32, 32)


def make_issue19(mixed: Path, clean: Path) -> None:
    """The inputs of issue 19, each built from a clean patient."""
    p = mixed / "H_relapse_off_plane"  # rigid registration leaves the relapse planes off the CT's
    shutil.copytree(clean / "C_D2", p)
    _edit_rtstruct(p / "RS.dcm", 1, lambda pts: [v + 0.6 if i % 3 == 2 else v for i, v in enumerate(pts)])
    p = mixed / "H_relapse_above_ct"  # relapse drawn up to 36 mm, CT ends at 30 mm
    shutil.copytree(clean / "C_D2", p)
    _edit_rtstruct(p / "RS.dcm", 1, lambda pts: [v + 16.0 if i % 3 == 2 else v for i, v in enumerate(pts)])
    p = mixed / "H_gtv_unplaceable"  # three of four GTV contours are 2-point lines
    shutil.copytree(clean / "C_D3", p)
    _edit_rtstruct(p / "RS.dcm", 0, lambda pts: pts if pts[2] == 12.0 else pts[:6])
    p = mixed / "H_ct_top_cut_before_modality"
    shutil.copytree(clean / "C_D1", p)
    _cut_before_modality(p / "CT" / NAMED_FILES[p.name])
    p = mixed / "H_ct_mid_cut_before_modality"
    shutil.copytree(clean / "C_D1", p)
    _cut_before_modality(p / "CT" / NAMED_FILES[p.name])
    p = mixed / "H_ct_referenced_slice_gone"  # the structure set lists the top slice; the export lost it
    shutil.copytree(clean / "C_D2", p)
    _reference_ct_slices(p)
    (p / "CT" / "ct_015.dcm").unlink()
    p = mixed / "H_decay_admin_factor_1"
    shutil.copytree(clean / "C_D3", p)
    _edit_pet(p, DecayCorrection="ADMIN", DecayFactor=1.0)
    p = mixed / "H_suv_factor_tiny"  # a vendor factor 1000x too small
    dicom_patient(p, 30, slope=0.01)
    p = mixed / "H_one_ct_slice"
    shutil.copytree(clean / "C_D1", p)
    for path in (p / "CT").iterdir():
        if path.name != "ct_007.dcm":
            path.unlink()
    # NIfTI
    p = mixed / "N_soft_relapse"  # linearly resampled: 0.3 around the relapse, 0.7 on its border
    shutil.copytree(clean / "C_N1", p)
    hard = _nifti_mask(p / "relapse.nii.gz").astype(bool)
    grown = np.zeros_like(hard)
    grown[1:-1, 1:-1, 1:-1] = hard[1:-1, 1:-1, 1:-1]
    for axis in range(3):
        grown |= np.roll(hard, 1, axis) | np.roll(hard, -1, axis)
    soft = np.where(hard, 1.0, np.where(grown, 0.3, 0.0)).astype(np.float32)
    border = hard & ~(np.roll(hard, 1, 2) & np.roll(hard, -1, 2))
    soft[border] = 0.7
    _nifti1(soft, p / "relapse.nii.gz")
    p = mixed / "N_relapse_0_255"
    shutil.copytree(clean / "C_N2", p)
    _nifti1((_nifti_mask(p / "relapse.nii.gz") * 255).astype(np.uint8), p / "relapse.nii.gz")
    p = mixed / "N_qform_agrees"
    shutil.copytree(clean / "C_N1", p)
    _with_qform(p / "pet.nii.gz", 0.0)
    p = mixed / "N_qform_30mm_off"
    shutil.copytree(clean / "C_N1", p)
    _with_qform(p / "pet.nii.gz", 30.0)
    nifti_patient(mixed / "N_pet_1000x_low", 31, pet=np.full((16, 32, 32), 0.006, np.float32))
    # names that look identical, stray entries
    for name in ("N_caf\u00e9", "N_cafe\u0301"):
        shutil.copytree(clean / "C_N2", mixed / name)
    for name in ("N_space", "N_space "):
        shutil.copytree(clean / "C_N1", mixed / name)
    with zipfile.ZipFile(mixed / "PAT_X.zip", "w") as archive:
        archive.writestr("PAT_X/readme.txt", "a patient delivered as an archive")
    (mixed / "notes.txt").write_text("cohort notes\n")


def _write_nifti2(array: np.ndarray, path: Path) -> None:
    shape = array.shape[::-1]
    header = bytearray(540)
    struct.pack_into("<i", header, 0, 540)
    header[4:12] = b"n+2\x00\r\n\x1a\n"
    struct.pack_into("<2h", header, 12, 4, 16)
    struct.pack_into("<8q", header, 16, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<8d", header, 104, 1.0, 1.0, 1.0, 2.0, 1, 1, 1, 1)
    struct.pack_into("<q", header, 168, 544)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(bytes(header) + b"\x00" * 4 + array.astype("<i2").tobytes())


def make_corpus(out: str | Path) -> Path:
    """OUT/clean (clean patients) and OUT/mixed (the same clean patients + the hostile ones)."""
    out = Path(out)
    clean, mixed = out / "clean", out / "mixed"
    make_clean(clean)
    shutil.copytree(clean, mixed, symlinks=True)
    make_hostile(mixed, clean)
    make_issue19(mixed, clean)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile_corpus.py OUT")
    make_corpus(sys.argv[1])
    print(json.dumps({"expected": EXPECTED, "twins": TWINS}, indent=2))
