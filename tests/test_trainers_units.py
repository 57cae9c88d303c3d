"""Fast checks of the trainer pieces: loss vs MONAI, labels, plans maths, flip, environment, trainer look-up,
loading GPU checkpoints on a CPU machine."""

import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch

from nnunet_recur.trainers.augmentation import LeftRightFlipTransform
from nnunet_recur.trainers.checkpoints import load_pretrained_weights_on_cpu
from nnunet_recur.trainers.environment import env_lines, ext_trainer_folder
from nnunet_recur.trainers.labels import sigmoid_region_labels
from nnunet_recur.trainers.losses import PaperDiceLoss, hard_dice
from nnunet_recur.trainers.network import RecurUNet
from nnunet_recur.trainers.planning import (
    CT_INTENSITY_PROPERTIES,
    NETWORK_CLASS_NAME,
    recur_patch_size,
    recur_plans,
)


# ------------------------------------------------------------------------------------------------ loss
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("shape", [(2, 1, 8, 12, 10), (3, 2, 6, 6, 6)])
def test_dice_loss_equals_monai_dice_loss(batch, shape):
    from monai import losses as monai_losses  # the test extra installs MONAI: no skip that would hide this

    generator = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(shape, generator=generator) * 3
    target = (torch.rand(shape, generator=generator) > 0.7).float()
    ours = PaperDiceLoss(batch_dice=batch)(logits, target)
    theirs = monai_losses.DiceLoss(sigmoid=True, batch=batch, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5, abs=1e-6)


def test_dice_loss_is_near_zero_for_a_confident_correct_prediction_and_has_gradients():
    target = torch.zeros(2, 1, 4, 4, 4)
    target[:, :, 1:3, 1:3, 1:3] = 1
    logits = (target * 2 - 1) * 20
    logits.requires_grad_(True)
    loss = PaperDiceLoss()(logits, target.bool())
    loss.backward()
    assert float(loss.detach()) < 1e-6 and logits.grad is not None


def test_hard_dice_values():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert hard_dice(a, b) == pytest.approx(0.5)
    assert hard_dice(torch.zeros(4), torch.zeros(4)) == 1.0
    assert hard_dice(a, torch.zeros(4)) == 0.0


# ---------------------------------------------------------------------------------------------- labels
def test_single_valued_labels_become_one_sigmoid_region_each():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    relapse = {"labels": {"background": 0, "relapse": [1]}, "regions_class_order": [1]}
    # nnU-Net 2.8.1 reads the contract's form as plain labels: 2 softmax heads ...
    assert LabelManager(relapse["labels"], relapse["regions_class_order"]).num_segmentation_heads == 2
    converted = sigmoid_region_labels(relapse)
    manager = LabelManager(converted["labels"], converted["regions_class_order"])
    # ... and ours as one sigmoid region
    assert manager.has_regions and manager.num_segmentation_heads == 1
    assert converted["labels"]["relapse"] == [1, 1] and relapse["labels"]["relapse"] == [1]

    hecktor = {"labels": {"background": 0, "GTVp": [1], "GTVn": [2]}, "regions_class_order": [1, 2]}
    converted = sigmoid_region_labels(hecktor)
    assert LabelManager(converted["labels"], converted["regions_class_order"]).num_segmentation_heads == 2


def test_label_without_foreground_is_refused():
    with pytest.raises(ValueError, match="no foreground"):
        sigmoid_region_labels({"labels": {"background": 0, "relapse": [0]}})


# ----------------------------------------------------------------------------------------------- plans
def test_patch_is_the_papers_for_paper_sized_crops_and_rounded_to_8_for_small_ones():
    assert recur_patch_size([[128, 224, 160], [120, 230, 150]]) == [128, 224, 160]
    assert recur_patch_size([[17, 30, 24], [20, 25, 33]]) == [24, 32, 40]


def _fake_inputs():
    base = {
        "dataset_name": "Dataset999_X",
        "plans_name": "nnUNetPlans",
        "image_reader_writer": "SimpleITKIO",
        "label_manager": "LabelManager",
        "transpose_forward": [2, 0, 1],
        "transpose_backward": [1, 2, 0],
        "experiment_planner_used": "ExperimentPlanner",
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 40.0, "std": 300.0, "percentile_00_5": -900.0, "percentile_99_5": 400.0},
            "1": {"mean": 2.0, "std": 1.0, "percentile_00_5": 0.5, "percentile_99_5": 9.0},
        },
        "configurations": {
            "3d_fullres": {
                key: f"fn_{key}"
                for key in (
                    "resampling_fn_data",
                    "resampling_fn_seg",
                    "resampling_fn_data_kwargs",
                    "resampling_fn_seg_kwargs",
                    "resampling_fn_probabilities",
                    "resampling_fn_probabilities_kwargs",
                )
            }
        },
    }
    fingerprint = {
        "spacings": [[2.0, 0.9765, 0.9765]] * 3,
        "shapes_after_crop": [[60, 100, 90], [64, 96, 88], [58, 97, 80]],
    }
    dataset_json = {"channel_names": {"0": "CT", "1": "PET"}}
    return base, fingerprint, dataset_json


def test_recur_plans_carry_the_papers_preprocessing():
    import pydoc

    plans = recur_plans(*_fake_inputs())
    config = plans["configurations"]["3d_recur"]
    assert list(plans["configurations"]) == ["3d_recur"] and plans["plans_name"] == "nnUNetRecurPlans"
    assert plans["transpose_forward"] == [0, 1, 2] == plans["transpose_backward"]
    assert config["spacing"] == pytest.approx([2.0, 0.9765, 0.9765])
    assert config["patch_size"] == [64, 104, 96] and config["batch_size"] == 2
    assert config["normalization_schemes"] == ["CTNormalization", "ZScoreNormalization"]
    assert config["use_mask_for_norm"] == [False, False]
    ct = plans["foreground_intensity_properties_per_channel"]["0"]
    assert {k: ct[k] for k in CT_INTENSITY_PROPERTIES} == CT_INTENSITY_PROPERTIES
    assert plans["foreground_intensity_properties_per_channel"]["1"]["mean"] == 2.0
    assert config["architecture"]["network_class_name"] == NETWORK_CLASS_NAME
    assert pydoc.locate(NETWORK_CLASS_NAME) is RecurUNet
    RecurUNet(input_channels=2, num_classes=1, **config["architecture"]["arch_kwargs"])


def test_ct_normalisation_from_the_plans_is_clip_then_divide_by_1024():
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        CTNormalization,
        ZScoreNormalization,
    )

    hu = np.array([-3000.0, -1024.0, -512.0, 0.0, 40.0, 1024.0, 2500.0], dtype=np.float32)
    normalised = CTNormalization(use_mask_for_norm=False, intensityproperties=CT_INTENSITY_PROPERTIES).run(
        hu.copy()
    )
    np.testing.assert_allclose(normalised, np.clip(hu, -1024, 1024) / 1024, atol=1e-7)
    suv = np.random.default_rng(0).gamma(2.0, 1.0, 500).astype(np.float32)
    z = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(suv.copy())
    np.testing.assert_allclose(z, (suv - suv.mean()) / suv.std(), atol=1e-5)


# ------------------------------------------------------------------------------------------------ flip
def test_flip_acts_on_the_last_left_right_axis_for_image_and_segmentation_together():
    image = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).reshape(2, 2, 3, 4)
    seg = (image[:1] > 10).to(torch.int16)
    out = LeftRightFlipTransform(1.0)(image=image.clone(), segmentation=seg.clone())
    assert torch.equal(out["image"], torch.flip(image, (3,)))
    assert torch.equal(out["segmentation"], torch.flip(seg, (3,)))
    unchanged = LeftRightFlipTransform(0.0)(image=image.clone(), segmentation=seg.clone())
    assert torch.equal(unchanged["image"], image)


def test_flip_happens_with_the_given_probability():
    torch.manual_seed(0)
    transform = LeftRightFlipTransform(0.1)
    flips = sum(transform.get_parameters()["flip"] for _ in range(4000))
    assert 320 < flips < 480  # 400 expected, +-5 sigma


# ----------------------------------------------------------------------------------------- environment
def test_env_exports_the_packaged_folder_keeps_others_and_hints_unset_folders():
    folder = str(ext_trainer_folder())
    assert os.path.isfile(os.path.join(folder, "nnunet_recur_trainers.py"))
    lines = env_lines({"nnUNet_extTrainer": "/opt/mine", "nnUNet_raw": "/data/raw"})
    assert lines[0] == f"export nnUNet_extTrainer={folder}{os.pathsep}/opt/mine"
    assert not any("nnUNet_raw" in line for line in lines)
    assert any(line.startswith("# nnUNet_results is not set") for line in lines)
    assert env_lines({"nnUNet_extTrainer": folder})[0] == f"export nnUNet_extTrainer={folder}"


def test_nnunet_finds_the_trainers_through_the_ext_folder_and_they_pickle(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_recur.trainers import variants

    monkeypatch.setenv("nnUNet_extTrainer", str(ext_trainer_folder()))
    for name in (
        "nnUNetTrainerRecur_2epochs",
        "nnUNetTrainerRecurPlainConvUNet",
        "nnUNetTrainerRecurPretrain",
    ):
        found = recursive_find_trainer_class_by_name(name)
        assert found is getattr(variants, name)
        assert pickle.loads(pickle.dumps(found)) is found
    # nnU-Net drops the ext module again; the classes live on in the package module
    assert "nnunet_recur_trainers" not in sys.modules
    transform = pickle.loads(pickle.dumps(LeftRightFlipTransform(0.1)))
    assert transform.probability == 0.1


def test_every_variant_changes_what_its_name_says():
    from nnunet_recur.trainers import variants as v

    base = v.nnUNetTrainerRecur
    assert (base.recur_initial_lr, base.plateau_factor, base.plateau_patience) == (0.1, 0.05, 10)
    assert (base.early_stopping_patience, base.recur_max_epochs, base.flip_probability) == (60, 1000, 0.1)
    assert v.nnUNetTrainerRecurPretrain.monitor == "val_loss"
    published = v.nnUNetTrainerRecurPublishedCode
    assert not published.use_plateau_scheduler and published.flip_probability == 0.001
    assert published.early_stopping_patience == 40
    assert v.nnUNetTrainerRecurPublishedCodeFinetune.recur_initial_lr == 0.01
    assert v.nnUNetTrainerRecurNnUNetAugmentation_lr1e3.use_nnunet_augmentation
    assert v.nnUNetTrainerRecur_2epochs.recur_max_epochs == 2
    assert v.nnUNetTrainerRecurPretrain_2epochs.monitor == "val_loss"


def test_seed_comes_from_recur_seed_or_the_fold(monkeypatch):
    from nnunet_recur.trainers.recur_trainer import training_seed

    monkeypatch.delenv("RECUR_SEED", raising=False)
    assert training_seed(3) == 3 and training_seed("all") == 0
    monkeypatch.setenv("RECUR_SEED", "42")
    with pytest.warns(UserWarning, match="RECUR_SEED"):
        assert training_seed(3) == 42
    monkeypatch.setenv("RECUR_SEED", "abc")
    with pytest.raises(ValueError, match="RECUR_SEED"):
        training_seed(0)


# ----------------------------------------------------------------------------------------- checkpoints
def _save_as_if_on_gpu(obj, path, monkeypatch):
    import torch.serialization

    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)


def test_gpu_checkpoint_loads_on_cpu_and_keeps_the_new_output_head(tmp_path, monkeypatch):
    torch.manual_seed(0)
    pretrained = RecurUNet(num_classes=2)  # HECKTOR GTVp + GTVn: a different head
    path = str(tmp_path / "checkpoint_final.pth")
    _save_as_if_on_gpu({"network_weights": pretrained.state_dict()}, path, monkeypatch)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=False)  # what nnU-Net's load_pretrained_weights does
    target = RecurUNet(num_classes=1)
    head_before = target.decoder.seg_layers[0].weight.clone()
    load_pretrained_weights_on_cpu(target, path)
    assert torch.equal(target.encoder.stages[0][0].weight, pretrained.encoder.stages[0][0].weight)
    assert torch.equal(target.decoder.stages[2][3].weight, pretrained.decoder.stages[2][3].weight)
    assert torch.equal(target.decoder.seg_layers[0].weight, head_before)


def test_incompatible_pretrained_weights_are_refused(tmp_path):
    path = str(tmp_path / "small.pth")
    torch.save({"network_weights": RecurUNet(features_per_stage=(16, 32, 64, 128)).state_dict()}, path)
    with pytest.raises(ValueError, match="shape"):
        load_pretrained_weights_on_cpu(RecurUNet(), path)


def test_the_trainer_installs_the_cpu_loader_where_nnunetv2_train_calls_it():
    import nnunetv2.run.run_training as run_training

    from nnunet_recur.trainers.recur_trainer import install_cpu_safe_pretrained_loader

    install_cpu_safe_pretrained_loader()
    assert run_training.load_pretrained_weights.__wrapped__ is load_pretrained_weights_on_cpu


# --------------------------------------------------------------------------------------------- seeds
def test_best_seed_is_the_fold_with_the_best_validation_metric(tmp_path):
    import json

    from nnunet_recur.trainers.seeds import select_best_seed

    for fold, dice in enumerate([0.31, 0.54, 0.12]):
        (tmp_path / f"fold_{fold}").mkdir()
        record = {"fold": fold, "seed": fold, "monitor": "val_dice", "best_metric": dice}
        record |= {"best_epoch": 10 + fold, "epochs_trained": 70, "stopped_early": True}
        (tmp_path / f"fold_{fold}" / "recur_best.json").write_text(json.dumps(record))
    best = select_best_seed(tmp_path)
    assert (best.fold, best.best_metric, best.best_epoch) == (1, 0.54, 11)
    assert json.loads((tmp_path / "seed_selection.json").read_text())["best_fold"] == 1
    for fold in range(3):  # a loss is better when lower
        path = tmp_path / f"fold_{fold}" / "recur_best.json"
        path.write_text(path.read_text().replace("val_dice", "val_loss"))
    assert select_best_seed(tmp_path).fold == 2


def test_best_seed_without_runs_names_the_folder(tmp_path):
    from nnunet_recur.trainers.seeds import select_best_seed

    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        select_best_seed(tmp_path)


def test_seed_selection_state_follows_the_fold_results(tmp_path):
    """Issue 18 1.4: a selection is current only while it lists what fold_*/recur_best.json hold."""
    from nnunet_recur.trainers.seeds import select_best_seed, selection_state

    def run(fold, metric):
        (tmp_path / f"fold_{fold}").mkdir(exist_ok=True)
        record = {"fold": fold, "seed": fold, "monitor": "val_dice", "best_metric": metric}
        (tmp_path / f"fold_{fold}" / "recur_best.json").write_text(
            json.dumps({**record, "best_epoch": 1, "epochs_trained": 2})
        )

    assert selection_state(tmp_path) == "missing"
    run(0, 0.5)
    run(1, float("nan"))
    select_best_seed(tmp_path)
    assert selection_state(tmp_path) == "current"  # NaN runs compare equal to their record
    run(2, 0.7)  # a fold added after the selection
    assert selection_state(tmp_path) == "stale"
    select_best_seed(tmp_path, folds=[0, 1])
    assert selection_state(tmp_path) == "current"  # made over folds 0 and 1 only: fold 2 does not count
    run(1, 0.6)  # a fold retrained
    assert selection_state(tmp_path) == "stale"
    for fold in (0, 1, 2):
        (tmp_path / f"fold_{fold}" / "recur_best.json").unlink()
    assert selection_state(tmp_path) == "unverifiable"  # an exported model: nothing to check against
