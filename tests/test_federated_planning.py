"""Federated planning end to end, with nnU-Net for real: two tiny sites -> `recur federated
fingerprint-summary` at each -> `merge-fingerprints` -> `plan` (no image at the coordinator) -> each site
`preprocess`es with nnU-Net's preprocessing -> `check-plans` accepts both and refuses a site whose plans
changed, naming it.

The reference is the central route on the union of the two sites' cases: nnU-Net's own
`DatasetFingerprintExtractor` (with the sites' number of foreground samples per case, so both draw the
same voxels) and nnU-Net's planner plus `recur_plans` on that fingerprint. The sites differ in image size,
so the shared patch comes from site B's cases and site A alone would plan another one."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from nnunet_env import tiny_nnunet_env  # noqa: E402

from nnunet_recur.cli import app  # noqa: E402

pytestmark = pytest.mark.slow
runner = CliRunner()
SAMPLES_PER_CASE = 10000  # fingerprint-summary's default
SITES = {  # name: (dataset id, case prefix, training cases, shape z, y, x, seed)
    "A": (995, "FPA", 3, (16, 24, 24), 5),
    "B": (996, "FPB", 2, (16, 24, 32), 6),
}
UNION_ID, UNION = 997, "Dataset997_FedPlanUnion"
#: docs/federated.md: merged median and 0.5/99.5 percentiles within 0.2 % of the union's 0.5-99.5 range,
#: or within one intensity unit for integer-valued images (CT in HU, stored as int16 here: the sketch
#: interpolates between its points where the union's CDF steps at whole HU)
QUANTILE_TOLERANCE = 0.002
INTEGER_CHANNELS = {"0"}  # write_dataset stores CT as int16


def _quantile_tolerance(channel: str, spread: float) -> float:
    return max(QUANTILE_TOLERANCE * spread, 1.0 if channel in INTEGER_CHANNELS else 0.0)


def _body_labels(folder: Path) -> None:
    """Label the whole body (CT > -500 HU) besides the blob: a foreground of ~5000 voxels per case, so
    the sampled intensities are near-continuous as in real scans (a blob of ~100 voxels sampled 10000
    times with replacement is a few distinct values in each tail, where a quantile sketch is coarser)."""
    import SimpleITK as sitk

    for label_path in sorted((folder / "labelsTr").glob("*.nii.gz")):
        ct_path = folder / "imagesTr" / label_path.name.replace(".nii.gz", "_0000.nii.gz")
        label = sitk.ReadImage(str(label_path))
        body = sitk.Cast(sitk.ReadImage(str(ct_path)) > -500, label.GetPixelID())
        sitk.WriteImage(sitk.Or(label, body), str(label_path))


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _central_union_plans(root: Path, n_cases: int) -> tuple[dict, dict]:
    """nnU-Net's fingerprint of the union (same samples per case as the sites) and the plans from it."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from nnunet_recur.trainers.inprocess_pool import nnunet_in_process
    from nnunet_recur.trainers.planning import recur_plans

    with nnunet_in_process(1):
        extractor = DatasetFingerprintExtractor(UNION_ID, num_processes=1, verbose=False)
        extractor.num_foreground_voxels_for_intensitystats = SAMPLES_PER_CASE * n_cases
        extractor.run()
        base = ExperimentPlanner(UNION_ID, plans_name="nnUNetPlans").plan_experiment()
    dataset_json = json.loads((root / "raw" / UNION / "dataset.json").read_text())
    fingerprint = json.loads((root / "preprocessed" / UNION / "dataset_fingerprint.json").read_text())
    return fingerprint, recur_plans(base, fingerprint, dataset_json)


def test_merged_fingerprint_plans_every_site_preprocesses_and_a_changed_site_is_refused(
    tmp_path, monkeypatch
):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from test_trainers_nnunet import write_dataset  # the tiny CT/PET blobs of the nnU-Net tests

    from nnunet_recur.trainers.planning import CT_INTENSITY_PROPERTIES

    for key, value in tiny_nnunet_env(tmp_path, threads=1).items():
        if key.startswith("nnUNet_") or key == "OMP_NUM_THREADS":
            monkeypatch.setenv(key, value)
    raw = tmp_path / "raw"
    names, cases = {}, {}
    for site, (dataset_id, prefix, n, shape, seed) in SITES.items():
        names[site] = f"Dataset{dataset_id}_FedPlan{site}"
        cases[site] = write_dataset(raw, names[site], "relapse", prefix, n, 0, shape, seed)
        _body_labels(raw / names[site])
    union = raw / UNION  # the central reference: both sites' cases in one dataset
    for sub in ("imagesTr", "labelsTr"):
        (union / sub).mkdir(parents=True)
        for name in names.values():
            for path in (raw / name / sub).iterdir():
                shutil.copy(path, union / sub / path.name)
    union_json = json.loads((raw / names["A"] / "dataset.json").read_text())
    (union / "dataset.json").write_text(json.dumps({**union_json, "numTraining": 5}))

    # at each site, then at the coordinator
    for site, name in names.items():
        _invoke("federated", "fingerprint-summary", str(raw / name), "--out", str(tmp_path / f"{site}.json"))
    merged_path, shared_path = tmp_path / "dataset_fingerprint.json", tmp_path / "nnUNetRecurPlans.json"
    _invoke(
        "federated",
        "merge-fingerprints",
        str(tmp_path / "A.json"),
        str(tmp_path / "B.json"),
        "--out",
        str(merged_path),
    )
    dataset_json = raw / names["A"] / "dataset.json"  # channels and labels only
    _invoke(
        "federated", "plan", str(merged_path), "--dataset-json", str(dataset_json), "--out", str(shared_path)
    )
    merged, shared = json.loads(merged_path.read_text()), json.loads(shared_path.read_text())

    # each site preprocesses with the shared plans (nnU-Net's preprocessing), then the plans check
    pre = tmp_path / "preprocessed"
    for site, (dataset_id, *_) in SITES.items():
        _invoke("federated", "preprocess", str(dataset_id), "--plans", str(shared_path))
        folder = pre / names[site]
        written = json.loads((folder / "nnUNetRecurPlans.json").read_text())
        assert written == {**shared, "dataset_name": names[site]}
        data = folder / "nnUNetRecurPlans_3d_recur"
        assert sorted(infer_dataset_class(str(data)).get_identifiers(str(data))) == cases[site]
    sites = [f"--site=A={pre / names['A']}", f"--site=B={pre / names['B']}"]
    checked = _invoke("federated", "check-plans", str(shared_path), *sites)
    assert "site A: shared plans" in checked.output and "site B: shared plans" in checked.output
    site_plans = {s: json.loads((pre / names[s] / "nnUNetRecurPlans.json").read_text()) for s in SITES}
    for key in ("spacing", "patch_size", "normalization_schemes", "architecture"):
        assert (
            site_plans["A"]["configurations"]["3d_recur"][key]
            == site_plans["B"]["configurations"]["3d_recur"][key]
        )

    # a site whose plans changed is refused: one error line naming it and the first difference
    changed = json.loads(json.dumps(site_plans["B"]))
    changed["configurations"]["3d_recur"]["patch_size"][0] += 8
    (pre / names["B"] / "nnUNetRecurPlans.json").write_text(json.dumps(changed))
    refused = runner.invoke(app, ["federated", "check-plans", str(shared_path), *sites])
    assert refused.exit_code == 2, refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "site B:" in errors[0] and "configurations.3d_recur.patch_size" in errors[0]
    assert "Traceback" not in refused.output

    # against the central route on the union of the cases
    fingerprint, central = _central_union_plans(tmp_path, 5)
    assert merged["spacings"] != [] and sorted(merged["shapes_after_crop"]) == sorted(
        fingerprint["shapes_after_crop"]
    )
    ours, theirs = shared["configurations"]["3d_recur"], central["configurations"]["3d_recur"]
    assert ours == theirs  # spacing, patch (site B's x extent), normalisation, network: identical
    assert ours["patch_size"][2] == 32
    for channel, union_props in fingerprint["foreground_intensity_properties_per_channel"].items():
        props = merged["foreground_intensity_properties_per_channel"][channel]
        for key in ("mean", "std", "min", "max"):  # pooled moments of the same samples; nnU-Net sums float32
            assert props[key] == pytest.approx(union_props[key], rel=1e-6, abs=1e-6), (channel, key)
        spread = union_props["percentile_99_5"] - union_props["percentile_00_5"]
        for key in ("median", "percentile_00_5", "percentile_99_5"):
            assert abs(props[key] - union_props[key]) <= _quantile_tolerance(channel, spread), (channel, key)
    # the plans carry the merged properties; for CT, recur plan's fixed HU window replaces the four it uses
    ours, theirs = (plans["foreground_intensity_properties_per_channel"] for plans in (shared, central))
    assert ours["1"] == merged["foreground_intensity_properties_per_channel"]["1"]
    assert ours["0"] == {
        **merged["foreground_intensity_properties_per_channel"]["0"],
        **CT_INTENSITY_PROPERTIES,
    }
    assert {k: ours["0"][k] for k in CT_INTENSITY_PROPERTIES} == {
        k: theirs["0"][k] for k in CT_INTENSITY_PROPERTIES
    }
    assert shared["experiment_planner_used"].startswith("ExperimentPlanner on a merged federated fingerprint")
    differ = ("dataset_name", "foreground_intensity_properties_per_channel", "experiment_planner_used")
    rest = {k for k in shared if k not in differ}
    assert rest >= {"configurations", "original_median_spacing_after_transp", "image_reader_writer"}
    assert {k: shared[k] for k in rest} == {k: central[k] for k in rest}
