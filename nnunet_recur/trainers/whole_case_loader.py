"""A training batch without nnU-Net's per-sample bounding box, crop and pad when the patch is the whole case.

The paper trains on whole 128 x 224 x 160 crops. nnU-Net's ``nnUNetDataLoader.generate_train_batch`` still
draws a bounding box per sample (foreground-forced or random), slices the blosc2 array with it and pads;
with patch = case the box is the case, so all of that is a copy at best and, for a forced-foreground sample,
a shift (issue 9, item 1). :class:`WholeCaseBatchMixin` reads such a case whole (``data[:]`` decompresses
straight into the array the batch is built from) and falls back to nnU-Net's crop for any case whose shape
differs from the patch. The case choice stays ``self.get_indices()``, so the mixin combines with any sampling
rule (e.g. one permutation per epoch): ``class Loader(WholeCaseBatchMixin, SomeSamplingLoader)``.

bench/data_pipeline.py measures it against the stock loader (docs/benchmarks_trainers.md).
"""

from __future__ import annotations

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from threadpoolctl import threadpool_limits


class WholeCaseBatchMixin:
    """``generate_train_batch`` for a ``nnUNetDataLoader`` (sub)class: whole cases when shape == patch."""

    def _load_sample(self, key, sample_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        data, seg, seg_prev, properties = self._data.load_case(key)
        if seg_prev is not None:
            raise NotImplementedError("cascades are not used by the recur trainers")
        if tuple(data.shape[1:]) == tuple(self.final_patch_size):
            return torch.from_numpy(np.asarray(data[:], dtype=np.float32)), torch.from_numpy(
                np.asarray(seg[:], dtype=np.int16)
            )
        # any other shape: nnU-Net's own box, crop and pad (final patch size, no spatial augmentation)
        force_fg = self.get_do_oversample(sample_index)
        lbs, ubs = self.get_bbox(data.shape[1:], force_fg, properties["class_locations"])
        bbox = [[lb, ub] for lb, ub in zip(lbs, ubs, strict=True)]
        return (
            torch.from_numpy(crop_and_pad_nd(data, bbox, 0)).float(),
            torch.from_numpy(crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16),
        )

    def generate_train_batch(self) -> dict:
        keys = self.get_indices()
        data_all = seg_all = None
        with torch.no_grad(), threadpool_limits(limits=1, user_api=None):
            for index, key in enumerate(keys):
                image, segmentation = self._load_sample(key, index)
                if self.transforms is not None:
                    out = self.transforms(image=image, segmentation=segmentation)
                    image, segmentation = out["image"], out["segmentation"]
                if data_all is None:
                    data_all = torch.empty((self.batch_size, *image.shape), dtype=torch.float32)
                    seg_all = torch.empty((self.batch_size, *segmentation.shape), dtype=segmentation.dtype)
                data_all[index] = image
                seg_all[index] = segmentation
        return {"data": data_all, "target": seg_all, "keys": keys}


class WholeCaseDataLoader(WholeCaseBatchMixin, nnUNetDataLoader):
    """``nnUNetDataLoader`` (same constructor, same sampling) that reads a case whole when it is the patch."""


def deduplicated_regions(regions) -> list[tuple[int, ...]]:
    """Each region's label values once, in order: ``[1, 1]`` -> ``(1,)``.

    ``labels.sigmoid_region_labels`` writes a single label ``k`` as the region ``[k, k]`` (so nnU-Net reads it
    as a region). nnU-Net's ``ConvertSegmentationToRegionsTransform`` compares a one-value region with ``==``
    but a two-value one with ``torch.isin``, which at 128 x 224 x 160 is the most expensive step of a
    whole-case batch (bench/data_pipeline.py). The voxels selected are the same.
    """
    return [
        tuple(dict.fromkeys(int(v) for v in (region if isinstance(region, list | tuple) else [region])))
        for region in regions
    ]


def with_deduplicated_regions(transforms: ComposeTransforms) -> ComposeTransforms:
    """The same transforms; every ``ConvertSegmentationToRegionsTransform`` with deduplicated regions."""
    rebuilt = []
    for transform in transforms.transforms:
        if isinstance(transform, ConvertSegmentationToRegionsTransform):
            regions = [tuple(int(v) for v in region.tolist()) for region in transform.regions]
            transform = ConvertSegmentationToRegionsTransform(
                deduplicated_regions(regions), channel_in_seg=transform.channel_in_seg
            )
        rebuilt.append(transform)
    return ComposeTransforms(rebuilt)
