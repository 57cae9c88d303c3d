"""The automatic brain mask (CT + PET) against the synthetic cohort's brain."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.brain_mask import automatic_brain_mask
from nnunet_recur.dataset_conversion.geometry import resample_onto

synthetic = pytest.importorskip("nnunet_recur.synthetic.patient", reason="synthetic generator not available")


def _patient(seed: int, index: int):
    patient = synthetic.generate_patient(seed, index, "small")
    pet = resample_onto(patient.pet, patient.ct, pixel_type=sitk.sitkFloat32)
    gtv = sitk.Cast(sitk.Or(sitk.NotEqual(patient.gtvp, 0), sitk.NotEqual(patient.gtvn, 0)), sitk.sitkUInt8)
    return patient, pet, gtv


@pytest.mark.parametrize("seed,index", [(0, 0), (3, 1), (11, 4)])
def test_covers_the_synthetic_brain_and_not_much_else(seed, index):
    patient, pet, gtv = _patient(seed, index)
    auto = sitk.GetArrayFromImage(automatic_brain_mask(patient.ct, pet, gtv)) > 0
    truth = sitk.GetArrayFromImage(patient.brain) > 0
    assert truth.sum() > 1000
    coverage = (auto & truth).sum() / truth.sum()
    extra = (auto & ~truth).sum() / truth.sum()
    assert coverage >= 0.95, coverage
    assert extra <= 0.10, extra
    assert not (auto & (sitk.GetArrayFromImage(gtv) > 0)).any()


def test_never_touches_a_gtv_that_reaches_into_the_brain():
    patient, pet, _ = _patient(5, 2)
    truth = sitk.GetArrayFromImage(patient.brain) > 0
    z, y, x = (int(np.median(a)) for a in np.nonzero(truth))
    gtv_array = np.zeros(truth.shape, np.uint8)
    gtv_array[z - 1 : z + 2, y - 3 : y + 3, x - 3 : x + 3] = 1
    gtv = sitk.GetImageFromArray(gtv_array)
    gtv.CopyInformation(patient.ct)
    auto = sitk.GetArrayFromImage(automatic_brain_mask(patient.ct, pet, gtv)) > 0
    assert auto.sum() > 0.9 * truth.sum()
    from scipy import ndimage

    assert not (auto & ndimage.binary_dilation(gtv_array > 0)).any()


def test_no_skull_gives_an_empty_mask():
    patient, pet, _ = _patient(2, 3)
    truth = sitk.GetArrayFromImage(patient.brain)
    below_brain = int(np.nonzero(truth.any(axis=(1, 2)))[0].min()) - 8  # neck only
    ct, pet = patient.ct[:, :, :below_brain], pet[:, :, :below_brain]
    assert not sitk.GetArrayFromImage(automatic_brain_mask(ct, pet)).any()
