"""Synthetic head-and-neck FDG-PET/CT cohort with a documented relapse rule (``recur synth``).

Python API::

    from nnunet_recur.synthetic import make_cohort, generate_patient
    names = make_cohort("synth_out", cases=20, seed=0, fmt="inhouse-dicom", size="small", defects=True)
    patient = generate_patient(seed=0, index=0, size="small")  # in memory, SimpleITK images

See docs/synthetic_cohort.md for the anatomy, the PET model and the relapse rule. The names below are
imported lazily so that ``recur --help`` does not pay for numpy/scipy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "make_cohort": "cohort",
    "patient_names": "cohort",
    "assign_defects": "cohort",
    "FORMATS": "cohort",
    "DEFECT_CAUSES": "cohort",
    "generate_patient": "patient",
    "SyntheticPatient": "patient",
    "ZONES": "relapse",
    "ZONE_PROBABILITIES": "relapse",
    "draw_zone": "relapse",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"nnunet_recur.synthetic.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'nnunet_recur.synthetic' has no attribute {name!r}")
