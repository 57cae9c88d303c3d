"""dicompyler-core's DVH against `dose-pattern`'s, on >= 20 relapse components of the synthetic cohort.

Each synthetic patient's relapse components are exported as an RTSTRUCT (the generator's own writer) and
its analytic planned dose as an RT Dose (the generator's own writer). Our side reads that RT Dose with the
converter's reader and resamples it onto the CT grid as `recur convert` does, then runs the dose-pattern
analysis on the relapse label; dicompyler-core's `dvhcalc.get_dvh(rtss, rtdose, roi)` computes the DVH of
the same ROI from the contours. Volume, Dmean, D95 and D50 must agree within 1 % or 0.3 Gy.

The RT Dose is exported here on the CT's own grid (its voxel centres, cropped to the relapse; relative frame
offsets). dicompyler-core rasterises
contours at the dose grid's pixel centres; on the plan's own 2.5-3 mm grid that is another voxel set than
the CT label (measured on 12 patients: volumes differ by up to 9 %, doses by up to 0.5 Gy, from the
rasterisation alone), and it reads GridFrameOffsetVector as relative only. On the CT grid both sides score
the same voxels, so what is compared is the DVH arithmetic and the contour/component correspondence.

dicompyler-core 0.5.6 imports `pydicom.dicomio.read_file`, which pydicom 3 renamed `dcmread`: the alias is
restored for it (the library itself runs unchanged). D95 and D50 are read off its cumulative DVH by our
documented rule (`dose_received_by`), not its nearest-bin `D95` attribute.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pydicom
import pydicom.dicomio
import pytest
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.dose_conversion import find_dicom_dose
from nnunet_recur.evaluation import dose_pattern as dp
from nnunet_recur.evaluation.volumes import Grid as EvalGrid
from nnunet_recur.evaluation.volumes import Volume
from nnunet_recur.synthetic.geometry import Grid
from nnunet_recur.synthetic.patient import generate_patient
from nnunet_recur.synthetic.plan import PRESCRIPTIONS_GY
from nnunet_recur.synthetic.write_dicom import _Namer, relapse_component, write_rtstruct
from nnunet_recur.synthetic.write_rtdose import write_rtdose

dvhcalc = pytest.importorskip("dicompylercore.dvhcalc", reason="dicompyler-core (test extra) not installed")

SEED = 5
MIN_COMPONENTS = 20
RELATIVE, ABSOLUTE_GY = 0.01, 0.3


def _export(patient, folder):
    """RTSTRUCT (relapse ROIs) and RT Dose on the CT grid; returns (rtstruct, rtdose, {roi: label value})."""
    namer = _Namer(patient.seed, patient.number)
    ct = patient.grids.ct
    ct_refs = [
        (namer.uid("ct", k), float(z)) for k, z in enumerate(ct.axis(2))
    ]  # the CT files are not needed
    relapse = sitk.GetArrayFromImage(patient.relapse)
    rois = [
        (f"Relapse Volume_{k}", "CONTROL", relapse_component(patient, k))
        for k in (1, 2)
        if (relapse == k).any()
    ]
    rtstruct = write_rtstruct(patient, folder, namer, ct_refs, rois)
    # the CT grid cropped to the relapse (+ 2 voxels): the same voxel centres, far less dose to compute
    nonzero = np.argwhere(relapse > 0)
    low = np.maximum(nonzero.min(axis=0) - 2, 0)[::-1]  # x, y, z
    high = np.minimum(nonzero.max(axis=0) + 3, relapse.shape)[::-1]
    box = Grid(
        size=tuple(int(v) for v in high - low),
        spacing=ct.spacing,
        origin=tuple(float(o + i * s) for o, i, s in zip(ct.origin, low, ct.spacing, strict=True)),
    )
    on_ct = dataclasses.replace(
        patient, plan=dataclasses.replace(patient.plan, grid=box, offsets_form="relative")
    )
    (rtdose,) = write_rtdose(on_ct, folder, namer, namer.uid("rtplan"))
    return rtstruct, rtdose, {n: int(name[-1]) for n, (name, _, _) in enumerate(rois, start=1)}


def dose_received_by(dvh, percent: float) -> float:
    """D_x read off dicompyler-core's cumulative DVH: the highest dose bin that >= x % of the volume gets.

    dicompyler-core's own `dvh.D95` takes the bin whose volume is *nearest* to x % (its code: "TODO Add
    interpolation"); for a small relapse whose coldest voxel alone is more than 5 % of the volume that
    is the first bin with 100 %, i.e. 0 Gy. The rule here is ours (module doc of dose_pattern) applied to
    its histogram.
    """
    relative = np.asarray(dvh.relative_volume.counts, dtype=np.float64)
    return float(dvh.bins[np.nonzero(relative >= percent - 1e-9)[0].max()])


@pytest.mark.slow
def test_dvh_agrees_with_dicompyler_core_on_20_relapse_components(tmp_path, record_property):
    pydicom.dicomio.read_file = getattr(pydicom.dicomio, "read_file", pydicom.dcmread)
    rx = dp.Prescription(PRESCRIPTIONS_GY, "RTPLAN")
    compared, index = [], 0
    while len(compared) < MIN_COMPONENTS:
        index += 1
        assert index < 60, f"only {len(compared)} comparable relapse components in {index} patients"
        patient = generate_patient(SEED, index, "small")
        folder = tmp_path / f"p{index}"
        folder.mkdir()
        rtstruct, rtdose, rois = _export(patient, folder)
        planned = find_dicom_dose(folder, None, None)  # the converter's reader and choice rules
        dose = sitk.Resample(
            planned.image, patient.relapse, sitk.Transform(), sitk.sitkLinear, np.nan, sitk.sitkFloat32
        )
        grid = EvalGrid.of(patient.relapse)
        label = sitk.GetArrayFromImage(patient.relapse)
        found = dp.analyse_case(
            str(index), Volume(label, grid), Volume(sitk.GetArrayFromImage(dose), grid), rx
        )
        for roi, value in rois.items():
            # the ROI is one of our 26-connected components when their voxel sets are equal
            same = [c for c in found if c.row["voxels"] == int(np.count_nonzero(label == value))]
            if len(same) != 1:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dvh = dvhcalc.get_dvh(str(rtstruct), str(rtdose), roi)
            ours = same[0].row
            compared.append(
                {
                    "volume_cc": (ours["volume_cc"], dvh.volume),
                    "dmean_gy": (ours["dmean_gy"], dvh.mean),
                    "d95_gy": (ours["d95_gy"], dose_received_by(dvh, 95)),
                    "d50_gy": (ours["d50_gy"], dose_received_by(dvh, 50)),
                }
            )
    worst = {}
    for key in compared[0]:
        pairs = np.array([c[key] for c in compared])
        absolute = np.abs(pairs[:, 0] - pairs[:, 1])
        relative = absolute / np.abs(pairs[:, 1])
        worst[key] = (float(absolute.max()), float(relative.max()))
        record_property(f"max_difference_{key}", f"{worst[key][0]:.4g} ({100 * worst[key][1]:.3g} %)")
        ok = (relative <= RELATIVE) | (absolute <= (ABSOLUTE_GY if key != "volume_cc" else 0.0))
        assert ok.all(), f"{key}: ours vs dicompyler-core {pairs[~ok].tolist()}"
    print(f"dicompyler-core vs dose-pattern on {len(compared)} components, largest differences: {worst}")
