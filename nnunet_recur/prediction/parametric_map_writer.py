"""The dose-painting prescription as a DICOM Parametric Map (highdicom), for PACS viewers.

The same numbers as the RT Dose: unsigned 16-bit values with a Real World Value Mapping whose slope is the
RT Dose's DoseGridScaling (unit Gy, UCUM), so a viewer shows the prescribed dose in Gy and both objects
agree to the last bit. One frame per planning-CT slice, referencing those slices.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from nnunet_recur.prediction.rtdose_writer import choose_scaling
from nnunet_recur.prediction.rtstruct_writer import RESEARCH_STATEMENT


def build_dose_parametric_map(
    ct_headers: list[Dataset], dose_gy: np.ndarray, software_version: str
) -> Dataset:
    """Parametric Map of `dose_gy` (z, y, x on the CT slices `ct_headers`)."""
    import highdicom as hd
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    dose_gy = np.asarray(dose_gy, dtype=np.float64)
    if not np.all(np.isfinite(dose_gy)) or dose_gy.min() < 0:
        raise ValueError("the dose map has a negative or non-finite value")
    scaling, bits = choose_scaling(float(dose_gy.max()))
    if bits != 16:
        raise ValueError(f"a dose of {dose_gy.max()} Gy does not fit the parametric map's 16 bits")
    stored = np.round(dose_gy / scaling).astype(np.uint16)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="DOSE_RX",
        lut_explanation="Prescribed dose (Gy), not a calculated dose",
        unit=Code("Gy", "UCUM", "Gray"),
        value_range=(int(stored.min()), int(stored.max())),
        slope=scaling,
        intercept=0,
    )
    pm = hd.pm.ParametricMap(
        source_images=ct_headers,
        pixel_array=stored,
        series_instance_uid=generate_uid(),
        series_number=9006,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="nnunet-recur",
        manufacturer_model_name="recur predict",
        software_versions=software_version,
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=float(stored.max()) / 2,
                window_width=max(float(stored.max()), 1.0),
                window_explanation="0 to the highest prescribed dose",
            )
        ],
        content_description=f"Dose prescription (Gy). {RESEARCH_STATEMENT}"[:64],
        content_label="DOSE_RX",
    )
    # General Series Laterality is Type 2C (paired body parts); dciodvfy cannot evaluate the condition and
    # asks for it: present and empty, as for any unpaired head-and-neck target.
    pm.Laterality = ""
    pm.SeriesDescription = f"recur dose prescription map - {RESEARCH_STATEMENT}"[:64]
    return pm
