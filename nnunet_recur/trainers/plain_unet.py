"""A second architecture: nnU-Net's own ``PlainConvUNet`` with instance norm at the paper's size.

Same four levels (32-64-128-256), two 3x3x3 convs per block and three pooling steps as RecurUNet, but
nnU-Net's building blocks: strided convs for down-sampling instead of max-pooling, conv ->
InstanceNorm3d(affine) -> LeakyReLU(0.01), nnU-Net's He initialisation (``InitWeights_He(1e-2)``). The plans
still name RecurUNet; this trainer builds its network from the fixed description below, so both architectures
share one plans file.
"""

from __future__ import annotations

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_recur.trainers.network import PAPER_FEATURES_PER_STAGE
from nnunet_recur.trainers.recur_trainer import nnUNetTrainerRecur

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
PLAIN_CONV_UNET_KWARGS = {
    "n_stages": len(PAPER_FEATURES_PER_STAGE),
    "features_per_stage": list(PAPER_FEATURES_PER_STAGE),
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * len(PAPER_FEATURES_PER_STAGE),
    "strides": [[1, 1, 1]] + [[2, 2, 2]] * (len(PAPER_FEATURES_PER_STAGE) - 1),
    "n_conv_per_stage": [2] * len(PAPER_FEATURES_PER_STAGE),
    "n_conv_per_stage_decoder": [2] * (len(PAPER_FEATURES_PER_STAGE) - 1),
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}
PLAIN_CONV_UNET_IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]


class nnUNetTrainerRecurPlainConvUNet(nnUNetTrainerRecur):
    """The paper's recipe with nnU-Net's PlainConvUNet (instance norm) instead of RecurUNet."""

    @staticmethod
    def build_network_architecture(
        plans_manager,
        configuration_manager,
        num_input_channels,
        num_output_channels,
        enable_deep_supervision=True,
    ):
        return get_network_from_plans(
            PLAIN_CONV_UNET,
            PLAIN_CONV_UNET_KWARGS,
            PLAIN_CONV_UNET_IMPORTS,
            num_input_channels,
            num_output_channels,
            allow_init=True,
            deep_supervision=enable_deep_supervision,
        )
