"""The nnU-Net defaults the paper trainers must not inherit (issue 9), each checked through nnU-Net itself:
whole-case samples and one permutation per epoch from the real data loader on cases stored as nnU-Net's
preprocessing stores them, no test-time mirroring in nnU-Net's predictor, the fp32 step without clipping,
the DDP-aware Dice (gloo, two processes), fine-tuning that keeps the head, the best-seed rule, the small
guards and the nnunetv2 pin."""

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_recur.trainers.checkpoints import load_pretrained_weights_on_cpu
from nnunet_recur.trainers.losses import PaperDiceLoss
from nnunet_recur.trainers.network import RecurUNet
from nnunet_recur.trainers.sampling import global_batch_cases, iterations_per_epoch

REPO = Path(__file__).resolve().parents[1]
DATASET = "Dataset999_RecipeTiny"
CASE_SHAPE = (24, 32, 32)  # (z, y, x) = the patch: the paper's "patch covers the crop"
SMALL_SHAPE = (21, 30, 27)  # a smaller crop: padded, centred as the predictor pads it
N_TRAIN, N_VAL = 5, 2


# ---------------------------------------------------------------------------------------- a real dataset
def _dataset_json() -> dict:
    return {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "relapse": [1]},
        "regions_class_order": [1],
        "numTraining": N_TRAIN + N_VAL,
        "file_ending": ".nii.gz",
    }


def _plans() -> dict:
    from test_trainers_units import _fake_inputs

    from nnunet_recur.trainers.planning import recur_plans

    base, fingerprint, _ = _fake_inputs()
    plans = recur_plans({**base, "dataset_name": DATASET}, fingerprint, _dataset_json())
    plans["configurations"]["3d_recur"]["patch_size"] = list(CASE_SHAPE)
    return plans


def make_trainer(name: str = "nnUNetTrainerRecur", fold: int = 0, device: str = "cpu"):
    from nnunet_recur.trainers import variants

    plans = _plans()
    plans["continue_training"] = False
    trainer = getattr(variants, name)(plans, "3d_recur", fold, _dataset_json(), device=torch.device(device))
    trainer._set_batch_size_and_oversample()  # what initialize() does first, without building the network
    return trainer


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    """Cases written by nnU-Net's own writer (blosc2, class locations from its preprocessor), foreground in a
    corner so that a foreground-centred box would be shifted."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    from nnunet_recur.trainers.labels import sigmoid_region_labels
    from nnunet_recur.trainers.planning import RECUR_PLANS_NAME

    root = tmp_path_factory.mktemp("recipe")
    folder = root / DATASET / f"{RECUR_PLANS_NAME}_3d_recur"
    folder.mkdir(parents=True)
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    labels = sigmoid_region_labels(_dataset_json())["labels"]
    manager = LabelManager(labels, regions_class_order=[1])
    rng = np.random.default_rng(0)
    cases = {}
    for index in range(N_TRAIN + N_VAL):
        shape = SMALL_SHAPE if index == 1 else CASE_SHAPE
        data = rng.normal(size=(2, *shape)).astype(np.float32)
        data[0] += np.arange(shape[0])[:, None, None]  # a ramp: any shift shows
        seg = np.zeros((1, *shape), dtype=np.int8)
        seg[0, 1:4, 2:6, shape[2] - 5 : shape[2] - 1] = 1
        properties = {
            "class_locations": DefaultPreprocessor._sample_foreground_locations(
                seg, manager.foreground_regions
            ),
            "spacing": [2.0, 1.0, 1.0],
            "shape_before_cropping": shape,
            "bbox_used_for_cropping": [[0, s] for s in shape],
            "shape_after_cropping_and_before_resampling": shape,
        }
        case = f"case_{index:03d}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nnUNetDatasetBlosc2.save_case(data, seg, properties, str(folder / case))
        cases[case] = (data, seg)
    names = sorted(cases)
    split = {"train": names[:N_TRAIN], "val": names[N_TRAIN:]}
    (root / DATASET / "splits_final.json").write_text(json.dumps([split] * 5))
    return root, cases, split


@pytest.fixture
def trainer_env(preprocessed, monkeypatch):
    root, cases, split = preprocessed
    monkeypatch.setenv("nnUNet_preprocessed", str(root))
    monkeypatch.setenv("nnUNet_results", str(root / "results"))
    monkeypatch.setenv("nnUNet_raw", str(root / "raw"))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv("RECUR_SEED", raising=False)
    return root, cases, split


def _centred(case: np.ndarray, patch) -> np.ndarray:
    padded = np.zeros((case.shape[0], *patch), dtype=case.dtype)
    lower = [(p - s) // 2 for s, p in zip(case.shape[1:], patch, strict=True)]
    padded[(slice(None), *(slice(lo, lo + s) for lo, s in zip(lower, case.shape[1:], strict=True)))] = case
    return padded


# ---------------------------------------------------------------------------- 1. whole case, never shifted
def test_every_training_sample_is_the_whole_case_unshifted_over_many_draws(trainer_env):
    _, cases, _ = trainer_env
    trainer = make_trainer()
    trainer.flip_probability = 0.0  # compare voxel for voxel
    assert trainer.oversample_foreground_percent == 0.0
    loader, _ = trainer.get_dataloaders()
    for _ in range(15):  # 5 epochs of 3 batches
        batch = next(loader)
        for key, image, target in zip(batch["keys"], batch["data"], batch["target"], strict=True):
            data, seg = cases[key]
            np.testing.assert_array_equal(image.numpy(), _centred(data, CASE_SHAPE), err_msg=key)
            np.testing.assert_array_equal(target.numpy()[0], _centred(seg, CASE_SHAPE)[0] == 1, err_msg=key)


# -------------------------------------------------------------------- 2. one permutation per epoch
def test_an_epoch_shows_every_training_case_once_in_a_new_order(trainer_env):
    from nnunet_recur.trainers.recur_trainer import seed_everything

    _, _, split = trainer_env
    trainer = make_trainer()
    seed_everything(trainer.seed)
    loader, _ = trainer.get_dataloaders()
    assert trainer.num_iterations_per_epoch == math.ceil(N_TRAIN / 2) == 3
    orders = []
    for _ in range(4):
        keys = [k for _ in range(trainer.num_iterations_per_epoch) for k in next(loader)["keys"]]
        assert sorted(set(keys)) == sorted(split["train"])  # every case, 6 slots: one case twice
        assert len(keys) == 6 and keys[-1] == keys[0]  # the last batch is completed from the same epoch
        orders.append(keys[:N_TRAIN])
    assert len({tuple(o) for o in orders}) > 1  # a new order each epoch


def _flip_decisions(cases, monkeypatch, workers: int, batches: int, keys=None) -> list[list[bool]]:
    """Per batch, per sample: did the trainer's loader flip it left-right (checked against the stored case)?
    ``keys``: a list that receives each batch's case keys."""
    monkeypatch.setenv("nnUNet_n_proc_DA", str(workers))
    trainer = make_trainer()
    loader, _ = trainer.get_dataloaders()
    decisions = []
    try:
        for _ in range(batches):
            batch = next(loader)
            if keys is not None:
                keys.append(list(batch["keys"]))
            row = []
            for key, image in zip(batch["keys"], batch["data"].numpy(), strict=True):
                stored = _centred(cases[key][0], CASE_SHAPE)
                flipped = np.array_equal(image, stored[..., ::-1])
                assert flipped or np.array_equal(image, stored), key
                row.append(flipped)
            decisions.append(row)
    finally:
        if workers:
            loader._finish()
    return decisions


def test_augmentation_workers_deliver_the_permutation_in_order_and_flip_independently(
    trainer_env, monkeypatch
):
    """Two workers (one queue each, read in turn) deliver the permutation's batches in order. Issue 18 1.1:
    batchgenerators reseeds only numpy per worker and the flip draws from torch, so two forked workers made
    identical flip decisions; each batch now draws from (seed, batch number)."""
    _, cases, split = trainer_env
    keys = []
    two_workers = _flip_decisions(cases, monkeypatch, workers=2, batches=40, keys=keys)
    identifiers = sorted(split["train"])
    assert keys == [[identifiers[i] for i in global_batch_cases(N_TRAIN, 2, b, 0)] for b in range(40)]
    worker0, worker1 = two_workers[0::2], two_workers[1::2]  # worker t makes global batches t, t + 2, ...
    assert worker0 != worker1
    assert any(map(any, worker0)) and any(map(any, worker1))
    # reproducible, and a function of the batch, not of the worker count or the process's torch state
    torch.manual_seed(12345)
    one_process = _flip_decisions(cases, monkeypatch, workers=0, batches=150)
    assert one_process[:40] == two_workers
    flips = sum(map(sum, one_process))
    assert 12 <= flips <= 48  # p = 0.1 of 300 samples: 30 +- 4.4 sigma


def test_ddp_ranks_split_one_global_batch_and_the_epoch_keeps_its_length(trainer_env, monkeypatch):
    import torch.distributed as dist

    from nnunet_recur.trainers.sampling import EpochPermutationDataLoader

    trainer = make_trainer()
    # nnU-Net's DDP split of the plans' batch 2 over 2 ranks: one case each
    trainer.is_ddp, trainer.batch_size = True, 1
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert trainer.global_batch_size_and_offset() == (2, 1)
    dataset_tr, _ = trainer.get_tr_and_val_datasets()
    assert trainer.num_iterations_per_epoch == 3  # global batches, not 5 per-rank batches of 1
    single = EpochPermutationDataLoader(dataset_tr, 2, CASE_SHAPE, CASE_SHAPE, trainer.label_manager, seed=4)
    ranks = [
        EpochPermutationDataLoader(
            dataset_tr,
            1,
            CASE_SHAPE,
            CASE_SHAPE,
            trainer.label_manager,
            seed=4,
            global_batch_size=2,
            rank_offset=rank,
        )
        for rank in (0, 1)
    ]
    for _ in range(6):
        assert single.get_indices() == ranks[0].get_indices() + ranks[1].get_indices()
    # each rank draws the augmentation of its own sample from its own seed (not both from one state)
    from nnunet_recur.trainers.sampling import batch_seed

    assert len({batch_seed(4, 7, rank) for rank in (0, 1)} | {batch_seed(4, 8, 0)}) == 3


def test_iterations_per_epoch_is_ceil_of_cases_over_batch():
    assert iterations_per_epoch(23, 2) == 12 and iterations_per_epoch(1, 2) == 1
    counts = np.bincount([c for b in range(12) for c in global_batch_cases(23, 2, b, seed=0)], minlength=23)
    assert counts.min() == 1 and counts.sum() == 24  # the paper's 23 cases: each once, one twice


# ---------------------------------------------------------------------------------------------- 3. TTA
def _forward_passes(axes) -> int:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer = make_trainer()
    network = RecurUNet(input_channels=2, num_classes=1, features_per_stage=(4, 8, 16, 32)).eval()
    calls = []
    network.register_forward_hook(lambda *_: calls.append(1))
    predictor = nnUNetPredictor(use_mirroring=True, device=torch.device("cpu"), allow_tqdm=False)  # as CLI
    predictor.manual_initialization(
        network,
        trainer.plans_manager,
        trainer.configuration_manager,
        None,
        trainer.dataset_json,
        type(trainer).__name__,
        axes,
    )
    with torch.no_grad():
        predictor.predict_sliding_window_return_logits(torch.zeros(2, *CASE_SHAPE))
    return len(calls)


def test_paper_trainers_predict_with_one_forward_pass_and_tta_is_a_named_opt_in(trainer_env):
    paper = make_trainer()
    paper.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert paper.inference_allowed_mirroring_axes is None  # what the checkpoint hands nnUNetv2_predict
    assert _forward_passes(paper.inference_allowed_mirroring_axes) == 1
    tta = make_trainer("nnUNetTrainerRecurTTA")
    tta.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert tta.inference_allowed_mirroring_axes == (2,)
    assert _forward_passes(tta.inference_allowed_mirroring_axes) == 2


def test_docs_commands_agree_that_tta_is_off_by_default():
    trainers = (REPO / "docs" / "trainers.md").read_text()
    assert "nnUNetTrainerRecurTTA" in trainers
    assert "without `--disable_tta`) uses that axis only" not in trainers


def test_docs_describe_the_augmenter_loss_and_plateau_the_code_builds(trainer_env, monkeypatch):
    """Issue 18 1.6: docs/trainers.md rows that disagreed with the code."""
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

    monkeypatch.setenv("nnUNet_n_proc_DA", "2")
    loader, _ = make_trainer().get_dataloaders()
    loader._finish()  # workers start at the first batch: none to stop
    assert type(loader) is MultiThreadedAugmenter  # in order; nnU-Net's NonDet... is not
    docs = " ".join((REPO / "docs" / "trainers.md").read_text().split())
    assert "the loaders are `NonDetMultiThreadedAugmenter`s" not in docs
    assert (
        "runs in batchgenerators' `MultiThreadedAugmenter` (not nnU-Net's `NonDetMultiThreadedAugmenter`)"
        in docs
    )
    assert "batch Dice from the authors' released scripts (`batch=True`), not the paper's text" in docs
    assert "the lr falls on the **11th** epoch in a row without improvement" in docs
    assert "Not tested without a GPU: the autocast numerics on CUDA" in docs


# -------------------------------------------------------------------------------- 4. precision, clipping
def test_paper_step_is_fp32_without_clipping_or_grad_scaler(trainer_env, monkeypatch):
    trainer = make_trainer()
    trainer.initialize()
    assert trainer.grad_scaler is None and trainer.autocast_dtype is None

    def refuse(*args, **kwargs):
        raise AssertionError("gradient clipping is not in the paper's recipe")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", refuse)
    batch = {"data": torch.randn(2, 2, *CASE_SHAPE), "target": torch.rand(2, 1, *CASE_SHAPE) > 0.9}
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = trainer.train_step(batch)["loss"]
    assert np.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters(), strict=True))


def test_mixed_precision_is_a_named_variant_bf16_where_supported(trainer_env, monkeypatch):
    mixed = make_trainer("nnUNetTrainerRecurMixedPrecision")
    assert mixed.autocast_dtype is None  # on the CPU: fp32, as nnU-Net
    mixed.device = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert mixed._autocast_dtype() == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert mixed._autocast_dtype() == torch.float16
    paper = make_trainer()
    paper.device = torch.device("cuda")
    assert paper._autocast_dtype() is None


@pytest.mark.filterwarnings("ignore:.*CUDA is not available.*:UserWarning")
@pytest.mark.parametrize(
    ("name", "bf16", "autocast", "scaler"),
    [
        ("nnUNetTrainerRecur", True, None, False),  # the paper: fp32 on a GPU too, no GradScaler
        ("nnUNetTrainerRecurMixedPrecision", True, torch.bfloat16, False),
        ("nnUNetTrainerRecurMixedPrecision", False, torch.float16, True),  # fp16 needs the scaler
    ],
)
def test_grad_scaler_and_autocast_as_the_constructor_decides_them_on_a_cuda_device(
    trainer_env, monkeypatch, name, bf16, autocast, scaler
):
    """The decision nnU-Net's and our constructors make for device type 'cuda', taken on a machine without a
    GPU (nnU-Net builds a GradScaler for every CUDA trainer; ours keeps it for fp16 only). What runs on a GPU
    (the autocast numerics, the scaler's steps) is not tested here: bench/gpu_epoch.py on a GPU."""
    from torch import GradScaler

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    trainer = make_trainer(name, device="cuda")
    assert trainer.device.type == "cuda"
    assert trainer.autocast_dtype == autocast
    assert isinstance(trainer.grad_scaler, GradScaler) if scaler else trainer.grad_scaler is None
    context = trainer._autocast()
    if autocast is None:
        assert not isinstance(context, torch.autocast)
    else:
        assert isinstance(context, torch.autocast) and context.device == "cuda"
        assert context.fast_dtype == autocast


def test_initialize_builds_the_papers_loss_optimiser_and_plateau_schedule(trainer_env):
    """What initialize() builds, not the class attributes: reverting to nnU-Net's Dice + CE, SGD or the poly
    schedule fails here. The plateau cuts the lr on the 11th epoch in a row without improvement (PyTorch's
    patience counts bad epochs > 10; docs/trainers.md states it against the paper's "ten")."""
    trainer = make_trainer()
    trainer.initialize()
    assert type(trainer.loss) is PaperDiceLoss
    logits, target = torch.randn(2, 1, 4, 6, 6), torch.rand(2, 1, 4, 6, 6) > 0.7
    expected = _old_sigmoid_soft_dice(logits, target)  # MONAI DiceLoss(sigmoid=True, batch=True), 1e-5
    assert float(trainer.loss(logits, target)) == pytest.approx(float(expected), rel=1e-5)
    assert type(trainer.optimizer) is torch.optim.Adam
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        0.1,
        (0.9, 0.999),
        1e-8,
        0.0,
    )
    assert {id(p) for p in group["params"]} == {id(p) for p in trainer.network.parameters()}
    scheduler = trainer.lr_scheduler
    assert type(scheduler) is torch.optim.lr_scheduler.ReduceLROnPlateau
    assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("max", 0.05, 10)
    scheduler.step(0.5)  # the first value is an improvement
    for _ in range(10):
        scheduler.step(0.5)
        assert group["lr"] == 0.1  # ten epochs without improvement: not yet
    scheduler.step(0.5)
    assert group["lr"] == pytest.approx(0.005)  # the 11th


def test_our_checkpoint_holds_every_key_nnunets_own_save_checkpoint_writes(
    trainer_env, tmp_path, monkeypatch
):
    """nnU-Net 2.8.1's save_checkpoint, captured by patching torch.save: ours must write every key it does
    (load_checkpoint and the predictor read them), so an nnU-Net update cannot silently break them."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    trainer = make_trainer()
    trainer.initialize()
    written = []
    save = torch.save

    def capture(obj, f, *args, **kwargs):
        written.append(obj)
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", capture)
    nnUNetTrainer.save_checkpoint(trainer, str(tmp_path / "upstream.pth"))
    trainer.save_checkpoint(str(tmp_path / "ours.pth"))
    upstream, ours = written
    assert len(upstream) >= 9 and set(upstream) <= set(ours), set(upstream) - set(ours)
    assert ours["trainer_name"] == upstream["trainer_name"] == "nnUNetTrainerRecur"
    assert ours["init_args"] == upstream["init_args"] and ours["current_epoch"] == upstream["current_epoch"]


# --------------------------------------------------------------------------------------- 5. Dice loss
def _old_sigmoid_soft_dice(logits, target, smooth=1e-5):
    """The hand-written loss the trainers used before (MONAI DiceLoss(sigmoid=True, batch=True))."""
    probabilities = torch.sigmoid(logits.float())
    axes = [0, *range(2, logits.ndim)]
    intersection = (probabilities * target.float()).sum(dim=axes)
    denominator = probabilities.sum(dim=axes) + target.float().sum(dim=axes)
    return (1.0 - (2.0 * intersection + smooth) / (denominator + smooth)).mean()


@pytest.mark.parametrize("shape", [(2, 1, 8, 12, 10), (3, 2, 6, 6, 6)])
def test_nnunet_dice_equals_the_old_loss_in_value_and_gradient(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    logits = (torch.randn(shape, generator=generator) * 3).requires_grad_(True)
    target = torch.rand(shape, generator=generator) > 0.7
    new = PaperDiceLoss()(logits, target)
    (new_grad,) = torch.autograd.grad(new, logits)
    old = _old_sigmoid_soft_dice(logits, target)
    (old_grad,) = torch.autograd.grad(old, logits)
    assert float(new.detach()) == pytest.approx(float(old.detach()), rel=1e-6, abs=1e-7)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-5, atol=1e-9)


def _ddp_dice_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        generator = torch.Generator().manual_seed(7)
        logits = torch.randn(2, 1, 6, 8, 8, generator=generator) * 3
        target = torch.rand(2, 1, 6, 8, 8, generator=generator) > 0.7
        mine = logits[rank : rank + 1].clone().requires_grad_(True)
        loss = PaperDiceLoss(ddp=True)(mine, target[rank : rank + 1])
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": mine.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~15 s on 2 shared cores
def test_dice_over_two_gloo_ranks_is_the_dice_of_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_dice_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    generator = torch.Generator().manual_seed(7)
    logits = (torch.randn(2, 1, 6, 8, 8, generator=generator) * 3).requires_grad_(True)
    target = torch.rand(2, 1, 6, 8, 8, generator=generator) > 0.7
    whole = PaperDiceLoss(ddp=False)(logits, target)
    whole.backward()
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert float(result["loss"]) == pytest.approx(float(whole), rel=1e-6)
        # each rank's gradient is summed over both ranks' identical losses; DDP then averages over 2 ranks
        torch.testing.assert_close(result["grad"] / 2, logits.grad[rank : rank + 1], rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------------ 6. fine-tuning
def test_fine_tuning_transfers_the_head_when_its_shape_matches(tmp_path, capsys):
    torch.manual_seed(0)
    pretrained = RecurUNet(num_classes=1)
    path = str(tmp_path / "gtvp.pth")
    torch.save({"network_weights": pretrained.state_dict()}, path)
    target = RecurUNet(num_classes=1)
    report = load_pretrained_weights_on_cpu(target, path)
    assert torch.equal(target.decoder.seg_layers[0].weight, pretrained.decoder.seg_layers[0].weight)
    assert report["dropped"] == [] and len(report["transferred"]) == len(target.state_dict())
    assert "output head transferred" in capsys.readouterr().out


def test_fine_tuning_drops_only_a_head_of_another_shape_and_says_so(tmp_path, capsys):
    path = str(tmp_path / "gtvp_gtvn.pth")
    torch.save({"network_weights": RecurUNet(num_classes=2).state_dict()}, path)
    report = load_pretrained_weights_on_cpu(RecurUNet(num_classes=1), path)
    assert report["dropped"] and all(".seg_layers." in key for key in report["dropped"])
    assert "dropped" in capsys.readouterr().out


def test_fine_tuning_writes_the_transfer_into_nnunets_training_log(trainer_env, tmp_path):
    """Issue 18 1.5: what was loaded and what re-initialised goes to training_log_*.txt, not only stdout."""
    import nnunetv2.run.run_training as run_training

    trainer = make_trainer("nnUNetTrainerRecurFinetune")
    trainer.initialize()
    pretrained = {k: torch.full_like(v, 0.5) for k, v in trainer.network.state_dict().items()}
    path = str(tmp_path / "gtvp.pth")
    torch.save({"network_weights": pretrained}, path)
    run_training.maybe_load_checkpoint(
        trainer, False, False, path
    )  # what nnUNetv2_train -pretrained_weights runs
    assert torch.equal(
        trainer.network.decoder.seg_layers[0].weight, pretrained["decoder.seg_layers.0.weight"]
    )
    log = Path(trainer.log_file).read_text()
    assert f"{len(pretrained)} of {len(pretrained)} tensors transferred; output head transferred" in log
    assert "Layers loaded from the pre-trained weights: encoder.stages.0.0, " in log
    assert "Layers re-initialised (kept their fresh initialisation): none" in log
    assert "transferred decoder.seg_layers.0.weight shape" in log  # nnU-Net asks for verbose


# --------------------------------------------------------------------------------------- 9. small guards
def test_a_stale_best_checkpoint_is_not_promoted_without_a_best_epoch_of_this_run(trainer_env, tmp_path):
    trainer = make_trainer()
    trainer.initialize()
    trainer.output_folder = str(tmp_path)
    stale = {k: torch.full_like(v, 7.0) for k, v in trainer.network.state_dict().items()}
    torch.save({"network_weights": stale}, tmp_path / "checkpoint_best.pth")
    weights = trainer.network.encoder.stages[0][0].weight.detach().clone()
    assert trainer.best_epoch is None
    assert not trainer.promote_best_checkpoint()
    assert torch.equal(trainer.network.encoder.stages[0][0].weight, weights)
    trainer.best_epoch, trainer.best_metric = 3, 0.5
    assert trainer.promote_best_checkpoint()
    assert float(trainer.network.encoder.stages[0][0].weight.flatten()[0]) == 7.0


def test_recur_seed_with_a_seed_fold_warns(monkeypatch):
    from nnunet_recur.trainers.recur_trainer import training_seed

    monkeypatch.setenv("RECUR_SEED", "11")
    with pytest.warns(UserWarning, match="folds 0-4"):
        assert training_seed(2) == 11
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training_seed("all") == 11
    monkeypatch.delenv("RECUR_SEED")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training_seed(2) == 2


def test_monai_dice_test_is_not_skipped_when_monai_is_missing():
    source = (REPO / "tests" / "test_trainers_units.py").read_text()
    assert "importorskip" not in source
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    test_extra = project["optional-dependencies"]["test"]
    assert any(requirement.startswith("monai") for requirement in test_extra)


# ------------------------------------------------------------------------------------- 10. best seed
def _write_runs(folder: Path, metrics, monitor="val_dice"):
    for fold, value in metrics.items():
        (folder / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
        record = {
            "fold": fold,
            "seed": fold,
            "monitor": monitor if isinstance(monitor, str) else monitor[fold],
        }
        record |= {"best_metric": value, "best_epoch": 5, "epochs_trained": 9, "stopped_early": False}
        (folder / f"fold_{fold}" / "recur_best.json").write_text(json.dumps(record))


def test_best_seed_ties_go_to_the_lowest_fold_and_nan_never_wins(tmp_path):
    from nnunet_recur.trainers.seeds import select_best_seed

    _write_runs(tmp_path, {0: float("nan"), 2: 0.4, 10: 0.4, 3: 0.1})
    assert select_best_seed(tmp_path).fold == 2  # fold 10 ties with 2 (and sorts before it as text)
    _write_runs(tmp_path, {0: float("nan"), 2: float("nan"), 10: float("nan"), 3: float("nan")})
    with pytest.raises(ValueError, match="finite"):
        select_best_seed(tmp_path)
    _write_runs(tmp_path, {0: 0.9, 2: float("nan"), 10: 0.2, 3: 0.5}, monitor="val_loss")
    assert select_best_seed(tmp_path).fold == 10  # a loss: lowest wins, NaN still never
    assert select_best_seed(tmp_path, folds=[0, 3]).fold == 3
    with pytest.raises(FileNotFoundError, match="fold_4"):
        select_best_seed(tmp_path, folds=[0, 4])


def test_best_seed_refuses_runs_that_monitored_different_metrics(tmp_path):
    from nnunet_recur.trainers.seeds import select_best_seed

    _write_runs(tmp_path, {0: 0.3, 1: 0.2}, monitor={0: "val_dice", 1: "val_loss"})
    with pytest.raises(ValueError, match="different metrics"):
        select_best_seed(tmp_path)
    (tmp_path / "fold_1" / "recur_best.json").write_text('{"fold": 1, "mon')  # truncated
    with pytest.raises(ValueError, match="fold_1"):
        select_best_seed(tmp_path)


# ----------------------------------------------------------------------------------- 11. nnunetv2 pin
def test_installed_nnunetv2_is_the_pinned_range():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    from nnunet_recur.trainers.compat import SUPPORTED_NNUNETV2, check_nnunetv2_version

    assert f'"nnunetv2{SUPPORTED_NNUNETV2}",' in (REPO / "pyproject.toml").read_text()  # the pip pin
    installed = version("nnunetv2")
    assert installed in SpecifierSet(SUPPORTED_NNUNETV2), (
        f"nnunetv2 {installed} is installed, but the trainers are written for nnunetv2{SUPPORTED_NNUNETV2}"
    )
    assert check_nnunetv2_version() == installed


@pytest.mark.parametrize("outside", ["2.8.0", "2.9.0", "3.0"])
def test_trainers_refuse_nnunetv2_outside_the_range_with_a_clear_message(outside):
    from nnunet_recur.trainers.compat import UnsupportedNnUNetVersion, check_nnunetv2_version

    with pytest.raises(UnsupportedNnUNetVersion, match=rf"nnunetv2>=2\.8\.1,<2\.9.*found nnunetv2 {outside}"):
        check_nnunetv2_version(outside)
    assert check_nnunetv2_version("2.8.5") == "2.8.5"


# --------------------------------------------------------------------------- 8. case larger than the patch
def _fingerprint(shapes_zyx, spacings_zyx):
    return {"shapes_after_crop": shapes_zyx, "spacings": spacings_zyx}


def test_plan_refuses_cases_larger_than_the_patch_unless_allowed():
    from nnunet_recur.trainers.planning import (
        PAPER_PATCH_SIZE,
        PatchSmallerThanCase,
        check_patch_covers_cases,
        shapes_at_spacing,
    )

    spacing = [2.0, 0.9765, 0.9765]
    # a HECKTOR case cut as 128 x 224 x 160 voxels at 3 mm slices, resampled to the relapse's 2 mm: 192 slices
    shapes = shapes_at_spacing(
        _fingerprint([[128, 224, 160], [80, 200, 150]], [[3.0, 0.9765, 0.9765]] * 2), spacing
    )
    assert shapes[0] == [192, 224, 160]
    with pytest.raises(PatchSmallerThanCase, match="--allow-patch-smaller-than-case"):
        check_patch_covers_cases("Dataset500_H", shapes, PAPER_PATCH_SIZE, spacing, allowed=False)
    largest, larger = check_patch_covers_cases(
        "Dataset500_H", shapes, PAPER_PATCH_SIZE, spacing, allowed=True
    )
    assert (largest, larger) == ([192, 224, 160], 1)


def test_plan_summary_says_whether_one_patch_covers_every_case():
    from nnunet_recur.trainers.planning import PlanSummary

    common = dict(
        dataset_name="D", plans_file="p", spacing=[2, 1, 1], patch_size=[128, 224, 160], batch_size=2
    )
    fits = PlanSummary(
        **common, cases_preprocessed=3, preprocessing_skipped=False, largest_case=[120, 200, 150]
    )
    assert "covers every case" in fits.patch_note()
    larger = PlanSummary(
        **common,
        cases_preprocessed=3,
        preprocessing_skipped=False,
        largest_case=[192, 224, 160],
        cases_larger_than_patch=1,
    )
    assert larger.patch_note().startswith("WARNING: 1 case(s) larger than the patch")


@pytest.mark.parametrize(
    "spacing_xyz", [(1.0, 1.0, 3.0), (0.9765, 0.9765, 2.0), (1.17, 1.17, 3.27), (0.5, 0.5, 1.5)]
)
def test_hecktor_box_in_mm_still_fits_the_patch_after_resampling_to_the_relapse_spacing(spacing_xyz):
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.crop import CropBox, fixed_mm_box
    from nnunet_recur.dataset_conversion.prepare import PreparedCase, crop_case
    from nnunet_recur.trainers.planning import PAPER_PATCH_SIZE, shapes_at_spacing

    box = CropBox.from_json(fixed_mm_box().to_json())  # as dataset.json records it
    image = sitk.Image(40, 40, 20, sitk.sitkInt16)
    image.SetSpacing(spacing_xyz)
    mask = sitk.Image(40, 40, 20, sitk.sitkUInt8)
    mask.SetSpacing(spacing_xyz)
    case = PreparedCase(ct=image, pet=sitk.Cast(image, sitk.sitkFloat32), label=mask, gtv=mask)
    size_xyz = crop_case(case, box, (20, 20, 10))["ct"].GetSize()
    assert tuple(size_xyz) == box.voxels_at(spacing_xyz)
    relapse_spacing_zyx = [2.0, 0.9765, 0.9765]
    resampled = shapes_at_spacing(_fingerprint([size_xyz[::-1]], [spacing_xyz[::-1]]), relapse_spacing_zyx)[0]
    assert all(r <= p for r, p in zip(resampled, PAPER_PATCH_SIZE, strict=True)), resampled
    assert all(r >= p - 2 for r, p in zip(resampled, PAPER_PATCH_SIZE, strict=True)), resampled  # not smaller


# ------------------------------------------------------------------------------------ 7. PET z-score region
def _three_channel_json() -> dict:
    from nnunet_recur.dataset_conversion.nnunet_writer import CHANNEL_NAMES

    return {**_dataset_json(), "channel_names": dict(CHANNEL_NAMES)}


def _prepared_case():
    """A 'whole stored PET' whose crop has other statistics than the whole (a hot tumour near the GTV)."""
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.prepare import PreparedCase

    rng = np.random.default_rng(3)
    shape_zyx = (30, 40, 40)
    suv = rng.gamma(2.0, 0.5, shape_zyx).astype(np.float32)
    suv[12:18, 15:25, 15:25] += 12.0
    gtv = np.zeros(shape_zyx, np.uint8)
    gtv[13:17, 18:22, 18:22] = 1

    def image(array):
        out = sitk.GetImageFromArray(array)
        out.SetSpacing((1.0, 1.0, 2.0))
        return out

    ct = image(rng.normal(40, 30, shape_zyx).astype(np.int16))
    return PreparedCase(ct=ct, pet=image(suv), label=image(gtv), gtv=image(gtv)), suv


def test_converter_writes_suv_and_the_pet_z_scored_over_the_whole_stored_pet_before_the_crop():
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.crop import fixed_box
    from nnunet_recur.dataset_conversion.prepare import crop_case

    case, suv = _prepared_case()
    images = crop_case(case, fixed_box((16, 16, 12)), (20, 20, 15))  # x, y, z
    cropped_suv = sitk.GetArrayFromImage(images["pet"])
    np.testing.assert_array_equal(cropped_suv, suv[9:21, 12:28, 12:28])  # SUV unchanged for the baseline
    z = sitk.GetArrayFromImage(images["pet_zscore"])
    np.testing.assert_allclose(z, (cropped_suv - suv.mean()) / suv.std(), rtol=1e-5, atol=1e-5)
    crop_z = (cropped_suv - cropped_suv.mean()) / cropped_suv.std()
    assert np.abs(z - crop_z).max() > 0.5  # the region matters: nnU-Net's z-score of the crop differs
    outside = crop_case(case, fixed_box((16, 16, 60)), (20, 20, 15))  # the box leaves the image: padding
    assert float(sitk.GetArrayFromImage(outside["pet_zscore"])[0, 0, 0]) == pytest.approx(
        -suv.mean() / suv.std(), rel=1e-5
    )


def test_paper_plans_feed_the_network_ct_and_the_patient_level_pet_and_crop_is_a_choice():
    from test_trainers_units import _fake_inputs

    from nnunet_recur.trainers.planning import recur_plans

    base, fingerprint, _ = _fake_inputs()
    base["foreground_intensity_properties_per_channel"]["2"] = {"mean": 0.0, "std": 1.0}
    paper = recur_plans(base, fingerprint, _three_channel_json())["configurations"]["3d_recur"]
    assert paper["normalization_schemes"] == ["CTNormalization", "ZScoreNormalization", "NoNormalization"]
    assert paper["architecture"]["arch_kwargs"]["input_channel_indices"] == [0, 2]
    assert paper["recur_pet_zscore"] == "patient"
    crop = recur_plans(base, fingerprint, _three_channel_json(), pet_zscore="crop")["configurations"][
        "3d_recur"
    ]
    assert crop["architecture"]["arch_kwargs"]["input_channel_indices"] == [0, 1]
    assert crop["recur_pet_zscore"] == "crop"
    two = recur_plans(*_fake_inputs())["configurations"]["3d_recur"]  # no converter channel: crop, all inputs
    assert (
        two["recur_pet_zscore"] == "crop"
        and "input_channel_indices" not in two["architecture"]["arch_kwargs"]
    )


def test_nnunet_preprocessing_and_the_plans_network_use_the_patient_level_pet_at_training_and_inference(
    tmp_path,
):
    """nnUNetv2_train's preprocessing and nnUNetv2_predict / nnUNetPredictor run one function
    (DefaultPreprocessor.run_case) on the converter's files and build the network from the plans: the network
    input is exactly the converter's z-score, and the SUV channel does not reach the network."""
    import SimpleITK as sitk
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from test_trainers_units import _fake_inputs

    from nnunet_recur.dataset_conversion.crop import fixed_box
    from nnunet_recur.dataset_conversion.prepare import crop_case
    from nnunet_recur.trainers.labels import sigmoid_region_labels
    from nnunet_recur.trainers.planning import recur_plans

    case, _ = _prepared_case()
    images = crop_case(case, fixed_box((16, 16, 8)), (20, 20, 15))
    files = []
    for channel, key in enumerate(("ct", "pet", "pet_zscore")):
        files.append(str(tmp_path / f"case_{channel:04d}.nii.gz"))
        sitk.WriteImage(images[key], files[-1])
    base, fingerprint, _ = _fake_inputs()
    base["foreground_intensity_properties_per_channel"]["2"] = {"mean": 0.0, "std": 1.0}
    fingerprint = {"spacings": [[2.0, 1.0, 1.0]], "shapes_after_crop": [[8, 16, 16]]}
    kwargs = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    for what in ("data", "seg", "probabilities"):  # nnU-Net's own (no resampling happens at equal spacing)
        base["configurations"]["3d_fullres"][f"resampling_fn_{what}"] = "resample_data_or_seg_to_shape"
        base["configurations"]["3d_fullres"][f"resampling_fn_{what}_kwargs"] = {
            **kwargs,
            "is_seg": what == "seg",
        }
    dataset_json = sigmoid_region_labels(_three_channel_json())
    plans = PlansManager(recur_plans(base, fingerprint, dataset_json))
    configuration = plans.get_configuration("3d_recur")
    data, _, _ = DefaultPreprocessor(verbose=False).run_case(files, None, plans, configuration, dataset_json)
    np.testing.assert_allclose(data[2], sitk.GetArrayFromImage(images["pet_zscore"]), rtol=1e-6)
    network = get_network_from_plans(
        configuration.network_arch_class_name,
        configuration.network_arch_init_kwargs,
        configuration.network_arch_init_kwargs_req_import,
        3,
        1,
        allow_init=True,
        deep_supervision=False,
    ).eval()
    x = torch.from_numpy(np.ascontiguousarray(data[None], dtype=np.float32))
    with torch.no_grad():
        out = network(x)
        x[:, 1] = torch.randn_like(x[:, 1])  # the SUV channel: not a network input
        torch.testing.assert_close(network(x), out)
        x[:, 2] += 1.0
        assert not torch.allclose(network(x), out)
