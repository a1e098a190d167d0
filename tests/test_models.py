"""The model zoo: ResNeXt's three forms agree, channel shuffle is a permutation, counts are right."""

import itertools
import re

import pytest
import torch

from groupconv import GroupConvError
from groupconv.models import (
    BUILTIN,
    DEFAULT_INPUT,
    ChannelShuffle,
    ResNeXtBlock,
    ShuffleUnit,
    alexnet,
    channel_shuffle,
    convert_block,
    mobilenet,
    resnext,
    shufflenet,
)


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so equal outputs are no accident of the init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(noise + 0.5 if name.endswith("running_var") else noise - 0.5)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("source, target", list(itertools.permutations("abc", 2)))
@pytest.mark.parametrize("stride, in_channels", [(1, 32), (2, 16)])
@pytest.mark.parametrize("training", [False, True])
def test_resnext_forms_compute_the_same_function(source, target, stride, in_channels, training):
    block = randomise(ResNeXtBlock(in_channels, 32, cardinality=4, bottleneck_width=3, form=source, stride=stride), 0)
    twin = convert_block(block.train(training), target)
    assert twin.form == target and twin.training == training
    x = torch.randn(3, in_channels, 7, 7, requires_grad=True)
    y, y_twin = block(x), twin(x)
    torch.testing.assert_close(y_twin, y, rtol=1e-5, atol=1e-5)
    grad_output = torch.randn_like(y)
    (grad_x,) = torch.autograd.grad(y, x, grad_output)
    (grad_x_twin,) = torch.autograd.grad(y_twin, x, grad_output)
    torch.testing.assert_close(grad_x_twin, grad_x, rtol=1e-5, atol=1e-5)


def test_resnext_weight_gradients_agree_across_forms():
    """Parameter gradients of form (a), brought to form (c)'s layout, equal form (c)'s.

    In float64: training-mode BatchNorm's backward cancels large terms, which leaves
    float32 weight gradients only ~1e-4 apart between equivalent summation orders.
    """
    a = randomise(ResNeXtBlock(16, 16, cardinality=4, bottleneck_width=2, form="a"), 1).double()
    c = convert_block(a, "c")
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a(x).square().sum().backward()
    c(x).square().sum().backward()
    grads_a = {name: p.grad for name, p in a.named_parameters()}
    grouped_3x3 = torch.cat([grads_a[f"paths.{i}.1.0.weight"] for i in range(4)])
    torch.testing.assert_close(c.transform[0].weight.grad, grouped_3x3, rtol=1e-10, atol=1e-10)
    expand = torch.cat([grads_a[f"expand.{i}.weight"] for i in range(4)], dim=1)
    torch.testing.assert_close(c.expand[0].weight.grad, expand, rtol=1e-10, atol=1e-10)


def test_form_c_holds_one_grouped_convolution():
    block = ResNeXtBlock(64, 64, cardinality=32, bottleneck_width=4, form="c")
    conv = block.transform[0]
    assert (conv.in_channels, conv.out_channels, conv.groups) == (128, 128, 32)
    assert len(ResNeXtBlock(64, 64, cardinality=32, bottleneck_width=4, form="a").paths) == 32


def test_channel_shuffle_is_a_permutation_and_inverts():
    x = torch.arange(2 * 12 * 2 * 2, dtype=torch.float32).view(2, 12, 2, 2)
    for groups in (1, 2, 3, 4, 6, 12):
        shuffled = channel_shuffle(x, groups)
        order = shuffled[0, :, 0, 0].div(4).long().tolist()  # channel c starts at value 4c
        assert sorted(order) == list(range(12))
        expected = [g * (12 // groups) + i for i in range(12 // groups) for g in range(groups)]
        assert order == expected
        assert torch.equal(channel_shuffle(shuffled, 12 // groups), x)


def test_channel_shuffle_rejects_indivisible_groups():
    with pytest.raises(
        GroupConvError, match=r"12 channels are not divisible by groups=5; valid groups: 1, 2, 3, 4, 6, 12"
    ):
        channel_shuffle(torch.zeros(1, 12, 2, 2), 5)


def conv_params(c_in, c_out, k, groups=1, bias=True):
    return c_out * (c_in // groups) * k * k + (c_out if bias else 0)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_alexnet_parameters_by_hand(groups):
    # width 0.5: convs 48, 128, 192, 192, 128; classifier 512 hidden; 28 -> 14 -> 7 -> 3 after pools
    expected = (
        conv_params(1, 48, 5) + conv_params(48, 128, 5, groups) + conv_params(128, 192, 3)
        + conv_params(192, 192, 3, groups) + conv_params(192, 128, 3, groups)
        + (128 * 3 * 3 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)
    )  # fmt: skip
    assert sum(p.numel() for p in alexnet(groups=groups).parameters()) == expected


def test_alexnet_groups_save_what_conv2_4_5_predict():
    from torch.utils.flop_counter import FlopCounterMode

    def count(model):
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 1, 28, 28))
        return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2

    params = {g: count(alexnet(groups=g).eval()) for g in (1, 2, 4)}
    # conv2 (48->128, 5x5 at 14x14), conv4 (192->192, 3x3 at 7x7), conv5 (192->128, 3x3 at 7x7)
    dense_weights = 48 * 128 * 25 + 192 * 192 * 9 + 192 * 128 * 9
    dense_macs = 48 * 128 * 25 * 14 * 14 + (192 * 192 * 9 + 192 * 128 * 9) * 7 * 7
    for groups in (2, 4):
        saved_params = params[1][0] - params[groups][0]
        saved_macs = params[1][1] - params[groups][1]
        assert saved_params == dense_weights - dense_weights // groups
        assert saved_macs == dense_macs - dense_macs // groups


def test_shufflenet_grouped_layers_and_output():
    model = shufflenet(groups=3)
    grouped = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and 1 < m.groups < m.in_channels]
    assert grouped and all(m.groups == 3 and m.kernel_size == (1, 1) for m in grouped)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mobilenet_depthwise_layers():
    depthwise = [m for m in mobilenet().modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 5 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_models_run_on_their_default_input(name):
    model = BUILTIN[name]().eval()
    assert model(torch.zeros(DEFAULT_INPUT[name])).shape == (DEFAULT_INPUT[name][0], 10)
    assert any(type(m).__module__ == "groupconv.nn" for m in model.modules())


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("width", [0.05, 0.125, 0.25])
def test_shufflenet_builds_at_narrow_widths(groups, width):
    """`groupconv train --model shufflenet` uses width 0.125: a stride-2 unit must still grow its input."""
    assert shufflenet(groups, width=width)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("groups, channels", [(2, 4), (2, 12), (4, 16), (4, 32), (8, 64)])
def test_after_one_shuffle_every_output_group_reads_every_input_group(groups, channels):
    """It can when each group holds at least ``groups`` channels (``channels >= groups**2``)."""
    source_group = torch.arange(channels).div(channels // groups, rounding_mode="floor")  # input group of each channel
    shuffled = ChannelShuffle(groups)(source_group.view(1, channels, 1, 1).float()).flatten().long()
    for output_group in shuffled.view(groups, channels // groups):  # what each group of the next layer reads
        assert sorted(set(output_group.tolist())) == list(range(groups))


def test_the_project_has_one_shuffle_layer_and_it_is_pytorchs():
    assert ChannelShuffle is torch.nn.ChannelShuffle
    unit = ShuffleUnit(32, 32, groups=4)
    assert isinstance(unit.branch.shuffle, torch.nn.ChannelShuffle) and unit.branch.shuffle.groups == 4


def input_groups_reaching(unit: ShuffleUnit, groups: int, output_group: int) -> set[int]:
    """Which input channel groups the branch's output group depends on, read off the gradient."""
    x = torch.randn(1, unit.branch.compress.in_channels, 5, 5, requires_grad=True)
    y = unit.branch(x)
    size = y.shape[1] // groups
    y[:, output_group * size : (output_group + 1) * size].sum().backward()
    reached = x.grad.abs().sum((0, 2, 3)).view(groups, -1).sum(1) > 0
    return set(torch.nonzero(reached).flatten().tolist())


@pytest.mark.parametrize("groups, channels", [(4, 64), (8, 256)])  # bottleneck channels / groups >= groups
def test_without_the_shuffle_a_group_reads_only_its_own_group(groups, channels):
    torch.manual_seed(0)
    shuffled = ShuffleUnit(channels, channels, groups).eval()
    plain = ShuffleUnit(channels, channels, groups, shuffle=False).eval()
    assert isinstance(plain.branch.shuffle, torch.nn.Identity)
    for group in range(groups):
        assert input_groups_reaching(plain, groups, group) == {group}
        assert input_groups_reaching(shuffled, groups, group) == set(range(groups))


def test_shufflenet_switch_keeps_the_parameters():
    on, off = shufflenet(4, width=0.25), shufflenet(4, width=0.25, shuffle=False)
    assert sum(p.numel() for p in on.parameters()) == sum(p.numel() for p in off.parameters())
    assert not any(isinstance(m, torch.nn.ChannelShuffle) for m in off.modules())


def test_the_shuffle_experiments_network_can_mix_every_group_in_one_shuffle():
    """groups=4 at width 0.25: every shuffle sees at least 4 channels per group (groups=8 there would see 3)."""
    shuffles = [m for m in shufflenet(4, width=0.25).modules() if isinstance(m, ShuffleUnit)]
    assert all(unit.branch.compress.out_channels // 4 >= 4 for unit in shuffles)
    narrow = [m for m in shufflenet(8, width=0.25).modules() if isinstance(m, ShuffleUnit)]
    assert min(unit.branch.compress.out_channels // 8 for unit in narrow) == 3


def test_alexnet_widen_scales_every_width_to_a_multiple_of_groups():
    model = alexnet(groups=2, width=0.125, widen=1.115)  # 16-32-48-48-32, hidden 128, times 1.115
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [18, 36, 54, 54, 36] and model.classifier.fc7.out_features == 143
    with pytest.raises(GroupConvError, match=r"widen=0\.5 would narrow the network"):
        alexnet(widen=0.5)


def test_alexnet_conv1_channels_sets_conv1_alone():
    model = alexnet(groups=2, in_channels=3, image_size=32, width=0.25, conv1_channels=48)
    assert model.features.conv1.out_channels == 48 and model.features.conv2.in_channels == 48
    assert model.features.conv2.out_channels == 64
    with pytest.raises(GroupConvError, match="conv1_channels=47 must be divisible by groups=2"):
        alexnet(groups=2, conv1_channels=47)


def test_resnext_fractional_bottleneck_width_rounds_per_stage():
    model = resnext(cardinality=2, bottleneck_width=16.25, stages=((32, 2), (64, 2), (128, 2)))
    assert [model.get_submodule(f"block{i}").bottleneck_width for i in (1, 2, 3)] == [16, 32, 65]
    with pytest.raises(GroupConvError, match=r"bottleneck_width=0\.5 is below one channel"):
        resnext(bottleneck_width=0.5)


def test_resnext_constant_width_doubles_the_cardinality_instead():
    model = resnext(cardinality=8, bottleneck_width=4, constant_width=True)
    grouped = [model.get_submodule(f"block{i}.transform.0") for i in (1, 2, 3)]
    assert [(conv.groups, conv.in_channels // conv.groups) for conv in grouped] == [(8, 4), (16, 4), (32, 4)]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: resnext(stages=()), "stages=() has no stage"),
        (lambda: shufflenet(repeats=(0, 0, 0)), "every stage needs at least one unit"),
        (lambda: shufflenet(repeats=(-5, 1, 1)), "every stage needs at least one unit"),
    ],
)
def test_builders_refuse_stages_that_cannot_be_built(build, message):
    with pytest.raises(GroupConvError, match=re.escape(message)):
        build()
