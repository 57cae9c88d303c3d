"""The cohort converter on a real patient (TCIA STS_001, ../shared/testdata/real): an independent check of
series discovery, SUV, frame-of-reference, RTSTRUCT masks, the axial cut and PET resampling, against the
IBSI reference NIfTI files of the same patient (not made by this project)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from real_data import REAL

from nnunet_recur.dataset_conversion.cohort import convert_inhouse

IBSI = REAL / "ibsi_validation_STS_001"
RAW_PET = REAL / "mirp_sts_raw_STS001_FDG_PET"

pytestmark = pytest.mark.skipif(
    not (IBSI.is_dir() and RAW_PET.is_dir()), reason="../shared/testdata/real absent"
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A patient folder as a TPS export might mix it: IBSI CT + its RTSTRUCT (GTV_Mass_CT), the raw BQML
    PET (267 slices, longer than the CT) + its MIM RTSTRUCT (GTV_Edema, standing in for the relapse)."""
    root = tmp_path_factory.mktemp("real")
    patient = root / "patients" / "STS_001"
    for source, target in (
        (IBSI / "dicom" / "CT" / "image", "a"),
        (IBSI / "dicom" / "CT" / "mask", "b"),
        (RAW_PET / "image", "c/d"),
        (RAW_PET / "mask", "e"),
    ):
        (patient / target).mkdir(parents=True)
        for f in source.iterdir():
            (patient / target / f.name).symlink_to(f)
    summary = convert_inhouse(
        root / "patients",
        520,
        "RealSTS",
        crop="none",
        roi_gtv="GTV_Mass_CT",
        roi_relapse="Edema",
        raw_dir=root / "raw",
        report_dir=root / "report",
        show_progress=False,
    )
    return root / "raw" / "Dataset520_RealSTS", summary


def test_real_patient_converts(converted):
    folder, summary = converted
    assert summary.line == "1 of 1 patients converted; none excluded"
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 1


def test_ct_and_gtv_match_the_ibsi_reference(converted):
    folder, _ = converted
    ct = sitk.ReadImage(str(folder / "imagesTr" / "RECUR_001_0000.nii.gz"))
    reference = sitk.ReadImage(str(IBSI / "nifti" / "CT_image.nii.gz"))
    assert ct.GetSize() == reference.GetSize()
    np.testing.assert_allclose(ct.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(reference).astype(np.int16))
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "masksTr" / "RECUR_001_gtv.nii.gz"))) > 0
    mask = sitk.ReadImage(str(IBSI / "nifti" / "CT_mask.nii.gz"))
    expected = (
        sitk.GetArrayFromImage(sitk.Resample(mask, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
    )
    assert expected.sum() > 10000
    assert 2 * (gtv & expected).sum() / (gtv.sum() + expected.sum()) == pytest.approx(1.0)


def test_pet_on_the_ct_grid_equals_the_ibsi_suv_pet(converted):
    """Raw BQML PET -> SUV -> resampled onto the CT equals the IBSI SUV PET resampled the same way,
    wherever the (cropped) IBSI PET has both interpolation neighbours."""
    folder, _ = converted
    ct = sitk.ReadImage(str(folder / "imagesTr" / "RECUR_001_0000.nii.gz"))
    pet = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "imagesTr" / "RECUR_001_0001.nii.gz")))
    ibsi_pet = sitk.ReadImage(str(IBSI / "nifti" / "PET_image.nii.gz"))
    interior = np.zeros(sitk.GetArrayViewFromImage(ibsi_pet).shape, np.uint8)
    interior[1:-1, 1:-1, 1:-1] = 1
    interior_image = sitk.GetImageFromArray(interior)
    interior_image.CopyInformation(ibsi_pet)
    inside = sitk.GetArrayFromImage(
        sitk.Resample(interior_image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    )
    reference = sitk.GetArrayFromImage(
        sitk.Resample(ibsi_pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    )
    assert inside.mean() > 0.8
    assert np.abs(pet - reference)[inside > 0].max() <= 1e-3
    assert pet.max() > 10  # real SUV, not Bq/ml
