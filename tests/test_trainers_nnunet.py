"""End to end through nnU-Net's stock commands on CPU, on tiny synthetic datasets written here with SimpleITK:
``recur plan --pretrain-from``, ``nnUNetv2_train -tr nnUNetTrainerRecur*`` (pre-train -> fine-tune with
``-pretrained_weights``), ``nnUNetv2_predict --save_probabilities``, the plateau schedule and early stopping
of the short-patience variant, and ``--c`` resuming with the scheduler state."""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_env import tiny_nnunet_env

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
RELAPSE_ID, HECKTOR_ID = 991, 992
RELAPSE = f"Dataset{RELAPSE_ID}_RecurTiny"
HECKTOR = f"Dataset{HECKTOR_ID}_HecktorTiny"
SPACING_XYZ = (1.0, 1.0, 2.0)


def write_dataset(raw: Path, name: str, label_name: str, prefix: str, n_train: int, n_test: int, shape, seed):
    """CT (HU, int16) and PET (SUV) with one bright blob that is also the label; the contract's labels."""
    import SimpleITK as sitk

    folder = raw / name
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    body = (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 < (shape[1] / 2.2) ** 2
    cases = []
    for index in range(n_train + n_test):
        case = f"{prefix}_{index + 1:03d}"
        centre = [rng.integers(4, s - 4) for s in shape]
        blob = ((z - centre[0]) * 2) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < rng.uniform(
            3, 4.5
        ) ** 2
        ct = np.where(body, 40.0, -1000.0) + rng.normal(0, 20, shape) + 30 * blob
        pet = body * 1.0 + 8.0 * blob + rng.gamma(2.0, 0.1, shape)
        split = "Tr" if index < n_train else "Ts"
        for array, channel, dtype in ((ct, 0, np.int16), (pet, 1, np.float32)):
            image = sitk.GetImageFromArray(array.astype(dtype))
            image.SetSpacing(SPACING_XYZ)
            image.SetOrigin((-12.0, -12.0, 0.0))
            sitk.WriteImage(image, str(folder / f"images{split}" / f"{case}_{channel:04d}.nii.gz"))
        label = sitk.GetImageFromArray(blob.astype(np.uint8))
        label.SetSpacing(SPACING_XYZ)
        label.SetOrigin((-12.0, -12.0, 0.0))
        sitk.WriteImage(label, str(folder / f"labels{split}" / f"{case}.nii.gz"))
        if split == "Tr":
            cases.append(case)
    dataset_json = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, label_name: [1]},
        "regions_class_order": [1],
        "numTraining": n_train,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return cases


def write_identical_folds(preprocessed: Path, name: str, cases: list[str], n_val: int):
    folder = preprocessed / name
    folder.mkdir(parents=True, exist_ok=True)
    split = {"train": cases[:-n_val], "val": cases[-n_val:]}
    (folder / "splits_final.json").write_text(json.dumps([split] * 5))


def run(command: list[str], env: dict, timeout: int = 400) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


@dataclass
class Workspace:
    root: Path
    env: dict
    plan_output: str

    @property
    def raw(self) -> Path:
        return Path(self.env["nnUNet_raw"])

    @property
    def preprocessed(self) -> Path:
        return Path(self.env["nnUNet_preprocessed"])

    @property
    def results(self) -> Path:
        return Path(self.env["nnUNet_results"])

    def train_env(self, **extra) -> dict:
        return {**self.env, "nnUNet_n_proc_DA": "0", **extra}

    def fold_dir(self, dataset: str, trainer: str) -> Path:
        return self.results / dataset / f"{trainer}__nnUNetRecurPlans__3d_recur" / "fold_0"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("recur_nnunet")
    env = tiny_nnunet_env(root)
    relapse_cases = write_dataset(root / "raw", RELAPSE, "relapse", "RECUR", 6, 2, (16, 24, 24), seed=1)
    hecktor_cases = write_dataset(root / "raw", HECKTOR, "GTVp", "HECK", 4, 0, (16, 32, 32), seed=2)
    write_identical_folds(root / "preprocessed", RELAPSE, relapse_cases, n_val=2)
    write_identical_folds(root / "preprocessed", HECKTOR, hecktor_cases, n_val=1)
    for line in run([str(BIN / "recur"), "env"], env).splitlines():  # what eval "$(recur env)" does
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0]
    # HECKTOR's tiny cases (16 x 32 x 32) exceed the relapse patch (16 x 24 x 24): refused without the flag
    plan = [str(BIN / "recur"), "plan", str(RELAPSE_ID), "--pretrain-from", str(HECKTOR_ID)]
    refused = subprocess.run(plan, env=env, capture_output=True, text=True, timeout=400)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        "error: Dataset992_HecktorTiny: 4 of 4 cases are larger than the patch [16, 24, 24]" in refused.stderr
    )
    plan_output = run([*plan, "--allow-patch-smaller-than-case"], env)
    return Workspace(root, env, plan_output)


def load_plans(workspace: Workspace, dataset: str) -> dict:
    return json.loads((workspace.preprocessed / dataset / "nnUNetRecurPlans.json").read_text())


def test_recur_plan_writes_one_configuration_for_both_datasets(workspace):
    relapse, hecktor = load_plans(workspace, RELAPSE), load_plans(workspace, HECKTOR)
    config = relapse["configurations"]["3d_recur"]
    assert list(relapse["configurations"]) == ["3d_recur"]
    assert config["spacing"] == [2.0, 1.0, 1.0] and config["patch_size"] == [16, 24, 24]
    assert config["normalization_schemes"] == ["CTNormalization", "ZScoreNormalization"]
    assert config["use_mask_for_norm"] == [False, False]
    # --pretrain-from: the fine-tuning dataset's plans, moved to HECKTOR
    assert hecktor["dataset_name"] == HECKTOR
    assert hecktor["configurations"] == relapse["configurations"]
    assert (workspace.preprocessed / HECKTOR / "dataset.json").is_file()  # nnUNet#2560
    assert len(list((workspace.preprocessed / HECKTOR / "nnUNetRecurPlans_3d_recur").glob("*.pkl"))) == 4
    assert len(list((workspace.preprocessed / RELAPSE / "nnUNetRecurPlans_3d_recur").glob("*.pkl"))) == 6
    assert "6 cases already up to date" in workspace.plan_output  # the refused run had preprocessed them
    assert "one patch covers every case (largest [16, 24, 24])" in workspace.plan_output
    assert "WARNING: 4 case(s) larger than the patch (largest [16, 32, 32])" in workspace.plan_output
    assert (
        "PET z-scored over the crop" in workspace.plan_output
    )  # hand-made 2-channel data: nnU-Net's z-score


def test_training_and_prediction_normalise_raw_cases_identically(workspace, monkeypatch):
    """The preprocessed training case equals what nnUNetv2_predict's preprocessing makes of the raw files."""
    import SimpleITK as sitk
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, workspace.env[key])
    plans = PlansManager(load_plans(workspace, RELAPSE))
    configuration = plans.get_configuration("3d_recur")
    dataset_json = json.loads((workspace.raw / RELAPSE / "dataset.json").read_text())
    folder = str(workspace.preprocessed / RELAPSE / "nnUNetRecurPlans_3d_recur")
    trained_on, _, _, _ = infer_dataset_class(folder)(folder, ["RECUR_001"]).load_case("RECUR_001")
    files = [str(workspace.raw / RELAPSE / "imagesTr" / f"RECUR_001_{c:04d}.nii.gz") for c in (0, 1)]
    # the call nnU-Net's predictor makes for every raw case (inference/data_iterators.py)
    predicted_on, _, _ = configuration.preprocessor_class(verbose=False).run_case(
        files, None, plans, configuration, dataset_json
    )
    np.testing.assert_allclose(np.asarray(trained_on[:]), predicted_on, atol=1e-6)
    hu = sitk.GetArrayFromImage(sitk.ReadImage(files[0])).astype(np.float32)
    suv = sitk.GetArrayFromImage(sitk.ReadImage(files[1])).astype(np.float32)
    np.testing.assert_allclose(predicted_on[0], np.clip(hu, -1024, 1024) / 1024, atol=1e-6)
    np.testing.assert_allclose(predicted_on[1], (suv - suv.mean()) / suv.std(), atol=1e-4)


def test_pretrain_finetune_and_predict_through_the_stock_cli(workspace):
    pretrain_dir = workspace.fold_dir(HECKTOR, "nnUNetTrainerRecurPretrain_2epochs")
    run(
        [str(BIN / "nnUNetv2_train"), str(HECKTOR_ID), "3d_recur", "0", "-p", "nnUNetRecurPlans"]
        + ["-tr", "nnUNetTrainerRecurPretrain_2epochs", "-device", "cpu"],
        workspace.train_env(nnUNet_n_proc_DA="1"),  # one augmentation worker process: the classes must pickle
    )
    pretrained = pretrain_dir / "checkpoint_final.pth"
    assert pretrained.is_file() and not (pretrain_dir / "checkpoint_latest.pth").exists()

    trainer = "nnUNetTrainerRecur_2epochs"
    output = run(
        [str(BIN / "nnUNetv2_train"), str(RELAPSE_ID), "3d_recur", "0", "-p", "nnUNetRecurPlans"]
        + ["-tr", trainer, "-device", "cpu", "-pretrained_weights", str(pretrained)],
        workspace.train_env(),
    )
    # GTVp (1 sigmoid channel) -> relapse (1 channel): every tensor fits, the head is transferred too
    assert "Loading pre-trained weights from" in output and "output head transferred" in output
    fold_dir = workspace.fold_dir(RELAPSE, trainer)
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    best = torch.load(fold_dir / "checkpoint_best.pth", map_location="cpu", weights_only=False)
    assert final["trainer_name"] == trainer and final["current_epoch"] == 2
    assert final["recur_state"]["best_epoch"] == best["current_epoch"] - 1
    assert all(
        torch.equal(final["network_weights"][k], best["network_weights"][k]) for k in best["network_weights"]
    )
    assert final["inference_allowed_mirroring_axes"] is None  # one forward pass in nnUNetv2_predict
    assert len(final["logging"]["lrs"]) == 2 and final["logging"]["lrs"][0] == pytest.approx(0.1)

    best_record = json.loads((fold_dir / "recur_best.json").read_text())
    assert (
        best_record["monitor"] == "val_dice"
        and best_record["best_epoch"] == final["recur_state"]["best_epoch"]
    )
    import typer
    from typer.testing import CliRunner

    from nnunet_recur.trainers.cli import best_seed

    app = typer.Typer()
    app.command()(best_seed)
    app.command("other")(lambda: None)  # two commands keep typer from flattening the app
    keys = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    result = CliRunner().invoke(
        app, ["best-seed", str(RELAPSE_ID), "-tr", trainer], env={k: workspace.env[k] for k in keys}
    )
    assert result.exit_code == 0 and "best fold 0" in result.output, result.output
    assert (fold_dir.parent / "seed_selection.json").is_file()

    # the model folder carries the plans and the sigmoid reading of dataset.json the predictor will use
    model_dir = fold_dir.parent
    assert json.loads((model_dir / "plans.json").read_text()) == load_plans(workspace, RELAPSE)
    assert json.loads((model_dir / "dataset.json").read_text())["labels"]["relapse"] == [1, 1]

    out = workspace.root / "predictions"
    run(
        [str(BIN / "nnUNetv2_predict"), "-i", str(workspace.raw / RELAPSE / "imagesTs"), "-o", str(out)]
        + ["-d", str(RELAPSE_ID), "-c", "3d_recur", "-p", "nnUNetRecurPlans", "-tr", trainer, "-f", "0"]
        + ["--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1"],
        workspace.env,
    )
    import SimpleITK as sitk

    for case in ("RECUR_007", "RECUR_008"):
        mask_image = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        reference = sitk.ReadImage(str(workspace.raw / RELAPSE / "imagesTs" / f"{case}_0000.nii.gz"))
        assert mask_image.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert mask_image.GetOrigin() == pytest.approx(reference.GetOrigin())
        mask = sitk.GetArrayFromImage(mask_image)
        probabilities = np.load(out / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (1, 16, 24, 24)
        assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0
        assert set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(mask, (probabilities[0] > 0.5).astype(mask.dtype))
        assert (out / f"{case}.pkl").is_file()


def _training_log(fold_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(fold_dir.glob("training_log_*.txt")))


def test_plateau_schedule_early_stopping_and_resume_with_scheduler_state(workspace):
    trainer = "nnUNetTrainerRecur_shortPatience"
    command = [str(BIN / "nnUNetv2_train"), str(RELAPSE_ID), "3d_recur", "0", "-p", "nnUNetRecurPlans"]
    command += ["-tr", trainer, "-device", "cpu"]
    run(command, workspace.train_env())
    fold_dir = workspace.fold_dir(RELAPSE, trainer)
    log = _training_log(fold_dir)
    assert re.search(r"learning rate reduced from 0\.1 to 0\.005", log), log[-3000:]
    assert re.search(r"Early stopping: no improvement of val_dice for 3 epochs", log), log[-3000:]
    epochs = [int(e) for e in re.findall(r": Epoch (\d+)\s*$", log, re.M)]
    assert epochs == [0, 1, 2, 3]  # lr cut after epoch 2, stop after epoch 3, long before the 12-epoch cap
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    state = final["recur_state"]
    assert state["stopped_early"] and state["epochs_without_improvement"] == 3 and state["best_epoch"] == 0
    assert final["optimizer_state"]["param_groups"][0]["lr"] == pytest.approx(0.005)
    assert final["logging"]["lrs"] == pytest.approx([0.1, 0.1, 0.1, 0.005])

    output = run(command + ["--c"], workspace.train_env())
    resumed = re.search(r"Resumed recur state: epoch (\d+), lr ([\d.e-]+), plateau bad epochs (\d+)", output)
    assert resumed, output[-3000:]
    assert int(resumed.group(1)) == max(epochs) + 1
    assert float(resumed.group(2)) == pytest.approx(final["optimizer_state"]["param_groups"][0]["lr"])
    assert int(resumed.group(3)) == state["lr_scheduler_state"]["num_bad_epochs"]
    assert "nothing left to train" in output
    assert re.findall(r": Epoch (\d+)\s*$", _training_log(fold_dir), re.M) == [str(e) for e in epochs]
