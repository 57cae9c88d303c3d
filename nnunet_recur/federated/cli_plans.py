"""`recur federated plan | preprocess | check-plans`: one plan for every site, from the merged fingerprint.

The command functions only; the work is in fingerprint_plans.py and shared_plans.py. The route
(docs/federated.md): fingerprint-summary at each site -> merge-fingerprints -> plan (coordinator, no image
needed) -> preprocess (each site) -> check-plans (or the ClientApp's check at every round).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nnunet_recur.exit_status import BAD_INPUT


def _fail(message: str):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(BAD_INPUT)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{path}: unreadable {what} ({exc})")
    if not isinstance(data, dict):
        _fail(f"{path}: not a {what} (expected a JSON object)")
    return data


def plan(
    fingerprint: Path = typer.Argument(..., help="the merged dataset_fingerprint.json (merge-fingerprints)"),
    dataset_json: Path = typer.Option(
        ..., "--dataset-json", help="a dataset.json of the federation (channels, labels, file ending)"
    ),
    out: Path = typer.Option(..., "--out", help="the shared nnUNetRecurPlans.json to send to the sites"),
    pet_zscore: str = typer.Option("patient", "--pet-zscore", help="as `recur plan --pet-zscore`"),
    allow_patch_smaller_than_case: bool = typer.Option(
        False, "--allow-patch-smaller-than-case", help="as `recur plan --allow-patch-smaller-than-case`"
    ),
) -> None:
    """Make the shared nnUNetRecurPlans from a merged fingerprint: nnU-Net's planner and the `recur plan`
    recipe, run on the fingerprint and a dataset.json alone (the coordinator needs no image).

    Example: recur federated plan dataset_fingerprint.json --dataset-json dataset.json --out plans.json
    """
    from nnunet_recur.federated.fingerprint_plans import SitePlanningError, plans_from_fingerprint
    from nnunet_recur.trainers.planning import PlanningError

    merged, dataset = _read_json(fingerprint, "fingerprint"), _read_json(dataset_json, "dataset.json")
    try:
        plans = plans_from_fingerprint(merged, dataset, pet_zscore, allow_patch_smaller_than_case)
    except (SitePlanningError, PlanningError) as exc:
        _fail(f"{fingerprint}: {exc}")
    from nnunet_recur.atomic_io import write_json_atomic

    write_json_atomic(out, plans, indent=4)
    configuration = plans["configurations"]["3d_recur"]
    typer.echo(
        f"wrote {out}: 3d_recur spacing {configuration['spacing']} (z, y, x), patch "
        f"{configuration['patch_size']}, from {len(merged['spacings'])} cases"
    )


def preprocess(
    dataset: str = typer.Argument(..., help="this site's nnU-Net dataset id or name in $nnUNet_raw"),
    plans: Path = typer.Option(..., "--plans", help="the federation's shared nnUNetRecurPlans.json"),
    processes: int = typer.Option(1, "--processes", "-np", min=1, help="preprocessing worker processes"),
) -> None:
    """Preprocess this site's dataset with the shared plans (stored under the site's dataset name).

    Writes $nnUNet_preprocessed/DatasetYYY_Site/nnUNetRecurPlans.json, dataset.json and the 3d_recur data;
    add the site's splits_final.json there before `recur federated site --data` on that folder.

    Example: recur federated preprocess 601 --plans shared/nnUNetRecurPlans.json
    """
    from nnunet_recur.federated.fingerprint_plans import SitePlanningError, preprocess_site
    from nnunet_recur.trainers.planning import PlanningError

    shared = _read_json(plans, "plans")
    try:
        folder = preprocess_site(dataset, shared, processes)
    except (SitePlanningError, PlanningError, OSError) as exc:
        _fail(str(exc).strip().splitlines()[0])
    typer.echo(f"preprocessed {folder} with the shared plans")


def check_plans(
    plans: Path = typer.Argument(..., help="the federation's shared nnUNetRecurPlans.json"),
    site: list[str] = typer.Option(
        ..., "--site", help="NAME=FOLDER: a site's nnUNet_preprocessed dataset folder; repeatable"
    ),
) -> None:
    """Check that every site preprocessed with the shared plans (all but dataset_name identical).

    A site whose plans differ is refused: one `error:` line naming the site, the hashes and the first
    differing entry; exit 2. The ClientApp runs the same check before every round.

    Example: recur federated check-plans shared/nnUNetRecurPlans.json --site "Centre A=pre/Dataset601_A"
    """
    from nnunet_recur.federated import shared_plans

    try:
        expected = shared_plans.read_plans(plans)
    except shared_plans.PlansMismatchError as exc:
        _fail(str(exc))
    expected_hash = shared_plans.plans_hash(expected)
    refused = []
    for spec in site:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            _fail(f"--site {spec!r}: expected NAME=FOLDER")
        try:
            shared_plans.require_shared_plans(Path(folder), expected_hash, name.strip())
        except shared_plans.PlansMismatchError as exc:
            try:
                found = shared_plans.read_plans(shared_plans.site_plans_path(Path(folder)))
                difference = shared_plans.first_difference(expected, found)
            except shared_plans.PlansMismatchError:  # missing or unreadable: the message says so
                difference = None
            refused.append(f"{exc}" + (f"; first difference: {difference}" if difference else ""))
            continue
        typer.echo(f"site {name.strip()}: shared plans (hash {expected_hash[:12]})")
    for message in refused:
        typer.echo(f"error: {message}", err=True)
    if refused:
        raise typer.Exit(BAD_INPUT)
