"""Read the HECKTOR 2022 release layout: imagesTr/<CENTRE>-<NNN>__CT.nii.gz and __PT.nii.gz (PET in SUV,
on its own grid), labelsTr/<CENTRE>-<NNN>.nii.gz or <CENTRE>_<NNN>.nii.gz (0 background, 1 GTVp,
2 GTVn). The paper pre-trained on GTVp only (`gtvp`, default); `gtvp+gtvn` keeps both labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_recur.dataset_conversion.errors import (
    CT_CORRUPT,
    CT_MISSING,
    GTV_MISSING,
    PET_CORRUPT,
    PET_MISSING,
    ConversionError,
)
from nnunet_recur.dataset_conversion.nifti_io import check_axial, read_nifti
from nnunet_recur.dataset_conversion.prepare import PreparedCase, assemble_case

LABEL_SETS = ("gtvp", "gtvp+gtvn")
_CT_RE = re.compile(r"^(?P<case>.+)__CT\.nii(\.gz)?$")


@dataclass(frozen=True)
class HecktorCase:
    """Paths of one HECKTOR case (`name` = <CENTRE>-<NNN>); missing files are None."""

    name: str
    ct: Path | None
    pet: Path | None
    label: Path | None

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.ct, self.pet, self.label) if p is not None]


def find_hecktor_cases(src: str | Path) -> list[HecktorCase]:
    """Every case of a HECKTOR release folder (SRC/imagesTr, SRC/labelsTr), sorted by name."""
    src = Path(src)
    images = src / "imagesTr"
    labels = src / "labelsTr"
    if not images.is_dir():
        raise FileNotFoundError(f"{src}: no imagesTr folder (expected the HECKTOR 2022 release layout)")
    names = set()
    for path in images.iterdir():
        match = _CT_RE.match(path.name)
        if match:
            names.add(match.group("case"))
        elif path.name.endswith(("__PT.nii.gz", "__PT.nii")):
            names.add(path.name.rsplit("__PT", 1)[0])
    cases = []
    for name in sorted(names):
        cases.append(
            HecktorCase(
                name=name,
                ct=_first_existing(images, [f"{name}__CT"]),
                pet=_first_existing(images, [f"{name}__PT"]),
                label=_first_existing(labels, [name, name.replace("-", "_"), name.replace("_", "-")]),
            )
        )
    return cases


def _first_existing(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for ending in (".nii.gz", ".nii"):
            path = folder / f"{stem}{ending}"
            if path.is_file():
                return path
    return None


def load_hecktor_case(case: HecktorCase, labels: str = "gtvp") -> PreparedCase:
    """One HECKTOR case on the CT grid; an empty GTVp is an exclusion (gtv_missing), as the authors
    dropped cases with empty labels."""
    if labels not in LABEL_SETS:
        raise ValueError(f"labels must be one of {LABEL_SETS}, got {labels!r}")
    if case.ct is None:
        raise ConversionError(CT_MISSING, "no __CT image", case.name)
    if case.pet is None:
        raise ConversionError(PET_MISSING, "no __PT image", case.name)
    if case.label is None:
        raise ConversionError(GTV_MISSING, "no label file in labelsTr", case.name)
    ct = read_nifti(case.ct, CT_CORRUPT)
    check_axial(ct, str(case.ct))
    pet = sitk.Cast(read_nifti(case.pet, PET_CORRUPT), sitk.sitkFloat32)
    check_axial(pet, str(case.pet))
    label_map = read_nifti(case.label, GTV_MISSING)
    values = sitk.GetArrayViewFromImage(label_map)
    unexpected = sorted(set(np.unique(values).tolist()) - {0, 1, 2})
    if unexpected:
        raise ConversionError(
            GTV_MISSING, f"unexpected label values {unexpected} (expected 0, 1, 2)", str(case.label)
        )
    gtvp = sitk.Cast(sitk.Equal(label_map, 1), sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(gtvp).any():
        raise ConversionError(GTV_MISSING, "GTVp (label 1) is empty", str(case.label))
    label = gtvp if labels == "gtvp" else sitk.Cast(label_map, sitk.sitkUInt8)
    return assemble_case(ct, pet, label, gtvp, None, label_what="GTVp", source=str(case.label))
