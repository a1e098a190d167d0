"""Gradients: finite differences (gradcheck, gradgradcheck) and the split-and-concatenate of
*A Deeper Understanding of Grouped Convolution*."""

import pytest
import torch
import torch.nn.functional as F
from cases import spy_on_formulations

import groupconv.functional as GF
from groupconv import dispatch, formulations, tuning
from groupconv.layouts import CHANNELS_LAST

# (function, input shape, weight shape, keyword arguments): small float64 layers
FINITE_DIFFERENCE_CASES = [
    ("conv1d", (2, 4, 7), (6, 2, 3), dict(groups=2, stride=2, padding=1, dilation=2)),
    ("conv2d", (1, 4, 5, 6), (4, 2, 2, 3), dict(groups=2, stride=(2, 1), padding=(1, 0))),
    ("conv2d", (2, 3, 5, 5), (6, 1, 3, 3), dict(groups=3, padding="same", dilation=2)),  # depthwise
    ("conv3d", (1, 2, 4, 3, 4), (4, 1, 2, 2, 2), dict(groups=2, stride=(1, 2, 1), padding=1)),
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3), dict(groups=2, stride=3, padding=1, output_padding=2)),
    ("conv_transpose2d", (1, 4, 3, 4), (4, 1, 3, 2), dict(groups=4, stride=2, output_padding=1, dilation=(1, 2))),
    ("conv_transpose2d", (1, 2, 4, 4), (2, 2, 2, 2), dict(groups=2, dilation=3, padding=1, output_padding=(2, 1))),
    ("conv_transpose3d", (1, 2, 2, 3, 2), (2, 2, 2, 1, 2), dict(groups=1, stride=2, padding=(0, 1, 0))),
]


def _operands(input_shape, weight_shape, out_channels):
    generator = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    return make(*input_shape), make(*weight_shape), make(out_channels)


def _out_channels(name, weight_shape, kwargs):
    return weight_shape[1] * kwargs["groups"] if "transpose" in name else weight_shape[0]


@pytest.mark.parametrize("name, input_shape, weight_shape, kwargs", FINITE_DIFFERENCE_CASES)
def test_gradcheck(name, input_shape, weight_shape, kwargs):
    operands = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))
    function = lambda x, w, b: getattr(GF, name)(x, w, b, **kwargs)
    assert torch.autograd.gradcheck(function, operands)


@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape, weight_shape, kwargs", FINITE_DIFFERENCE_CASES)
def test_gradgradcheck(name, input_shape, weight_shape, kwargs):
    operands = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))
    function = lambda x, w, b: getattr(GF, name)(x, w, b, **kwargs)
    assert torch.autograd.gradgradcheck(function, operands)


@pytest.mark.parametrize("name, input_shape, weight_shape, kwargs", FINITE_DIFFERENCE_CASES)
def test_second_derivatives_match_pytorch(name, input_shape, weight_shape, kwargs):
    """Double backward agrees with PyTorch's own: the gradient of a gradient norm."""
    operands = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))

    def grad_of_grad_norm(function):
        y = function(*operands, **kwargs)
        grads = torch.autograd.grad(y.square().sum(), operands[:2], create_graph=True)
        return torch.autograd.grad(sum(g.square().sum() for g in grads), operands)

    for got, want in zip(grad_of_grad_norm(getattr(GF, name)), grad_of_grad_norm(getattr(F, name))):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.fixture(params=["direct", "im2col"])
def bound_layers(request, monkeypatch) -> list[str]:
    """Every layer routed to groupconv's ops untuned, its directions bound to one formulation (im2col where
    it must: groupconv's own, any geometry); the directions the formulations compute, in order."""
    preferred = [formulations.load(name) for name in (request.param, formulations.REFERENCE)]
    monkeypatch.setattr(dispatch, "default", lambda spec, a, *_: next(m for m in preferred if m.supports(spec, a)))
    tuning.remembered.clear()  # no route remembered before the patch may run
    yield spy_on_formulations(monkeypatch)
    tuning.remembered.clear()


@pytest.mark.parametrize("name, input_shape, weight_shape, kwargs", FINITE_DIFFERENCE_CASES)
def test_gradcheck_on_bound_layers(bound_layers, name, input_shape, weight_shape, kwargs):
    operands = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))
    function = lambda x, w, b: getattr(GF, name)(x, w, b, **kwargs)
    assert torch.autograd.gradcheck(function, operands)
    assert {"forward", "input_grad", "weight_grad"} <= set(bound_layers)


@pytest.mark.parametrize(
    "name, input_shape, weight_shape, kwargs, channels_last",
    [(*case, False) for case in FINITE_DIFFERENCE_CASES]
    + [(*case, True) for case in FINITE_DIFFERENCE_CASES if len(case[1]) > 3],  # 1-D has no channels-last
)
def test_bound_layers_match_pytorch_to_second_derivatives(
    bound_layers, name, input_shape, weight_shape, kwargs, channels_last
):
    """Outputs and first derivatives on the bound formulations, second derivatives (and a gradient in
    another layout, or broadcast) through the custom ops: all as PyTorch's, in either layout."""
    x, w, b = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))
    if channels_last:
        x = x.detach().contiguous(memory_format=CHANNELS_LAST[x.dim() - 2]).requires_grad_()
    operands = x, w, b
    ours, theirs = getattr(GF, name), getattr(F, name)
    for _ in range(2):  # the second call takes the remembered route
        y, expected = ours(*operands, **kwargs), theirs(*operands, **kwargs)
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
        grad_y = torch.randn_like(expected)
        for got, want in zip(torch.autograd.grad(y, operands, grad_y), torch.autograd.grad(expected, operands, grad_y)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    summed = torch.autograd.grad(ours(*operands, **kwargs).sum(), operands)  # a broadcast output gradient
    for got, want in zip(summed, torch.autograd.grad(theirs(*operands, **kwargs).sum(), operands)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)

    def grad_of_grad_norm(function):
        grads = torch.autograd.grad(function(*operands, **kwargs).square().sum(), operands[:2], create_graph=True)
        return torch.autograd.grad(sum(g.square().sum() for g in grads), operands)

    for got, want in zip(grad_of_grad_norm(ours), grad_of_grad_norm(theirs)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert bound_layers


@pytest.mark.parametrize("name, input_shape, weight_shape, kwargs", FINITE_DIFFERENCE_CASES)
def test_bound_layers_infer_without_autograd(bound_layers, name, input_shape, weight_shape, kwargs):
    """Under no_grad a bound layer's output is PyTorch's, with no autograd node, on its first and later calls."""
    operands = _operands(input_shape, weight_shape, _out_channels(name, weight_shape, kwargs))
    with torch.no_grad():
        for _ in range(2):
            y = getattr(GF, name)(*operands, **kwargs)
            torch.testing.assert_close(y, getattr(F, name)(*operands, **kwargs), rtol=1e-10, atol=1e-10)
            assert y.grad_fn is None
    assert set(bound_layers) <= {"forward", "input_grad"} and bound_layers


def test_a_bound_layers_first_derivatives_dispatch_nothing(bound_layers, monkeypatch):
    """A layer's formulations are chosen when it is routed; its later calls and their backward run them
    with no per-call choice (the custom ops would choose on every call)."""
    x, w, b = _operands((2, 4, 6, 6), (4, 2, 3, 3), 4)
    GF.conv2d(x, w, b, groups=2)  # routed now
    monkeypatch.setattr(dispatch, "choose", lambda *args: pytest.fail(f"a per-call choice: {args[0]}"))
    torch.autograd.grad(GF.conv2d(x, w, b, groups=2), (x, w, b), torch.randn(2, 4, 4, 4, dtype=torch.float64))
    assert bound_layers[-3:] in (["forward", "input_grad", "weight_grad"], ["forward", "weight_grad", "input_grad"])


def test_vmap_runs_a_bound_layer_through_the_custom_ops(bound_layers):
    x, w, b = (t.detach() for t in _operands((3, 2, 4, 6, 6), (4, 2, 3, 3), 4))
    batched = torch.func.vmap(lambda x: GF.conv2d(x, w, b, groups=2))(x)
    torch.testing.assert_close(batched, torch.stack([F.conv2d(xi, w, b, groups=2) for xi in x]))


SPLIT_CASES = [  # (dims, transposed, groups, in channels, out channels, keyword arguments)
    (2, False, 2, 4, 8, dict(padding=1)),  # the Grouped Convolution post's example
    (2, False, 3, 3, 9, dict(stride=2)),
    (1, False, 4, 8, 4, dict(dilation=2)),
    (3, False, 2, 4, 6, dict(padding=1)),
    (2, True, 2, 4, 6, dict(stride=2, output_padding=1)),
    (1, True, 3, 6, 3, dict(padding=1)),
]


@pytest.mark.parametrize("dims, transposed, groups, in_channels, out_channels, kwargs", SPLIT_CASES)
def test_grouped_equals_concatenated_independent_convolutions(
    dims, transposed, groups, in_channels, out_channels, kwargs
):
    """The Grouped Convolution post's explanation: split the input channels into groups, convolve each
    group with its own filters (a plain groups=1 PyTorch convolution), concatenate.
    Outputs and the gradients of input, weight and bias all agree."""
    generator = torch.Generator().manual_seed(groups)
    weight_shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
    x = torch.randn(2, in_channels, *(5,) * dims, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(*weight_shape, *(3,) * dims, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64, requires_grad=True)
    name = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"

    grouped = getattr(GF, name)(x, weight, bias, groups=groups, **kwargs)
    split = torch.cat(
        [
            getattr(F, name)(x_g, w_g, b_g, **kwargs)
            for x_g, w_g, b_g in zip(x.chunk(groups, dim=1), weight.chunk(groups, dim=0), bias.chunk(groups))
        ],
        dim=1,
    )
    torch.testing.assert_close(grouped, split, rtol=1e-12, atol=1e-12)
    grad_output = torch.randn(split.shape, generator=generator, dtype=torch.float64)
    for got, want in zip(
        torch.autograd.grad(grouped, (x, weight, bias), grad_output),
        torch.autograd.grad(split, (x, weight, bias), grad_output),
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
