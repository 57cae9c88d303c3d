"""A synthetic multi-centre cohort: one ordinary cohort per site, each under OUT/<SITE>/.

Each site folder is exactly what `make_cohort` writes (the layout the converter reads), made with the
site's seed and scanner profile (synthetic/sites.py). OUT/sites.json lists the sites, their case
counts, seeds and scanner profiles, so an evaluation or a federated run can find them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nnunet_recur.synthetic.cohort import make_cohort
from nnunet_recur.synthetic.sites import site_profile, site_seed
from nnunet_recur.synthetic.write_nifti import write_json

SITES_FILE = "sites.json"


def make_sites_cohort(
    out: str | os.PathLike,
    counts: list[int],
    seed: int,
    fmt: str = "inhouse-dicom",
    size: str = "small",
    defects: bool = False,
    progress: Callable[[str, bool], None] | None = None,
) -> dict[str, list[str]]:
    """Write one cohort per site (`counts[i]` patients at site i); returns {site name: patient names}."""
    out = Path(out)
    written: dict[str, list[str]] = {}
    records = []
    for index, cases in enumerate(counts):
        profile = site_profile(index, seed)
        seed_i = site_seed(seed, index)
        written[profile.name] = make_cohort(
            out / profile.name, cases, seed_i, fmt, size, defects, progress=progress, site=profile
        )
        records.append({**profile.as_dict(), "folder": profile.name, "seed": seed_i, "cases": cases})
    write_json(
        {"synthetic": True, "seed": int(seed), "format": fmt, "size": size, "sites": records},
        out / SITES_FILE,
    )
    return written
