"""RecurUNet: the paper's instance-norm 3D U-Net (Kutnar et al. 2023, II.D), laid out like nnU-Net's nets.

Architecture (authors' published ``netgen.py`` with ``n_blocks=4``, ``start_filters=32``,
``activation='leaky'``, ``normalization='instance'``, ``conv_mode='same'``, ``up_mode='transposed'``):

* 4 resolution levels with 32-64-128-256 filters; level 4 (256 filters) is the bottleneck, so the input is
  max-pooled three times and every spatial size must be a multiple of 8.
* Every block (encoder and decoder alike) is twice: Conv3d 3x3x3 (padding 1 = "same", bias) -> LeakyReLU(0.1)
  -> InstanceNorm3d(affine=False). Instance norm without affine weights adds no parameters.
* Down: MaxPool3d(2). Up: ConvTranspose3d(kernel 2, stride 2) -> LeakyReLU(0.1) -> InstanceNorm3d, then
  concatenation with the skip (up-sampled channels first, as in ``netgen.py``) and a block of 2 convs (3
  decoder blocks, each 2 convs).
* Output: Conv3d 1x1x1 -> ``num_classes`` logits (one sigmoid channel for the region-based relapse label).
* He (Kaiming) initialisation from a Gaussian with variance 2/fan_in (paper text; the scripts used the uniform
  variant) and zero biases.

Trainable parameters, counted (conv: in*out*k^3 + out): encoder 1,760 + 27,680 + 55,360 + 110,656 + 221,312 +
442,496 + 884,992 + 1,769,728 = 3,513,984; decoder per level (up-conv k=2, conv 2c->c, conv c->c): 262,272 +
884,864 + 442,496 (c=128), 65,600 + 221,248 + 110,656 (c=64), 16,416 + 55,328 + 27,680 (c=32) = 2,086,560;
head 33. Total **5,600,577** (the paper's "5.6 million"; with n_blocks=5 the same code gives 22,576,193).
``netgen.UpBlock`` also builds a 1x1 ``conv0`` that is never called with transposed up-sampling (43,232
parameters that never receive a gradient); it is left out here.

"Layers", as the paper counts them (65), are the rows of a forward-hook summary (torchsummary's rule) of the
authors' module tree: every module *called* in the forward pass except the root and plain containers. In
``netgen.py`` that is each conv, activation, norm, pool and up-conv call, plus the ``DownBlock`` /
``UpBlock`` wrappers and the ``Concatenate`` module; the unused ``conv0`` is never called, so it counts
neither as a layer nor (in such a summary) as parameters. :func:`published_layer_count` counts the same
calls on our module tree (which has no such wrappers) and adds them: 65 for 4 levels, 84 for the released
scripts' 5 levels (:class:`PublishedCodeUNet`, 22,576,193 parameters).

Layout for nnU-Net: ``encoder`` and ``decoder`` sub-modules, ``decoder.deep_supervision`` (nnU-Net's
``set_deep_supervision_enabled`` writes it), the output conv at ``decoder.seg_layers.0`` (so nnU-Net's
``load_pretrained_weights`` skips the head when the class count differs), and nnU-Net's keyword names
``input_channels``, ``num_classes``, ``deep_supervision`` so plans can build it through
``get_network_from_plans``. This module imports torch only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PAPER_FEATURES_PER_STAGE: tuple[int, ...] = (32, 64, 128, 256)
PUBLISHED_CODE_FEATURES_PER_STAGE: tuple[int, ...] = (32, 64, 128, 256, 512)  # netgen.UNet(n_blocks=5)
LEAKY_SLOPE = 0.1


# ConvBlock and UpSample are alike in shape (layer -> LeakyReLU -> InstanceNorm as an nn.Sequential) but
# are different layer stacks of the released net (two 3x3x3 convolutions; one transposed convolution).
class ConvBlock(nn.Sequential):
    """Two times conv 3x3x3 -> LeakyReLU(0.1) -> InstanceNorm3d(affine=False)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.InstanceNorm3d(out_channels, affine=False),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.InstanceNorm3d(out_channels, affine=False),
        )


class UpSample(nn.Sequential):
    """ConvTranspose3d(kernel 2, stride 2) -> LeakyReLU(0.1) -> InstanceNorm3d(affine=False)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.ConvTranspose3d(in_channels, out_channels, kernel_size=2, stride=2, bias=True),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.InstanceNorm3d(out_channels, affine=False),
        )


class RecurEncoder(nn.Module):
    """Conv blocks with max-pooling between them; returns every level's output (last: the bottleneck)."""

    def __init__(self, input_channels: int, features_per_stage: Sequence[int]):
        super().__init__()
        channels = [input_channels, *features_per_stage]
        self.stages = nn.ModuleList(
            ConvBlock(channels[i], channels[i + 1]) for i in range(len(features_per_stage))
        )
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for index, stage in enumerate(self.stages):
            if index > 0:
                x = self.pool(x)
            x = stage(x)
            skips.append(x)
        return skips


class RecurDecoder(nn.Module):
    """Up-sampling, concatenation with the skip, conv block; a single 1x1x1 output conv in ``seg_layers``."""

    def __init__(self, features_per_stage: Sequence[int], num_classes: int, deep_supervision: bool):
        super().__init__()
        features = list(features_per_stage)
        pairs = list(
            zip(features[::-1][:-1], features[::-1][1:], strict=True)
        )  # (256,128), (128,64), (64,32)
        self.upsamplers = nn.ModuleList(UpSample(high, low) for high, low in pairs)
        self.stages = nn.ModuleList(ConvBlock(2 * low, low) for _, low in pairs)
        self.seg_layers = nn.ModuleList([nn.Conv3d(features[0], num_classes, kernel_size=1, bias=True)])
        # nnU-Net's trainer toggles this; the network has no auxiliary heads (see RecurUNet.forward).
        self.deep_supervision = deep_supervision

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        for upsample, stage, skip in zip(self.upsamplers, self.stages, skips[-2::-1], strict=True):
            x = stage(torch.cat((upsample(x), skip), dim=1))
        logits = self.seg_layers[0](x)
        # Deep supervision has no lower-resolution heads here: the full-resolution output alone, as a list.
        return [logits] if self.deep_supervision else logits


class RecurUNet(nn.Module):
    """The paper's 3D U-Net (5,600,577 parameters at the default 32-64-128-256 filters).

    Example: ``RecurUNet(input_channels=2, num_classes=1)(torch.zeros(1, 2, 32, 48, 48)).shape == (1, 1, 32,
    48, 48)``.
    """

    def __init__(
        self,
        input_channels: int = 2,
        num_classes: int = 1,
        deep_supervision: bool = False,
        features_per_stage: Sequence[int] = PAPER_FEATURES_PER_STAGE,
        input_channel_indices: Sequence[int] | None = None,
    ):
        super().__init__()
        self.features_per_stage = tuple(int(f) for f in features_per_stage)
        # the input channels the network reads (None: all), e.g. CT and the patient-level z-scored PET of a
        # CT / PET-SUV / PET-z dataset (planning.py); the SUV channel stays in the images for the baselines
        self.input_channel_indices = (
            None if input_channel_indices is None else [int(i) for i in input_channel_indices]
        )
        used = input_channels if self.input_channel_indices is None else len(self.input_channel_indices)
        self.encoder = RecurEncoder(used, self.features_per_stage)
        self.decoder = RecurDecoder(self.features_per_stage, num_classes, deep_supervision)
        self.divisor = 2 ** (len(self.features_per_stage) - 1)
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if any(size % self.divisor for size in x.shape[2:]):
            raise ValueError(
                f"RecurUNet pools {len(self.features_per_stage) - 1} times: every spatial size must be a "
                f"multiple of {self.divisor}, got {tuple(x.shape[2:])}"
            )
        if self.input_channel_indices is not None:
            x = x[:, self.input_channel_indices]
        return self.decoder(self.encoder(x))


class PublishedCodeUNet(RecurUNet):
    """The net the authors' released scripts build (``netgen.UNet(n_blocks=5, start_filters=32)``).

    RecurUNet with a fifth level of 512 filters: 22,576,193 parameters, 84 layers (see the module docstring),
    four max-poolings, so every spatial size must be a multiple of 16 (the paper's 128 x 224 x 160 is). The
    paper's text describes the 4-level net (:class:`RecurUNet`); ``nnUNetTrainerRecurPublishedCode*`` use this
    one. Plans name it by dotted path like RecurUNet: ``nnunet_recur.trainers.network.PublishedCodeUNet``.
    """

    def __init__(
        self,
        input_channels: int = 2,
        num_classes: int = 1,
        deep_supervision: bool = False,
        features_per_stage: Sequence[int] = PUBLISHED_CODE_FEATURES_PER_STAGE,
        input_channel_indices: Sequence[int] | None = None,
    ):
        super().__init__(
            input_channels, num_classes, deep_supervision, features_per_stage, input_channel_indices
        )


def published_layer_count(network: RecurUNet) -> int:
    """The paper's "layers": module calls in one forward pass, counted as a torchsummary table of the authors'
    ``netgen.UNet`` would list them (65 for the paper's 4 levels, 84 for 5).

    Hooks count every call of a leaf module here (conv, LeakyReLU, InstanceNorm, max-pool, up-conv, output
    conv); then the modules netgen has and this layout does not are added: one ``DownBlock`` per encoder
    level, and one ``UpBlock`` plus one ``Concatenate`` per decoder level. Runs a forward pass on a small zero
    input.
    """
    calls = 0

    def count(_module, _inputs, _output):
        nonlocal calls
        calls += 1

    leaves = [m for m in network.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    levels = len(network.features_per_stage)
    size = 2 * network.divisor  # the smallest input whose bottleneck is 2 voxels wide
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            parameter = next(network.parameters())
            indices = network.input_channel_indices
            network(
                torch.zeros(
                    1,
                    network.encoder.stages[0][0].in_channels if indices is None else max(indices) + 1,
                    size,
                    size,
                    size,
                    dtype=parameter.dtype,
                    device=parameter.device,
                )
            )
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    return calls + levels + 2 * (levels - 1)


def he_initialise(module: nn.Module) -> None:
    """He (Kaiming) normal weights, variance 2/fan_in, and zero biases for every (transposed) convolution."""
    for sub in module.modules():
        if isinstance(sub, nn.Conv3d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(sub.weight, mode="fan_in", nonlinearity="relu")
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


def count_trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
