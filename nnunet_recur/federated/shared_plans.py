"""One plan for every site, so that the weights can be averaged; a site whose plans differ is refused.

The plans are compared without their `dataset_name` (each site preprocesses its own dataset under its own
name with the shared plans) and with keys sorted, so a re-serialised copy matches. Everything else -
spacing, patch size, normalisation, network topology - must be identical: otherwise the sites would train
different networks, or the same network on differently normalised data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nnunet_recur.nnunet_names import PLANS_NAME

IGNORED_KEYS = ("dataset_name",)


class PlansMismatchError(ValueError):
    """A site's plans are not the federation's."""


def read_plans(path: Path) -> dict:
    path = Path(path)
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlansMismatchError(f"{path}: unreadable plans ({exc})") from exc
    if not isinstance(plans, dict) or "configurations" not in plans:
        raise PlansMismatchError(f"{path}: not an nnU-Net plans file (no 'configurations')")
    return plans


def plans_hash(plans: dict) -> str:
    """sha256 of the plans without `dataset_name`, keys sorted."""
    kept = {k: v for k, v in plans.items() if k not in IGNORED_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def site_plans_path(data: Path) -> Path:
    return Path(data) / f"{PLANS_NAME}.json"


def require_shared_plans(data: Path, expected_hash: str, site: str) -> dict:
    """The site's plans, or PlansMismatchError naming the site and the first differing entry."""
    path = site_plans_path(data)
    if not path.is_file():
        raise PlansMismatchError(f"site {site}: {path} not found (preprocess with the federation's plans)")
    plans = read_plans(path)
    if plans_hash(plans) != expected_hash:
        raise PlansMismatchError(
            f"site {site}: {path} differs from the federation's plans (hash {plans_hash(plans)[:12]} vs "
            f"{expected_hash[:12]}); preprocess this site with the shared plans"
        )
    return plans


def first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """The dotted path of the first entry where two plans differ (for error messages and docs)."""
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_KEYS and not prefix:
            continue
        path = f"{prefix}.{key}" if prefix else key
        if key not in a or key not in b:
            return path
        if isinstance(a[key], dict) and isinstance(b[key], dict):
            found = first_difference(a[key], b[key], path)
            if found:
                return found
        elif a[key] != b[key]:
            return path
    return None
