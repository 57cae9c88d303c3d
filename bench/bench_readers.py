"""Benchmark of the DICOM readers against the floor "SimpleITK reads the series + writes NIfTI".

Prints, for the same inputs in the same run:
- CT: a synthetic 512 x 512 x N int16 series (written once with pydicom into a temp folder);
- PET: the raw TCIA STS_001 PET (128 x 128 x 267) from ../shared/testdata/real when present;
- RTSTRUCT rasterisation per ROI on a 512 x 512 grid (synthetic ellipses, 200 points per contour).

Usage: .venv/bin/python bench/bench_readers.py [--slices 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nnunet_recur.dataset_conversion.dicom_series import image_series_in, read_image_series
from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi
from nnunet_recur.dataset_conversion.suv import pet_series_to_suv

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "real"


def write_ct_series(folder: Path, slices: int) -> None:
    uid = generate_uid()
    rng = np.random.default_rng(0)
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", uid, "1.2.3"
        ds.FrameOfReferenceUID = "1.2.3.4"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-250.0, -250.0, 3.0 * k]
        ds.PixelSpacing = [0.98, 0.98]
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = rng.integers(0, 2000, (512, 512), dtype=np.int16).tobytes()
        pydicom.dcmwrite(folder / f"{k:04d}.dcm", ds, enforce_file_format=True)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor(folder: Path, out: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    sitk.WriteImage(reader.Execute(), str(out), useCompression=True)


def ours_ct(folder: Path, out: Path) -> None:
    sitk.WriteImage(read_image_series(image_series_in(folder, "CT")), str(out), useCompression=True)


def ours_pet(folder: Path, out: Path) -> None:
    sitk.WriteImage(pet_series_to_suv(image_series_in(folder, "PT")), str(out), useCompression=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ct = tmp / "ct"
        ct.mkdir()
        write_ct_series(ct, args.slices)
        results[f"ct_512x512x{args.slices}"] = {
            "floor_s": timed(lambda: floor(ct, tmp / "a.nii.gz"), args.repeats),
            "ours_s": timed(lambda: ours_ct(ct, tmp / "b.nii.gz"), args.repeats),
        }
        pet = REAL / "mirp_sts_raw_STS001_FDG_PET" / "image"
        if pet.exists():
            results["pet_suv_128x128x267"] = {
                "floor_s": timed(lambda: floor(pet, tmp / "c.nii.gz"), args.repeats),
                "ours_s": timed(lambda: ours_pet(pet, tmp / "d.nii.gz"), args.repeats),
            }
    for r in results.values():
        r["ratio"] = r["ours_s"] / r["floor_s"]

    reference = sitk.Image((512, 512, 60), sitk.sitkUInt8)
    reference.SetSpacing((0.98, 0.98, 3.0))
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    for name, (rx, ry, nslices) in {
        "small_roi_20_slices": (15, 10, 20),
        "large_roi_60_slices": (200, 150, 60),
    }.items():
        contours = [
            np.column_stack([250 + rx * np.cos(t), 250 + ry * np.sin(t), np.full_like(t, 3.0 * k)])
            for k in range(nslices)
        ]
        seconds = timed(lambda c=contours: rasterise_roi(c, reference), args.repeats)
        results[f"rasterise_{name}"] = {"seconds_per_roi": seconds, "ms_per_slice": 1000 * seconds / nslices}

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
