"""RecurUNet: the paper's parameter count, the layout nnU-Net expects, He init, a torch-only import."""

import subprocess
import sys

import pytest
import torch

from nnunet_recur.trainers.network import RecurUNet, count_trainable_parameters, published_layer_count


def test_parameter_count_is_the_papers_5_6_million():
    assert count_trainable_parameters(RecurUNet(input_channels=2, num_classes=1)) == 5_600_577


def test_layers_counted_as_a_forward_hook_summary_of_the_authors_net_are_the_papers_65():
    assert published_layer_count(RecurUNet(input_channels=2, num_classes=1)) == 65


def test_five_levels_give_the_published_scripts_22_6_million():
    net = RecurUNet(input_channels=2, num_classes=1, features_per_stage=(32, 64, 128, 256, 512))
    assert count_trainable_parameters(net) == 22_576_193


def test_output_has_one_channel_at_input_size():
    net = RecurUNet(input_channels=2, num_classes=1).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 2, 16, 24, 32))
    assert out.shape == (1, 1, 16, 24, 32)


def test_sizes_not_divisible_by_8_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="multiple of 8"):
        RecurUNet()(torch.zeros(1, 2, 12, 16, 16))


def test_layout_matches_what_nnunet_touches():
    net = RecurUNet(input_channels=2, num_classes=1, deep_supervision=False)
    keys = set(net.state_dict())
    assert {"decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"} <= keys
    assert [k for k in keys if ".seg_layers." in k] == [
        k for k in keys if k.startswith("decoder.seg_layers.0")
    ]
    assert net.decoder.deep_supervision is False
    net.decoder.deep_supervision = True  # what nnU-Net's set_deep_supervision_enabled does
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 2, 16, 16, 16))
    assert isinstance(out, list) and out[0].shape == (1, 1, 16, 16, 16)


def test_blocks_are_conv_leakyrelu_instancenorm_without_affine():
    block = RecurUNet().encoder.stages[0]
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv3d", "LeakyReLU", "InstanceNorm3d"] * 2
    assert block[1].negative_slope == pytest.approx(0.1)
    assert block[2].affine is False and block[0].padding == (1, 1, 1)


def test_he_initialisation_gaussian_variance_two_over_fan_in_and_zero_bias():
    torch.manual_seed(0)
    net = RecurUNet()
    conv = net.encoder.stages[3][3]  # 256 -> 256, fan_in = 256 * 27
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 27)) ** 0.5, rel=0.02)
    assert all(
        float(m.bias.abs().max()) == 0.0
        for m in net.modules()
        if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
    )


def test_nnunet_builds_it_from_the_plans_dotted_path():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    net = get_network_from_plans(
        "nnunet_recur.trainers.network.RecurUNet",
        {"features_per_stage": [32, 64, 128, 256]},
        [],
        input_channels=2,
        output_channels=1,
        deep_supervision=False,
    )
    assert isinstance(net, RecurUNet) and count_trainable_parameters(net) == 5_600_577


def test_importing_the_package_needs_torch_but_not_nnunetv2():
    code = (
        "import sys, nnunet_recur.trainers as t; t.RecurUNet();"
        "bad = [m for m in sys.modules if m.startswith('nnunetv2') or m.startswith('batchgenerators')];"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
