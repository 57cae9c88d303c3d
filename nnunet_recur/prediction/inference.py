"""nnU-Net's `nnUNetPredictor`, in-process, on one prepared (cropped) patient: one probability map per fold.

The cropped channels named in the model's dataset.json (CT, PET, the patient-level z-scored PET) are handed
over as nnU-Net's SimpleITK reader would read them from the files that `recur convert new-patient` writes
(float32 channels in dataset.json order, spacing reversed to z, y, x), so the result equals
`nnUNetv2_predict --save_probabilities` on those files. The case is preprocessed once; each fold's weights
then give their own logits and their own sigmoid probability (the ensemble mean and spread are taken over
probabilities, per seed, in `ensemble`). Test-time mirroring is off unless asked for (`tta`), and then only
along the axes the trainer allows (nnU-Net reads them from the checkpoint).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np

from nnunet_recur.prediction.model import Model, ModelError


def pick_device(device: str):
    """The torch device for ``--device`` (auto|cpu|cuda|mps, :mod:`nnunet_recur.device_choice`)."""
    import torch

    from nnunet_recur.device_choice import DeviceError, resolve_device

    try:
        return torch.device(resolve_device(device))
    except DeviceError as exc:
        raise ModelError(str(exc)) from exc


@dataclass
class FoldPredictor:
    """One nnUNetPredictor holding the weights of `folds`; built once, reused for every patient."""

    model: Model
    folds: list[int]
    device: str = "auto"
    tta: bool = False
    tile_step_size: float = 0.5

    def __post_init__(self) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_recur.nnunet_names import EXT_TRAINER_VARIABLE, ext_trainer_value

        # nnU-Net finds the trainer class named in the checkpoint through this variable: no `recur env` needed
        os.environ[EXT_TRAINER_VARIABLE] = ext_trainer_value(os.environ)
        torch_device = pick_device(self.device)
        self.predictor = nnUNetPredictor(
            tile_step_size=self.tile_step_size,
            use_gaussian=True,
            use_mirroring=self.tta,
            perform_everything_on_device=torch_device.type == "cuda",
            device=torch_device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        try:
            self.predictor.initialize_from_trained_model_folder(
                str(self.model.folder), use_folds=tuple(self.folds), checkpoint_name=self.model.checkpoint
            )
        except Exception as exc:  # a trainer class nnU-Net cannot find, a damaged checkpoint, ...
            raise ModelError(
                f"{self.model.folder}: cannot load the model ({type(exc).__name__}: {exc})"
            ) from exc
        self.fold_parameters = list(self.predictor.list_of_parameters)
        heads = self.predictor.label_manager.num_segmentation_heads
        if not self.predictor.label_manager.has_regions or heads != 1:
            raise ModelError(
                f"{self.model.folder}: expected one sigmoid output (relapse), the model has {heads} "
                f"{'region' if self.predictor.label_manager.has_regions else 'softmax'} output(s)"
            )

    @property
    def mirroring_axes(self):
        return self.predictor.allowed_mirroring_axes if self.tta else None

    def predict(self, images: dict) -> list[np.ndarray]:
        """Relapse probability (float32, z, y, x, on the crop) for each fold, in `self.folds` order."""
        return self.predict_with_logits(images, with_logits=False)[0]

    def predict_with_logits(
        self, images: dict, with_logits: bool = True
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Per fold, the probability (as `predict`) and, with `with_logits`, the logits on the same grid
        (float32; nnU-Net's resampling of the logits, then no sigmoid; -inf where the probability is 0,
        i.e. outside nnU-Net's non-zero crop), which rank voxels without the float32 saturation at 1.0."""
        import torch
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        from nnunet_recur.prediction.model import CHANNEL_IMAGES

        channels = self.model.dataset_json["channel_names"]
        ct = images["ct"]
        data = np.stack(
            [_as_nnunet_reads(images[CHANNEL_IMAGES[channels[str(i)]]]) for i in range(len(channels))]
        ).astype(np.float32)
        properties = {
            "sitk_stuff": {
                "spacing": ct.GetSpacing(),
                "origin": ct.GetOrigin(),
                "direction": ct.GetDirection(),
            },
            "spacing": list(ct.GetSpacing())[::-1],
        }
        p = self.predictor
        adapter = PreprocessAdapterFromNpy(
            [data],
            [None],
            [properties],
            [None],
            p.plans_manager,
            p.dataset_json,
            p.configuration_manager,
            num_threads_in_multithreaded=1,
            verbose=False,
        )
        item = next(adapter)
        probabilities, logit_maps = [], []
        identity = copy.copy(p.label_manager)
        identity.inference_nonlin = lambda x: x  # logits pass through nnU-Net's own resampling and uncrop
        for parameters in self.fold_parameters:
            p.list_of_parameters = [parameters]
            with torch.inference_mode():
                logits = p.predict_logits_from_preprocessed_data(item["data"]).cpu()
            _, probability = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits,
                p.plans_manager,
                p.configuration_manager,
                p.label_manager,
                item["data_properties"],
                return_probabilities=True,
            )
            probabilities.append(np.asarray(probability[0], dtype=np.float32))
            if with_logits:
                _, resampled = convert_predicted_logits_to_segmentation_with_correct_shape(
                    logits,
                    p.plans_manager,
                    p.configuration_manager,
                    identity,
                    item["data_properties"],
                    return_probabilities=True,
                )
                logit_map = np.asarray(resampled[0], dtype=np.float32)
                logit_map[probabilities[-1] == 0] = -np.inf
                logit_maps.append(logit_map)
        p.list_of_parameters = self.fold_parameters
        return probabilities, (logit_maps if with_logits else None)


def _as_nnunet_reads(image) -> np.ndarray:
    """The array nnU-Net's SimpleITKIO gets from the NIfTI file of `image` (written, then read back)."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image).astype(np.float32)


def ensemble(probabilities: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean probability over folds and, with several folds, the voxel-wise standard deviation (ddof 0)."""
    stack = np.stack(probabilities).astype(np.float32)
    mean = stack.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = stack.std(axis=0, dtype=np.float64).astype(np.float32) if len(probabilities) > 1 else None
    return mean, std
