"""numba_direct's three directions against torch.nn.functional's convolutions and their autograd."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from groupconv import ConvSpec
from groupconv.formulations import numba_direct

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def random_case(rng: random.Random) -> dict:
    """A supported layer and input: narrow groups, any stride, dilation and zero padding."""
    dims = rng.choice((1, 2, 2, 2, 3))
    kernel = tuple(rng.randint(1, 7 if dims < 3 else 3) for _ in range(dims))
    dilation = tuple(rng.randint(1, 3) for _ in range(dims))
    stride = tuple(rng.randint(1, 3) for _ in range(dims)) if rng.random() < 0.5 else (1,) * dims
    padding = rng.choice(["same", "valid", "int"]) if stride == (1,) * dims else rng.choice(["valid", "int"])
    if padding == "int":
        padding = tuple(rng.randint(0, 4) for _ in range(dims))
    reach = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = tuple(r + rng.randint(0, 12 if dims < 3 else 4) for r in reach)  # at least one output position
    groups = rng.randint(1, 4)
    return {
        "spec": ConvSpec(
            groups * rng.randint(1, 16),
            groups * rng.randint(1, 16),
            kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            dims=dims,
        ),
        "batch": rng.choice((0, 1, 1, 2, 3)),
        "size": size,
        "dtype": rng.choice((torch.float32, torch.float64)),
        "layout": rng.choice(("contiguous", "channels_last", "sliced")),
    }


def make_input(shape, dtype, layout, generator) -> torch.Tensor:
    """A random tensor of ``shape`` stored as ``layout``: contiguous, channels-last or a strided slice."""
    if layout == "sliced":
        return torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype, generator=generator)[..., ::2]
    t = torch.randn(shape, dtype=dtype, generator=generator)
    if layout == "channels_last" and len(shape) - 2 in CHANNELS_LAST:
        return t.contiguous(memory_format=CHANNELS_LAST[len(shape) - 2])
    return t


def oracle(x, weight, grad_y, spec):
    """PyTorch's y, grad_x and grad_weight, computed in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    y = CONV[spec.dims](x64, w64, stride=spec.stride, padding=spec.padding, dilation=spec.dilation, groups=spec.groups)
    grad_x, grad_w = torch.autograd.grad(y, (x64, w64), grad_y.double()) if y.numel() else (x64 * 0, w64 * 0)
    return y.detach(), grad_x, grad_w


def assert_close(actual, expected, magnitude, dtype):
    """Equal up to rounding: float32 relative to the size of the sums' terms."""
    tolerance = 2e-5 if dtype == torch.float32 else 1e-12
    assert actual.dtype == dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected, rtol=0, atol=tolerance * (magnitude + 1))


def run_case(case: dict, seed: int) -> None:
    spec, dtype, layout = case["spec"], case["dtype"], case["layout"]
    generator = torch.Generator().manual_seed(seed)
    x = make_input((case["batch"], spec.in_channels, *case["size"]), dtype, layout, generator)
    weight = torch.randn(spec.weight_shape, dtype=dtype, generator=generator)
    output_shape = spec.output_shape(x.shape)
    grad_y = make_input(output_shape, dtype, layout, generator)
    inputs = [t.clone() for t in (x, weight, grad_y)]
    assert numba_direct.supports(spec, x) and numba_direct.supports(spec, grad_y)

    y, grad_x, grad_w = oracle(x, weight, grad_y, spec)
    magnitude = max((t.abs().max().item() for t in (y, grad_x, grad_w) if t.numel()), default=0.0)
    assert_close(numba_direct.forward(x, weight, spec), y, magnitude, dtype)
    assert_close(numba_direct.input_grad(grad_y, weight, spec, case["size"]), grad_x, magnitude, dtype)
    assert_close(numba_direct.weight_grad(x, grad_y, spec), grad_w, magnitude, dtype)
    for before, after in zip(inputs, (x, weight, grad_y)):
        assert torch.equal(before, after)  # never modified in place


@pytest.mark.parametrize("seed", range(60))
def test_random_layers_match_pytorch(seed):
    run_case(random_case(random.Random(seed)), seed)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "groups", "kernel", "padding"),
    [
        (8, 8, 8, 3, 1),  # depthwise
        (4, 8, 4, 3, "same"),  # depthwise multiplier 2
        (32, 32, 2, (2, 4), "same"),  # widest groups, even kernel: asymmetric padding
        (6, 6, 3, 1, 0),  # pointwise
        (4, 4, 2, 3, 4),  # padding beyond the kernel's reach
    ],
)
def test_named_layers_match_pytorch(in_channels, out_channels, groups, kernel, padding):
    spec = ConvSpec(in_channels, out_channels, kernel, padding=padding, groups=groups)
    run_case({"spec": spec, "batch": 2, "size": (9, 7), "dtype": torch.float32, "layout": "contiguous"}, 0)


DEPTHWISE = [  # (dims, kernel, padding, dilation, size): stride 1, planes of one size in and out
    (2, 3, 1, 1, (9, 7)),
    (2, 3, 2, 2, (8, 9)),
    (2, (2, 4), "same", 1, (7, 9)),  # even kernel: asymmetric padding
    (2, 7, 3, 1, (9, 11)),
    (2, 5, "same", (1, 2), (6, 12)),
    (2, (1, 6), "same", 1, (3, 4)),  # taps reaching past the whole row
    (1, 5, "same", 1, (13,)),
    (3, 3, 1, 1, (4, 5, 6)),
]


@pytest.mark.parametrize(("dims", "kernel", "padding", "dilation", "size"), DEPTHWISE)
@pytest.mark.parametrize(
    ("batch", "dtype", "layout"),
    [(3, torch.float32, "contiguous"), (2, torch.float64, "channels_last"), (1, torch.float32, "sliced")],
)
def test_depthwise_layers_match_pytorch(dims, kernel, padding, dilation, size, batch, dtype, layout):
    spec = ConvSpec(5, 5, kernel, padding=padding, dilation=dilation, groups=5, dims=dims)
    run_case({"spec": spec, "batch": batch, "size": size, "dtype": dtype, "layout": layout}, 2)


def test_depthwise_of_an_empty_batch():
    spec = ConvSpec(3, 3, 3, padding=1, groups=3)
    run_case({"spec": spec, "batch": 0, "size": (5, 5), "dtype": torch.float32, "layout": "contiguous"}, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_weight_gradient_of_a_border_inf_matches_pytorch(dtype):
    """PyTorch (float64) multiplies an inf gradient at the border by the padding: NaN."""
    spec = ConvSpec(3, 3, 3, padding=1, groups=3)
    x, grad_y = torch.randn(2, 3, 5, 5, dtype=dtype), torch.randn(2, 3, 5, 5, dtype=dtype)
    grad_y[1, 2, 0, 3] = float("inf")
    expected = oracle(x, torch.randn(spec.weight_shape), grad_y, spec)[2]
    actual = numba_direct.weight_grad(x, grad_y, spec)
    assert expected.isnan().any() and torch.equal(actual.isnan(), expected.isnan())
    assert torch.equal(actual.isinf(), expected.isinf())


def test_output_of_one_position():
    spec = ConvSpec(4, 4, (3, 5), dilation=(2, 1), groups=4)
    run_case({"spec": spec, "batch": 3, "size": (5, 5), "dtype": torch.float64, "layout": "contiguous"}, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_transposed_convolution_with_output_padding(stride):
    spec = ConvSpec(6, 4, 3, stride=stride, padding=1, output_padding=stride - 1, groups=2, transposed=True)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    weight = torch.randn(spec.weight_shape, dtype=torch.float64)
    expected = F.conv_transpose2d(x, weight, stride=stride, padding=1, output_padding=stride - 1, groups=2)
    actual = numba_direct.input_grad(x, weight, spec, spec.output_size(x.shape[2:]))
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("out_channels", [4, 8])  # depthwise, and a multiplier of 2
def test_nan_and_inf_propagate_as_in_pytorch(stride, out_channels):
    spec = ConvSpec(4, out_channels, 3, stride=stride, padding=1, groups=4)
    x = torch.randn(2, 4, 9, 9)
    x[0, 1, 4, 4], x[1, 2, 0, 8] = float("nan"), float("inf")
    weight = torch.randn(spec.weight_shape)
    grad_y = torch.randn(spec.output_shape(x.shape))
    grad_y[1, 3, 2, 2] = float("nan")
    y, grad_x, grad_w = oracle(x, weight, grad_y, spec)
    actual = (
        numba_direct.forward(x, weight, spec),
        numba_direct.input_grad(grad_y, weight, spec, x.shape[2:]),
        numba_direct.weight_grad(x, grad_y, spec),
    )
    for got, expected in zip(actual, (y, grad_x, grad_w)):
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.isinf(), expected.isinf())
        finite = expected.isfinite()
        torch.testing.assert_close(got.double()[finite], expected[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [2, 4])
def test_nan_and_inf_in_the_weight_of_a_transposed_convolution(stride, groups):
    """Border outputs a NaN/inf tap never reaches stay finite, as in PyTorch (no 0 x inf from padding)."""
    spec = ConvSpec(4, 4, 3, stride=stride, padding=1, groups=groups, transposed=True)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    weight = torch.randn(spec.weight_shape, dtype=torch.float64)
    weight[0, 0, 1, 1], weight[3, -1, 0, 2] = float("nan"), float("inf")
    expected = F.conv_transpose2d(x, weight, stride=stride, padding=1, groups=groups)
    actual = numba_direct.input_grad(x, weight, spec, spec.output_size(x.shape[2:]))
    assert torch.equal(actual.isnan(), expected.isnan()) and torch.equal(actual.isinf(), expected.isinf())
    assert expected.isfinite().any()


def test_supports_only_narrow_groups_of_float_cpu_tensors():
    narrow = ConvSpec(32, 16, 3, groups=2)  # Cg = 16, Og = 8
    x = torch.randn(1, 32, 8, 8)
    assert numba_direct.supports(narrow, x)
    assert numba_direct.supports(narrow, x.double())
    assert numba_direct.supports(narrow, x.contiguous(memory_format=torch.channels_last))
    assert not numba_direct.supports(narrow, x.half())
    assert not numba_direct.supports(narrow, x.bfloat16())
    assert not numba_direct.supports(narrow, x.int())
    assert not numba_direct.supports(narrow, x[0])  # unbatched: the frontend adds the batch dim
    assert not numba_direct.supports(ConvSpec(34, 34, 3, groups=2), torch.randn(1, 34, 8, 8))  # Cg = 17
    assert not numba_direct.supports(ConvSpec(16, 34, 3, groups=2), torch.randn(1, 16, 8, 8))  # Og = 17
    assert not numba_direct.supports(ConvSpec(32, 32, 3, dims=1), torch.randn(1, 32, 8))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("openmp", [True, False], ids=["pytorch-openmp-team", "python-threads"])
def test_every_thread_count_on_either_launcher_matches_pytorch(monkeypatch, threads, openmp):
    """The shares add up to the whole call whatever the team's size (3 threads: uneven shares, more
    threads than this machine's cores), on PyTorch's OpenMP team and on Python threads without it."""
    from groupconv.formulations import _numba_runtime

    monkeypatch.setattr(_numba_runtime, "OPENMP", openmp and _numba_runtime.OPENMP)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for seed in range(4):  # strided and unit-stride layers: both kernel families
            run_case(random_case(random.Random(1000 + seed)), seed)
    finally:
        torch.set_num_threads(previous)
