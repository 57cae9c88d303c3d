"""Per-site scanner and export differences for a synthetic multi-centre cohort (`recur synth --sites`).

Centres differ the way scanners and exports really differ, never in the disease: the relapse rule, the
anatomy and the lesions are drawn exactly as for a single-site cohort, so a model trained on all sites
should beat each small site alone. What differs per site (docs/synthetic_cohort.md):

- PET resolution (FWHM of the Gaussian point-spread) and PET noise (a factor on the SUV-dependent sd);
- a small SUV calibration offset (a factor on the activity the scanner reports, up to a few percent);
- CT noise (sd in HU) and reconstruction kernel (the sigma, in voxels, of the CT smoothing: larger is a
  softer kernel);
- the scanner model in the DICOM header (ManufacturerModelName).

Each site is generated with its own seed (`site_seed`), so patient names never collide across sites.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SiteProfile:
    name: str
    pet_fwhm_mm: float = 6.0
    pet_noise_factor: float = 1.0
    suv_calibration: float = 1.0
    ct_noise_hu: float = 12.0
    ct_kernel_sigma: float = 0.5
    scanner_model: str = "synthetic PET/CT"

    def as_dict(self) -> dict:
        return asdict(self)


#: The first sites: one like the single-site cohort, then a noisier low-resolution scanner reading
#: high, then a sharp, quiet one reading low.
FIRST_SITES = (
    SiteProfile("SITE_A", 6.0, 1.0, 1.00, 12.0, 0.5, "synthetic PET/CT A (standard kernel)"),
    SiteProfile("SITE_B", 7.5, 1.4, 1.04, 18.0, 0.3, "synthetic PET/CT B (sharp kernel)"),
    SiteProfile("SITE_C", 5.0, 0.8, 0.97, 9.0, 0.8, "synthetic PET/CT C (soft kernel)"),
)


def site_profile(index: int, seed: int) -> SiteProfile:
    """Site `index` (0-based): a fixed profile for the first three, drawn (deterministically) beyond."""
    if index < len(FIRST_SITES):
        return FIRST_SITES[index]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5173]))
    letter = chr(ord("A") + index) if index < 26 else str(index + 1)
    return SiteProfile(
        f"SITE_{letter}",
        round(float(rng.uniform(5.0, 8.0)), 2),
        round(float(rng.uniform(0.8, 1.5)), 2),
        round(float(rng.uniform(0.95, 1.05)), 3),
        round(float(rng.uniform(8.0, 20.0)), 1),
        round(float(rng.uniform(0.3, 0.9)), 2),
        f"synthetic PET/CT {letter}",
    )


def site_seed(seed: int, index: int) -> int:
    """The generator seed of site `index`: distinct per site, so patient names differ across sites."""
    return int(seed) * 1000 + index + 1


def parse_sites(spec: str, cases: int) -> list[int]:
    """`--sites 3` -> three sites of `cases` patients; `--sites 30/15/8` -> the case count per site."""
    text = spec.strip()
    try:
        counts = [int(part) for part in text.split("/")] if "/" in text else [cases] * int(text)
    except ValueError:
        raise ValueError(
            f"--sites {spec!r}: expected a number of sites (3) or case counts (30/15/8)"
        ) from None
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--sites {spec!r}: every site needs at least one case, and at least one site")
    return counts
