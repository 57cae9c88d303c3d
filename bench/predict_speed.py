"""One patient's `recur predict` wall time against its floor: reading the DICOM plus the forward passes.

Paper size on CPU: a synthetic paper-size DICOM patient (512 x 512 CT at 0.98 mm, PET, RTSTRUCT;
`recur synth --size paper`) and a model folder holding the paper's RecurUNet (random weights: speed does not
depend on them) with the paper's crop box 160 x 224 x 128 voxels (x, y, z) and patch 128 x 224 x 160
(z, y, x), so one sliding-window tile covers the crop. Measured in the same run:

- floor = read (scan the folder, CT series, PET -> SUV, RTSTRUCT; the converter's readers) + the network's
  forward passes (N folds = N passes on the 2 x 128 x 224 x 160 crop), timed by hooks on the network
  *inside the same predict call*, so a machine shared with other jobs slows floor and total alike;
- predict = `run_patient` (preparation with the quality checks, nnU-Net's predictor, uncrop, RTSTRUCT, two
  SEGs, report, atomic writes), the model already loaded (as in a batch); ROIs at 0.3 (the whole crop, see
  `write_model`) and 0.5 (empty). The first configuration runs once before timing (imports, first calls).

Target: predict / floor <= 1.5 for one fold; the ensemble (--folds N: N copies of the same weights) is
recorded too. Writes JSON beside the printed table.

Example: python bench/predict_speed.py --folds 1 2 --json bench_out/predict_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATCH_ZYX = [128, 224, 160]
BOX_XYZ = [160, 224, 128]


def write_model(folder: Path, n_folds: int, spacing_zyx: list[float]) -> None:
    """A trained-model folder in nnU-Net's layout around a randomly initialised RecurUNet."""
    import torch

    from nnunet_recur.trainers.network import RecurUNet

    folder.mkdir(parents=True)
    ct_stats = {
        "max": 1024.0,
        "mean": 0.0,
        "median": 0.0,
        "min": -1024.0,
        "percentile_00_5": -1024.0,
        "percentile_99_5": 1024.0,
        "std": 1024.0,
    }
    pet_stats = {
        "max": 20.0,
        "mean": 2.0,
        "median": 1.0,
        "min": 0.0,
        "percentile_00_5": 0.1,
        "percentile_99_5": 15.0,
        "std": 2.5,
    }
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    plans = {
        "dataset_name": "Dataset999_PredictBench",
        "plans_name": "nnUNetRecurPlans",
        "original_median_spacing_after_transp": spacing_zyx,
        "original_median_shape_after_transp": PATCH_ZYX,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_recur": {
                "data_identifier": "nnUNetRecurPlans_3d_recur",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH_ZYX,
                "median_image_size_in_voxels": PATCH_ZYX,
                "spacing": spacing_zyx,
                # as recur plan writes it since issue 9: the network reads CT and the converter's
                # patient-level PET z-score (channel 2), not the SUV channel (1) the SUVmax baseline reads
                "normalization_schemes": ["CTNormalization", "ZScoreNormalization", "NoNormalization"],
                "use_mask_for_norm": [False, False, False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": resample,
                "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
                "architecture": {
                    "network_class_name": "nnunet_recur.trainers.network.RecurUNet",
                    "arch_kwargs": {
                        "features_per_stage": [32, 64, 128, 256],
                        "input_channel_indices": [0, 2],
                    },
                    "_kw_requires_import": [],
                },
                "batch_dice": True,
            }
        },
        "experiment_planner_used": "bench/predict_speed.py",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": ct_stats, "1": pet_stats, "2": pet_stats},
    }
    dataset = {
        "name": "PredictBench",
        "channel_names": {"0": "CT", "1": "PET", "2": "PET_zscore_patient"},
        "labels": {"background": 0, "relapse": [1, 1]},
        "regions_class_order": [1],
        "numTraining": 1,
        "file_ending": ".nii.gz",
        "recur_crop": {"mode": "fixed", "size_voxels": BOX_XYZ, "padding": 0.0, "reference_spacing_mm": None},
    }
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    torch.manual_seed(0)
    weights = RecurUNet(input_channels=3, num_classes=1, input_channel_indices=[0, 2]).state_dict()
    # Random weights give salt-and-pepper maps no trained model makes (millions of one-voxel contours); a
    # zero output layer gives probability 0.5 everywhere in the crop instead. The forward pass costs the
    # same, and with --thresholds 0.3,0.5 the ROIs are the whole crop (the largest possible) and empty.
    weights["decoder.seg_layers.0.weight"].zero_()
    weights["decoder.seg_layers.0.bias"].zero_()
    for fold in range(n_folds):
        (folder / f"fold_{fold}").mkdir()
        torch.save(
            {
                "network_weights": weights,
                "trainer_name": "nnUNetTrainerRecur",
                "init_args": {"configuration": "3d_recur"},
                "inference_allowed_mirroring_axes": None,
            },
            folder / f"fold_{fold}" / "checkpoint_final.pth",
        )


def time_read(patient: Path) -> float:
    from nnunet_recur.dataset_conversion.dicom_series import read_image_series, scan_folder
    from nnunet_recur.dataset_conversion.rtstruct import read_rtstruct
    from nnunet_recur.dataset_conversion.suv import pet_series_to_suv

    start = time.perf_counter()
    found = scan_folder(patient)
    read_image_series(next(s for s in found if s.modality == "CT"))
    pet_series_to_suv(next(s for s in found if s.modality == "PT"))
    for series in (s for s in found if s.modality == "RTSTRUCT"):
        for path in series.files:
            read_rtstruct(path)
    return time.perf_counter() - start


class ForwardTimer:
    """Seconds spent inside the network's forward passes (forward pre/post hooks)."""

    def __init__(self, network) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._start = 0.0
        network.register_forward_pre_hook(self._before)
        network.register_forward_hook(self._after)

    def _before(self, module, inputs) -> None:
        self._start = time.perf_counter()

    def _after(self, module, inputs, output) -> None:
        self.seconds += time.perf_counter() - self._start
        self.calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folds", type=int, nargs="+", default=[1, 5], help="fold counts to time (1 = single)"
    )
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    import torch

    from nnunet_recur.prediction.inference import FoldPredictor
    from nnunet_recur.prediction.model import resolve_model
    from nnunet_recur.prediction.pipeline import PredictOptions, run_patient
    from nnunet_recur.synthetic.cohort import make_cohort

    work = args.work or Path(tempfile.mkdtemp(prefix="predict_speed_"))
    cohort = work / "cohort"
    make_cohort(cohort, 1, 0, "inhouse-dicom", "paper", False)
    patient = next((cohort / "patients").iterdir())
    rows = []
    for n_folds in args.folds:
        model_folder = work / f"model_{n_folds}" / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur"
        shutil.rmtree(model_folder.parent, ignore_errors=True)
        write_model(model_folder, n_folds, [2.0, 0.9765625, 0.9765625])
        model = resolve_model(model_folder)
        started = time.perf_counter()
        predictor = FoldPredictor(model, list(range(n_folds)), device="cpu")
        load_s = time.perf_counter() - started
        options = PredictOptions(thresholds=[0.3, 0.5])
        if not rows:
            run_patient(patient, work / "warmup", predictor, options)  # imports, first torch calls
        timer = ForwardTimer(predictor.predictor.network)
        result = run_patient(patient, work / f"out_{n_folds}", predictor, options)
        assert result.ok, result.message
        read_s = time_read(patient)
        floor = read_s + timer.seconds
        rows.append(
            {
                "folds": n_folds,
                "predict_s": round(result.seconds, 2),
                "read_s": round(read_s, 2),
                "forward_s": round(timer.seconds, 2),
                "forward_calls": timer.calls,
                "floor_s": round(floor, 2),
                "overhead_s": round(result.seconds - floor, 2),
                "ratio": round(result.seconds / floor, 3),
                "model_load_s": round(load_s, 2),
            }
        )
        print(
            f"folds {n_folds}: predict {result.seconds:.1f} s, floor {floor:.1f} s (read {read_s:.1f} + "
            f"{timer.calls} forward {timer.seconds:.1f}), ratio {result.seconds / floor:.2f} (target 1.5); "
            f"model load {load_s:.1f} s"
        )
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "crop_xyz": BOX_XYZ,
        "patch_zyx": PATCH_ZYX,
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(info, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
