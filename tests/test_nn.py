"""groupconv.nn against torch.nn: constructor, initialisation, state_dict, repr, convert."""

import copy
import inspect

import pytest
import torch

import groupconv

LAYERS = [  # (class name, positional arguments, keyword arguments, input shape)
    ("Conv1d", (6, 9, 3), dict(groups=3, stride=2), (2, 6, 11)),
    ("Conv2d", (4, 8, 3), dict(groups=2, padding="same", padding_mode="circular", bias=False), (2, 4, 7, 6)),
    ("Conv3d", (4, 4, (1, 2, 3)), dict(groups=4, dilation=2, padding=(0, 1, 2)), (1, 4, 5, 6, 7)),
    ("ConvTranspose1d", (4, 6, 3), dict(groups=2, stride=2, output_padding=1), (2, 4, 5)),
    ("ConvTranspose2d", (6, 3, (2, 3)), dict(groups=3, stride=(2, 1), padding=1, dilation=2), (1, 6, 4, 4)),
    ("ConvTranspose3d", (2, 4, 2), dict(groups=2, bias=False), (1, 2, 3, 3, 3)),
]
NAMES = [layer[0] for layer in LAYERS]


def both(name, args, kwargs, seed=0):
    """The torch.nn layer and groupconv's twin, each made right after seeding the RNG."""
    torch.manual_seed(seed)
    reference = getattr(torch.nn, name)(*args, **kwargs)
    torch.manual_seed(seed)
    ours = getattr(groupconv.nn, name)(*args, **kwargs)
    return reference, ours


@pytest.mark.parametrize("name, args, kwargs, input_shape", LAYERS, ids=NAMES)
def test_same_initialisation_parameters_and_repr(name, args, kwargs, input_shape):
    reference, ours = both(name, args, kwargs)
    assert isinstance(ours, getattr(torch.nn, name))
    assert repr(ours) == repr(reference)
    assert ours.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key  # same RNG draws: same distribution


@pytest.mark.parametrize("name, args, kwargs, input_shape", LAYERS, ids=NAMES)
def test_state_dict_loads_both_ways_and_outputs_agree(name, args, kwargs, input_shape):
    reference, _ = both(name, args, kwargs, seed=1)
    _, ours = both(name, args, kwargs, seed=2)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(input_shape)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)
    fresh, _ = both(name, args, kwargs, seed=3)
    fresh.load_state_dict(ours.state_dict())
    torch.testing.assert_close(fresh(x), ours(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_constructor_signature_is_torchs(name):
    assert inspect.signature(getattr(groupconv.nn, name)) == inspect.signature(getattr(torch.nn, name))


def test_device_and_dtype_arguments():
    conv = groupconv.nn.Conv2d(4, 8, 3, groups=2, device="cpu", dtype=torch.float64)
    assert conv.weight.dtype == torch.float64 and conv.weight.device.type == "cpu"


def test_extra_repr_shows_only_non_default_arguments():
    assert repr(groupconv.nn.Conv2d(4, 8, 3)) == "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1))"
    assert "groups=2" in repr(groupconv.nn.Conv2d(4, 8, 3, groups=2))


def test_transposed_output_size_argument():
    torch.manual_seed(0)
    reference = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    ours = groupconv.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 4, 5, 5)
    for size in ([11, 11], [12, 11], [12, 12]):
        torch.testing.assert_close(ours(x, output_size=size), reference(x, output_size=size))
    with pytest.raises(groupconv.GroupConvError, match=r"output_size=\[14, 14\]"):
        ours(x, output_size=[14, 14])


def test_an_output_padding_that_output_size_replaces_is_checked_only_when_used():
    """torch.nn builds a transposed layer with any output_padding and checks it in forward, unless output_size
    stands in for it."""
    reference = torch.nn.ConvTranspose2d(4, 4, 3, output_padding=1)
    ours = groupconv.nn.convert(copy.deepcopy(reference))
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(ours(x, output_size=[7, 7]), reference(x, output_size=[7, 7]))
    with pytest.raises(RuntimeError, match=r"output_padding=\(1, 1\) must be smaller than either stride"):
        groupconv.nn.ConvTranspose2d(4, 4, 3, output_padding=1)(x)


def small_grouped_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 12, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(12, 12, 3, groups=4, padding=1, padding_mode="reflect")),
        torch.nn.Conv2d(12, 12, 3, groups=12, stride=2),  # depthwise
        torch.nn.ConvTranspose2d(12, 6, 2, stride=2, groups=3),
    )


def test_convert_swaps_every_conv_and_keeps_weights_and_results():
    model = small_grouped_model()
    x = torch.randn(2, 3, 9, 9)
    expected = model(x)
    parameters = list(model.parameters())
    converted = groupconv.nn.convert(model)
    assert converted is model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert len(convs) == 4 and all(type(m).__module__ == "groupconv.nn" for m in convs)
    assert all(a is b for a, b in zip(parameters, model.parameters()))  # same Parameter objects
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_convert_gradients_match_torch():
    reference, converted = small_grouped_model(), groupconv.nn.convert(small_grouped_model())
    x = torch.randn(2, 3, 9, 9)
    reference(x).square().sum().backward()
    converted(x).square().sum().backward()
    for (name, p), q in zip(reference.named_parameters(), converted.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_convert_a_bare_conv_module():
    conv = torch.nn.Conv1d(4, 4, 3, groups=4)
    assert type(groupconv.nn.convert(conv)) is groupconv.nn.Conv1d


class _Scaled(torch.nn.Conv2d):
    """A user's subclass that changes the computation: convert must leave it to PyTorch."""

    def forward(self, input):
        return 2 * super().forward(input)


class _Initialised(torch.nn.Conv1d):
    """A user's subclass that only changes the initialisation."""

    def reset_parameters(self):
        torch.nn.init.ones_(self.weight)


def test_convert_then_revert_gives_torch_layers_with_identical_state_and_outputs():
    model = torch.nn.Sequential(small_grouped_model(), _Scaled(6, 6, 1, groups=3))
    x = torch.randn(2, 3, 9, 9)
    classes = [type(m) for m in model.modules()]
    expected, state = model(x), {k: v.clone() for k, v in model.state_dict().items()}
    groupconv.nn.revert(groupconv.nn.convert(model))
    assert [type(m) for m in model.modules()] == classes
    assert model.state_dict().keys() == state.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(model(x), expected)  # torch computes again: bit for bit


def test_conversion_reports_what_convert_did_and_why_subclasses_are_skipped():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), _Scaled(4, 4, 1), _Initialised(4, 4, 1))
    report = groupconv.nn.conversion(groupconv.nn.convert(model))
    assert report.groupconv == ("0",)
    assert report.pytorch == {
        "1": "_Scaled subclasses torch.nn.Conv2d and overrides forward; groupconv leaves it to PyTorch",
        "2": "_Initialised subclasses torch.nn.Conv1d and may rely on torch's class in its own code; "
        "groupconv leaves it to PyTorch",
    }
    assert type(model[1]) is _Scaled and type(model[2]) is _Initialised


LAZY_LAYERS = {
    "conv2d": lambda: torch.nn.LazyConv2d(8, 3, groups=2),
    "transposed1d": lambda: torch.nn.LazyConvTranspose1d(6, 3, groups=2),
}


@pytest.mark.parametrize("build", LAZY_LAYERS.values(), ids=LAZY_LAYERS)
def test_a_lazy_conv_module_becomes_groupconvs_when_it_is_built(build):
    """A LazyConv*d has no channels until its first forward, where it turns into its torch.nn class: converted,
    it turns into groupconv's twin instead (it stayed torch's, while conversion said groupconv computed it)."""
    model = groupconv.nn.convert(torch.nn.Sequential(build()))
    assert groupconv.nn.conversion(model).groupconv == ("0",)
    x = torch.randn(2, 4, *(9,) * (2 if isinstance(model[0], torch.nn.LazyConv2d) else 1))
    model(x)
    assert type(model[0]).__module__ == "groupconv.nn"
    oracle = groupconv.nn.revert(copy.deepcopy(model))
    assert type(oracle[0]).__module__ == "torch.nn.modules.conv"
    torch.testing.assert_close(model(x), oracle(x))


@pytest.mark.parametrize("build", LAZY_LAYERS.values(), ids=LAZY_LAYERS)
def test_revert_undoes_convert_of_a_lazy_module_not_yet_built(build):
    model = groupconv.nn.revert(groupconv.nn.convert(torch.nn.Sequential(build())))
    model(torch.randn(2, 4, *(9,) * (2 if isinstance(model[0], torch.nn.LazyConv2d) else 1)))
    assert type(model[0]).__module__ == "torch.nn.modules.conv"


def test_revert_keeps_a_users_subclass_of_a_twin():
    class Mine(groupconv.nn.Conv2d):
        pass

    model = torch.nn.Sequential(Mine(4, 4, 3), groupconv.nn.Conv2d(4, 4, 3))
    groupconv.nn.revert(model)
    assert (type(model[0]), type(model[1])) == (Mine, torch.nn.Conv2d)


LAYER_ARGUMENTS = [
    ("Conv1d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, dilation=2, groups=2)),
    (
        "Conv2d",
        dict(
            in_channels=6,
            out_channels=6,
            kernel_size=(3, 1),
            padding="same",
            groups=3,
            bias=False,
            padding_mode="circular",
        ),
    ),
    ("Conv3d", dict(in_channels=2, out_channels=4, kernel_size=1, padding_mode="reflect")),
    (
        "ConvTranspose2d",
        dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, output_padding=1, groups=4),
    ),
]


@pytest.mark.parametrize(("name", "arguments"), LAYER_ARGUMENTS)
def test_spec_of_and_module_of_round_trip_every_setting(name, arguments):
    """The oracle is torch's own module: module_of(spec_of(m)) prints and sizes as m does."""
    torch_layer = getattr(torch.nn, name)(**arguments)
    spec = groupconv.nn.spec_of(torch_layer)
    assert spec.weight_shape == tuple(torch_layer.weight.shape)
    assert repr(groupconv.nn.module_of(spec)) == repr(torch_layer)
    twin = groupconv.nn.module_of(spec, groupconv=True, dtype=torch.float64)
    assert type(twin) is getattr(groupconv.nn, name) and twin.weight.dtype == torch.float64
    assert groupconv.nn.spec_of(twin) == spec


def test_spec_of_a_module_that_is_not_a_convolution():
    with pytest.raises(TypeError, match=r"spec_of takes a torch\.nn conv module .* got Linear"):
        groupconv.nn.spec_of(torch.nn.Linear(2, 2))


def test_flop_counter_counts_groupconv_layers():
    """torch.utils.flop_counter sees groupconv's custom ops: the forward as torch.nn's, the backward right.

    torch 2.13 counts a grouped layer's weight gradient ``groups`` times over (it leaves the
    groups out of that formula); groupconv counts the multiply-adds each direction does. (The
    layer runs through groupconv's ops, forced: a layer PyTorch runs whole is counted by PyTorch.)
    """
    from torch.utils.flop_counter import FlopCounterMode

    def flops(module, backward: bool):
        layer = module.Conv2d(8, 16, 3, groups=4, padding=1, stride=2)
        with FlopCounterMode(display=False) as counter, groupconv.dispatch.use("native"):
            y = layer(torch.randn(2, 8, 10, 10, requires_grad=True))
            if backward:
                y.sum().backward()
        return counter.get_total_flops()

    macs = (2 * 16 * 5 * 5) * (2 * 3 * 3)  # output elements x (in channels per group x taps)
    assert flops(groupconv.nn, backward=False) == flops(torch.nn, backward=False) == 2 * macs
    assert flops(groupconv.nn, backward=True) == 3 * 2 * macs  # forward, input and weight gradients


@pytest.mark.parametrize("channels_last", [False, True])
def test_flop_counter_counts_a_layer_on_groupconvs_own_kernels(channels_last):
    """A narrow layer untuned runs groupconv's kernels, its formulations bound when it is routed (no
    custom op per call): the counter sees the kernels' operators, each direction once, calls remembered too."""
    from torch.utils.flop_counter import FlopCounterMode

    layer = groupconv.nn.Conv2d(16, 16, 3, groups=8, padding=1, bias=False)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 16, 100, 100).contiguous(memory_format=memory_format).requires_grad_()
    with FlopCounterMode(display=False) as counter:
        for _ in range(2):  # the second call takes the remembered route
            layer(x).backward(torch.randn(2, 16, 100, 100).contiguous(memory_format=memory_format))
    macs = (2 * 16 * 100 * 100) * (2 * 3 * 3)
    assert counter.get_total_flops() == 2 * 3 * 2 * macs


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular", "zeros"])
@pytest.mark.parametrize("groups", [2, 8])  # PyTorch's route and groupconv's kernels
@pytest.mark.parametrize("input_shape", [(2, 8, 7, 6), (8, 7, 6)], ids=["batched", "unbatched"])
def test_later_calls_with_padding_modes_and_unbatched_input_match_pytorch(
    monkeypatch, padding_mode, groups, input_shape
):
    """Such a call is routed once, as any other: its remembered route pads and batches each new input alike."""
    from groupconv import functional, routing

    reference, ours = both("Conv2d", (8, 8, 3), dict(groups=groups, padding=1, padding_mode=padding_mode, bias=True))
    reference, ours = reference.double(), ours.double()
    functional.tuning.remembered.clear()
    routed = []
    monkeypatch.setattr(routing, "route", lambda *args, route=routing.route: routed.append(args) or route(*args))
    for _ in range(3):
        x = torch.randn(input_shape, dtype=torch.float64, requires_grad=True)
        y, expected = ours(x), reference(x)
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
        grad_y = torch.randn_like(expected)
        got = torch.autograd.grad(y, (x, ours.weight), grad_y)
        want = torch.autograd.grad(expected, (x, reference.weight), grad_y)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert len(routed) == 1


def test_conv_forward_takes_a_slice_of_the_weight_as_torchs_does():
    """torch's _conv_forward is the functional conv with the layer's settings and any weight that fits them
    (weight-sharing supernets run slices of one layer's weight)."""
    oracle = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2, padding_mode="circular")
    layer = groupconv.nn.Conv2d(8, 8, 3, padding=1, groups=2, padding_mode="circular")
    layer.load_state_dict(oracle.state_dict())
    x = torch.randn(2, 8, 7, 7)
    for weight, bias in ((oracle.weight[:6], oracle.bias[:6]), (oracle.weight[:4, :, 1:, 1:], None)):
        torch.testing.assert_close(layer._conv_forward(x, weight, bias), oracle._conv_forward(x, weight, bias))
