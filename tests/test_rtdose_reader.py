"""RT Dose / RT Plan readers: pydicom's real test files, both offset forms, and every refusal."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from nnunet_recur.dataset_conversion.errors import DOSE_INVALID
from nnunet_recur.dataset_conversion.rtdose import RTDoseError, read_rtdose
from nnunet_recur.dataset_conversion.rtplan import RTPlanError, read_rtplan

REAL_DOSE = get_testdata_file("rtdose.dcm")
REAL_PLAN = get_testdata_file("rtplan.dcm")


def _gy_copy(tmp_path, name="dose.dcm", **changes):
    """pydicom's rtdose.dcm re-labelled GY (its own units are RELATIVE), with header changes applied."""
    ds = pydicom.dcmread(REAL_DOSE)
    ds.DoseUnits = "GY"
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    path = tmp_path / name
    ds.save_as(path)
    return path, ds


def test_real_file_grid_and_scaling_match_pydicom():
    ds = pydicom.dcmread(REAL_DOSE)
    with pytest.raises(RTDoseError, match="RELATIVE"):
        read_rtdose(REAL_DOSE)  # the real file is RELATIVE: refused by default
    dose = read_rtdose(REAL_DOSE, allow_relative=True)
    expected = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    got = sitk.GetArrayFromImage(dose.image)
    assert got.shape == expected.shape == (15, 10, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert dose.image.GetSpacing() == pytest.approx((10.0, 10.0, 5.0))
    assert dose.image.GetOrigin() == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    # frame k's z is IPP z + GridFrameOffsetVector[k] (relative form)
    last = dose.image.TransformIndexToPhysicalPoint((0, 0, 14))
    assert last[2] == pytest.approx(float(ds.ImagePositionPatient[2]) + float(ds.GridFrameOffsetVector[14]))
    assert dose.offsets_form == "relative" and dose.dose_summation_type == "BEAM"
    assert dose.referenced_beam_numbers == (1,)


def test_real_plan_prescription_and_fractions():
    plan = read_rtplan(REAL_PLAN)
    assert plan.prescriptions_gy == (pytest.approx(30.8262),)
    assert plan.number_of_fractions_planned == 30
    assert plan.beam_numbers == (1,)


def test_absolute_and_descending_offsets_give_the_same_image(tmp_path):
    ref = read_rtdose(_gy_copy(tmp_path)[0])
    z0 = -761.87
    absolute = read_rtdose(
        _gy_copy(tmp_path, "abs.dcm", GridFrameOffsetVector=[z0 + 5 * k for k in range(15)])[0]
    )
    assert absolute.offsets_form == "absolute"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(absolute.image), sitk.GetArrayFromImage(ref.image))
    assert absolute.image.GetOrigin() == pytest.approx(ref.image.GetOrigin())
    # descending: frames written head-to-feet; read back z-ascending with frame order reversed
    path, ds = _gy_copy(tmp_path, "desc.dcm", GridFrameOffsetVector=[-5.0 * k for k in range(15)])
    desc = read_rtdose(path)
    assert desc.offsets_descending
    assert desc.image.GetOrigin()[2] == pytest.approx(z0 - 70.0)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(desc.image), ds.pixel_array[::-1] * float(ds.DoseGridScaling), rtol=1e-6
    )


def test_non_uniform_offsets_are_interpolated_onto_the_smallest_step(tmp_path):
    offsets = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 70.0, 80.0]
    path, ds = _gy_copy(tmp_path, GridFrameOffsetVector=offsets)
    dose = read_rtdose(path)
    assert dose.uniform_resampled and dose.image.GetSize()[2] == 17 and dose.image.GetSpacing()[2] == 5.0
    arr = sitk.GetArrayFromImage(dose.image)
    planes = ds.pixel_array * float(ds.DoseGridScaling)
    np.testing.assert_allclose(arr[14], planes[13], rtol=1e-6)  # 70 mm: an original plane
    np.testing.assert_allclose(arr[13], 0.5 * (planes[12] + planes[13]), rtol=1e-5)  # 65 mm: half-way


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"DoseUnits": "RELATIVE"}, "DoseUnits RELATIVE"),
        ({"DoseUnits": "CGY"}, "DoseUnits CGY"),
        ({"GridFrameOffsetVector": None}, "missing GridFrameOffsetVector"),
        ({"GridFrameOffsetVector": [0.0, 5.0, 10.0]}, "3 values for 15 frames"),
        ({"GridFrameOffsetVector": [3.0 + 5 * k for k in range(15)]}, "neither 0 .relative."),
        ({"GridFrameOffsetVector": [0.0, 5.0, 5.0] + [5.0 * k for k in range(3, 15)]}, "repeats a frame"),
        ({"GridFrameOffsetVector": [0.0, 5.0] + [5.0 * k for k in range(2, 15)][::-1]}, "neither ascend"),
        ({"DoseGridScaling": None}, "missing or unreadable DoseGridScaling"),
        ({"DoseGridScaling": "0"}, "DoseGridScaling 0"),
        ({"DoseGridScaling": "-1e-3"}, "DoseGridScaling -0.001"),
    ],
)
def test_refusals_are_one_line_naming_the_file(tmp_path, changes, reason):
    path, _ = _gy_copy(tmp_path, **changes)
    with pytest.raises(RTDoseError, match=reason) as info:
        read_rtdose(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert info.value.cause == DOSE_INVALID


def test_negative_and_truncated_doses_are_refused(tmp_path):
    ds = pydicom.dcmread(REAL_DOSE)
    ds.DoseUnits = "GY"
    signed = ds.pixel_array.astype(np.int32)
    signed[0, 0, 0] = -5
    ds.PixelRepresentation = 1
    ds.PixelData = signed.astype("<i4").tobytes()
    ds.save_as(tmp_path / "neg.dcm")
    with pytest.raises(RTDoseError, match="negative doses"):
        read_rtdose(tmp_path / "neg.dcm")
    whole = _gy_copy(tmp_path)[0].read_bytes()
    (tmp_path / "cut.dcm").write_bytes(whole[: len(whole) - 2000])
    with pytest.raises(RTDoseError, match="truncated|unreadable") as info:
        read_rtdose(tmp_path / "cut.dcm")
    assert "\n" not in str(info.value)


def test_plan_refusals(tmp_path):
    ds = pydicom.dcmread(REAL_PLAN)
    ds.DoseReferenceSequence[1].TargetPrescriptionDose = "-2"
    ds.save_as(tmp_path / "plan.dcm")
    with pytest.raises(RTPlanError, match="TargetPrescriptionDose -2"):
        read_rtplan(tmp_path / "plan.dcm")
    with pytest.raises(RTPlanError, match="not an RT Plan"):
        read_rtplan(_gy_copy(tmp_path)[0])
