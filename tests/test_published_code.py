"""The authors' released scripts as variants: 5-level net, its patch rule, the z flip, shuffled-pair Dice."""

import numpy as np
import pytest
import torch

from nnunet_recur.trainers.augmentation import AxisFlipTransform
from nnunet_recur.trainers.losses import SigmoidSoftDiceLoss, hard_dice
from nnunet_recur.trainers.network import (
    PublishedCodeUNet,
    RecurUNet,
    count_trainable_parameters,
    published_layer_count,
)
from nnunet_recur.trainers.planning import recur_plans
from nnunet_recur.trainers.published_code import (
    PUBLISHED_CODE_NETWORK,
    published_code_plans,
    shuffled_pair_scores,
)


def test_published_code_net_has_the_released_scripts_84_layers_and_22_576_193_parameters():
    net = PublishedCodeUNet(input_channels=2, num_classes=1)
    assert count_trainable_parameters(net) == 22_576_193
    assert published_layer_count(net) == 84
    assert net.features_per_stage == (32, 64, 128, 256, 512)
    assert published_layer_count(RecurUNet()) == 65  # the same rule gives the paper's figure
    assert published_layer_count(RecurUNet(input_channels=3, input_channel_indices=[0, 2])) == 65


def test_published_code_net_pools_four_times_so_sizes_must_be_multiples_of_16():
    net = PublishedCodeUNet().eval()
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.zeros(1, 2, 24, 32, 32))
    with torch.no_grad():
        assert net(torch.zeros(1, 2, 16, 32, 32)).shape == (1, 1, 16, 32, 32)


def test_nnunet_builds_the_published_code_net_from_its_dotted_path():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans = published_code_plans(_plans([40, 104, 96]), "3d_recur")
    architecture = plans["configurations"]["3d_recur"]["architecture"]
    net = get_network_from_plans(
        architecture["network_class_name"],
        architecture["arch_kwargs"],
        architecture["_kw_requires_import"],
        input_channels=2,
        output_channels=1,
        deep_supervision=False,
    )
    assert isinstance(net, PublishedCodeUNet) and count_trainable_parameters(net) == 22_576_193


def _plans(patch):
    from test_trainers_units import _fake_inputs

    plans = recur_plans(*_fake_inputs())
    plans["configurations"]["3d_recur"]["patch_size"] = list(patch)
    return plans


def test_published_code_plans_round_the_patch_up_to_16_and_keep_the_papers():
    small = _plans([40, 104, 96])
    rewritten = published_code_plans(small, "3d_recur")["configurations"]["3d_recur"]
    assert rewritten["patch_size"] == [48, 112, 96]
    assert rewritten["architecture"]["network_class_name"] == PUBLISHED_CODE_NETWORK
    assert small["configurations"]["3d_recur"]["patch_size"] == [40, 104, 96]  # the input is not changed
    paper = published_code_plans(_plans([128, 224, 160]), "3d_recur")
    assert paper["configurations"]["3d_recur"]["patch_size"] == [128, 224, 160]


@pytest.fixture
def published_trainer(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    from nnunet_recur.trainers.variants import nnUNetTrainerRecurPublishedCode

    plans = _plans([40, 104, 96])
    plans["continue_training"] = False
    dataset_json = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "relapse": [1]},
        "regions_class_order": [1],
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    return nnUNetTrainerRecurPublishedCode(plans, "3d_recur", 0, dataset_json, device=torch.device("cpu"))


def test_published_code_trainer_builds_the_5_level_net_at_a_patch_divisible_by_16(published_trainer):
    trainer = published_trainer
    assert trainer.configuration_manager.patch_size == [48, 112, 96]
    manager = trainer.configuration_manager
    net = trainer.build_network_architecture(trainer.plans_manager, manager, 2, 1, False)
    assert isinstance(net, PublishedCodeUNet)
    # the plans saved next to the model (what nnUNetv2_predict reads) name the same net and patch
    saved = trainer.plans_manager.plans["configurations"]["3d_recur"]
    assert saved["architecture"]["network_class_name"] == PUBLISHED_CODE_NETWORK
    assert saved["patch_size"] == [48, 112, 96]


def test_published_code_trainer_flips_z_like_torchio_lr_on_a_bare_tensor(published_trainer):
    trainer = published_trainer
    *_, patch, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    transforms = trainer.get_training_transforms(
        patch, None, None, mirror_axes, False, use_mask_for_norm=[False, False], regions=[(1,)]
    )
    flips = [t for t in transforms.transforms if isinstance(t, AxisFlipTransform)]
    assert len(flips) == 1 and flips[0].probability == 0.001 and flips[0].axis == -3
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seg = (image[:1] % 3 == 0).to(torch.int16)
    out = AxisFlipTransform(1.0, flips[0].axis)(image=image.clone(), segmentation=seg.clone())
    assert torch.equal(out["image"], torch.flip(image, (1,)))  # (c, z, y, x): z
    assert torch.equal(out["segmentation"], torch.flip(seg, (1,)))
    if trainer.inference_allowed_mirroring_axes is not None:  # opt-in TTA mirrors the trained axis
        assert trainer.inference_allowed_mirroring_axes == (0,)


def _case(rng, shape=(1, 6, 8, 8)):
    logits = torch.from_numpy(rng.normal(0, 2, shape).astype(np.float32))
    target = torch.from_numpy(rng.random(shape) > 0.7)
    predicted = logits > 0
    probabilities = torch.sigmoid(logits)
    sums = {
        "overlap": int((predicted & target).sum()),
        "predicted": int(predicted.sum()),
        "reference": int(target.sum()),
        "soft_overlap": float((probabilities * target).sum()),
        "soft_predicted": float(probabilities.sum()),
    }
    return logits, target, sums


def test_shuffled_pair_scores_equal_the_scripts_batch_of_two_pooled_dice_and_loss():
    rng = np.random.default_rng(3)
    cases = [_case(rng) for _ in range(5)]
    scores = shuffled_pair_scores([c[2] for c in cases], np.random.default_rng(11))
    order = np.random.default_rng(11).permutation(5)
    dices, losses = [], []
    loss = SigmoidSoftDiceLoss()  # = MONAI DiceLoss(sigmoid=True, batch=True), tested elsewhere
    for start in (0, 2, 4):
        pair = [cases[i] for i in order[start : start + 2]]
        logits = torch.stack([c[0] for c in pair])
        target = torch.stack([c[1] for c in pair])
        dices.append(hard_dice(logits > 0, target))
        losses.append(float(loss(logits, target)))
    assert scores["dice"] == pytest.approx(np.mean(dices))
    assert scores["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    per_case = np.mean([hard_dice(c[0] > 0, c[1]) for c in cases])
    assert scores["dice"] != pytest.approx(per_case)  # pooling pairs is not the per-case mean


def test_shuffled_pair_scores_edge_cases():
    empty = {"overlap": 0, "predicted": 0, "reference": 0, "soft_overlap": 0.0, "soft_predicted": 0.0}
    assert shuffled_pair_scores([empty, empty], np.random.default_rng(0))["dice"] == 1.0
    assert np.isnan(shuffled_pair_scores([], np.random.default_rng(0))["dice"])
    hit = {"overlap": 10, "predicted": 10, "reference": 10, "soft_overlap": 10.0, "soft_predicted": 10.0}
    miss = {"overlap": 0, "predicted": 0, "reference": 10, "soft_overlap": 0.0, "soft_predicted": 0.0}
    # pooled, a perfect case and a missed one give 2*10/30; per case they would average 0.5
    assert shuffled_pair_scores([hit, miss], np.random.default_rng(0))["dice"] == pytest.approx(2 / 3)


def test_shuffled_pair_validation_of_one_case_equals_the_per_case_validation(
    tmp_path, monkeypatch, load_bench
):
    """With one validation case the only 'pair' is that case: both validations must agree exactly."""
    import json

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_recur.trainers.variants import nnUNetTrainerRecurPublishedCode_shuffledValPairs as Trainer

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    module = load_bench("data_pipeline")
    name = module.write_preprocessed_dataset(tmp_path, (16, 32, 32), 3)
    plans = json.loads((tmp_path / name / "nnUNetRecurPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((tmp_path / name / "dataset.json").read_text())
    trainer = Trainer(plans, "3d_recur", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    _, trainer._validation_dataset = trainer.get_tr_and_val_datasets()
    assert len(trainer._validation_dataset.identifiers) == 1
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        trainer.network,
        trainer.plans_manager,
        trainer.configuration_manager,
        None,
        trainer.dataset_json,
        Trainer.__name__,
        None,
    )
    trainer._validation_predictor = predictor
    paired = trainer.validate_whole_volumes()
    trainer.validation_on_shuffled_pairs = False
    per_case = trainer.validate_whole_volumes()
    assert paired["dice"] == pytest.approx(per_case["dice"])
    assert paired["loss"] == pytest.approx(per_case["loss"], rel=1e-4)


def test_published_code_variants_change_what_their_names_say():
    from nnunet_recur.trainers import variants as v

    base = v.nnUNetTrainerRecurPublishedCode
    assert (base.flip_probability, base.flip_axis, base.early_stopping_patience) == (0.001, -3, 40)
    assert not base.use_plateau_scheduler and not base.validation_on_shuffled_pairs
    assert v.nnUNetTrainerRecurPublishedCodeFinetune.recur_initial_lr == 0.01
    assert v.nnUNetTrainerRecurPublishedCodePretrain.monitor == "val_loss"
    assert v.nnUNetTrainerRecurPublishedCode_shuffledValPairs.validation_on_shuffled_pairs
    for name in v.__all__:
        if "PublishedCode" in name:
            assert issubclass(getattr(v, name), base)


def test_published_code_net_reads_the_scripts_two_inputs_on_a_converter_made_dataset(tmp_path, monkeypatch):
    """Issue 18 1.3: on the converter's three channels (CT, PET in SUV, PET z-scored on the patient level)
    the variant read all three (22,577,057 parameters); the scripts take two: CT, z-scored PET."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from test_trainers_units import _fake_inputs

    from nnunet_recur.dataset_conversion.nnunet_writer import CHANNEL_NAMES
    from nnunet_recur.trainers.variants import nnUNetTrainerRecurPublishedCode

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path))
    base, fingerprint, _ = _fake_inputs()
    base["foreground_intensity_properties_per_channel"]["2"] = {"mean": 0.0, "std": 1.0}
    dataset_json = {
        "channel_names": dict(CHANNEL_NAMES),  # what `recur convert` writes
        "labels": {"background": 0, "relapse": [1]},
        "regions_class_order": [1],
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    plans = recur_plans(base, fingerprint, dataset_json)
    plans["configurations"]["3d_recur"]["patch_size"] = [16, 32, 32]
    plans["continue_training"] = False
    trainer = nnUNetTrainerRecurPublishedCode(plans, "3d_recur", 0, dataset_json, device=torch.device("cpu"))
    manager = trainer.configuration_manager
    channels = determine_num_input_channels(trainer.plans_manager, manager, trainer.dataset_json)
    assert channels == 3
    net = trainer.build_network_architecture(trainer.plans_manager, manager, channels, 1, False)
    assert isinstance(net, PublishedCodeUNet)
    assert net.input_channel_indices == [0, 2]  # CT and PET_zscore_patient, not the SUV channel
    assert count_trainable_parameters(net) == 22_576_193
