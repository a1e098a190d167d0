"""The direct formulation (groupconv's C++ kernels, torch.ops.groupconv_native) against PyTorch's own
convolutions: every direction, both layouts, 1-3 D, asymmetric padding; operand checks; opcheck; no JIT."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tiers import fast_first
from torch._prims_common import suggest_memory_format

from groupconv import ConvSpec, dispatch
from groupconv import functional as gF
from groupconv.formulations import _native, direct

pytestmark = pytest.mark.skipif(_native.ops is None, reason=str(_native.reason))

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def random_case(rng: random.Random) -> dict:
    """A layer the kernels take (<= 16 channels per group), with any stride, dilation and (before, after) padding."""
    dims = rng.choice((1, 2, 2, 3))
    kernel = tuple(rng.randint(1, 5 if dims < 3 else 3) for _ in range(dims))
    dilation = tuple(rng.randint(1, 3) for _ in range(dims))
    stride = tuple(rng.randint(1, 6) for _ in range(dims)) if rng.random() < 0.5 else (1,) * dims
    padding = tuple((rng.randint(0, 3), rng.randint(0, 3)) for _ in range(dims))
    reach = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = tuple(max(1, r - lo - hi) + rng.randint(0, 19 if dims < 3 else 5) for r, (lo, hi) in zip(reach, padding))
    groups = rng.choice((1, 2, 3, 8, 24))
    return {
        "dims": dims,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "groups": groups,
        "in_per_group": rng.choice((1, 1, 2, 3, 4, 8, 16)),
        "out_per_group": rng.choice((1, 1, 2, 3, 4, 8, 16)),
        "batch": rng.choice((1, 1, 2, 3)),
        "size": size,
        "dtype": rng.choice((torch.float32, torch.float64)),
        "layout": rng.choice(("contiguous", "channels_last", "sliced")),
    }


def spec_of(case: dict) -> ConvSpec:
    """The ConvSpec whose padding_pairs are the case's (before, after) padding."""
    spec = ConvSpec(
        case["groups"] * case["in_per_group"],
        case["groups"] * case["out_per_group"],
        case["kernel"],
        stride=case["stride"],
        dilation=case["dilation"],
        groups=case["groups"],
        dims=case["dims"],
    )
    return _with_padding(spec, case["padding"])


def _with_padding(spec: ConvSpec, pairs) -> ConvSpec:
    """``spec`` with zero padding ``pairs`` (asymmetric allowed): the formulations read only padding_pairs."""

    class Padded(type(spec)):
        padding_pairs = tuple(pairs)

    padded = object.__new__(Padded)
    padded.__dict__.update(spec.__dict__) if hasattr(spec, "__dict__") else None
    for field in spec.__dataclass_fields__:
        object.__setattr__(padded, field, getattr(spec, field))
    return padded


def stored_as(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t``'s values stored contiguous, channels-last (1-D has none: contiguous) or as a strided slice."""
    if layout == "sliced":
        return torch.cat([t, t], dim=-1)[..., : t.shape[-1]]
    if layout == "channels_last" and t.dim() - 2 in CHANNELS_LAST:
        return t.contiguous(memory_format=CHANNELS_LAST[t.dim() - 2])
    return t.contiguous()


def oracle(x, weight, grad_y, case):
    """PyTorch's y, grad_x and grad_weight in float64 (explicit F.pad for the asymmetric padding)."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    pads = [end for pair in reversed(case["padding"]) for end in pair]
    y = CONV[case["dims"]](
        F.pad(x64, pads), w64, stride=case["stride"], dilation=case["dilation"], groups=case["groups"]
    )
    grad_x, grad_w = torch.autograd.grad(y, (x64, w64), grad_y.double())
    return y.detach(), grad_x, grad_w


def assert_close(actual, expected, dtype):
    tolerance = 2e-5 if dtype == torch.float32 else 1e-12
    assert actual.dtype == dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected, rtol=0, atol=tolerance * (expected.abs().max().item() + 1))


def expected_format(t: torch.Tensor) -> torch.memory_format:
    """PyTorch's rule: channels-last when ``t`` is that, not also contiguous, and PyTorch suggests it."""
    cl = CHANNELS_LAST.get(t.dim() - 2)
    dense = cl is not None and not t.is_contiguous() and t.is_contiguous(memory_format=cl)
    return cl if dense and suggest_memory_format(t) is cl else torch.contiguous_format


def run_case(case: dict, seed: int) -> None:
    spec, dtype, layout = spec_of(case), case["dtype"], case["layout"]
    generator = torch.Generator().manual_seed(seed)
    x = stored_as(torch.randn(case["batch"], spec.in_channels, *case["size"], dtype=dtype, generator=generator), layout)
    weight = torch.randn(spec.weight_shape, dtype=dtype, generator=generator)
    output_size = spec.conv_output_size(case["size"])
    grad_y = torch.randn(case["batch"], spec.out_channels, *output_size, dtype=dtype, generator=generator)
    grad_y = stored_as(grad_y, layout)
    y_ref, grad_x_ref, grad_w_ref = oracle(x, weight, grad_y, case)

    assert direct.supports(spec, x)
    y = direct.forward(x, weight, spec)
    grad_x = direct.input_grad(grad_y, weight, spec, case["size"])
    grad_w = direct.weight_grad(x, grad_y, spec)
    assert_close(y, y_ref, dtype)
    assert_close(grad_x, grad_x_ref, dtype)
    assert_close(grad_w, grad_w_ref, dtype)
    assert y.is_contiguous(memory_format=expected_format(x))
    assert grad_x.is_contiguous(memory_format=expected_format(grad_y))


@pytest.mark.parametrize("seed", fast_first(range(40), 10))
def test_random_layers_match_pytorch(seed):
    run_case(random_case(random.Random(seed)), seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40, 400))
def test_many_random_layers_match_pytorch(seed):
    run_case(random_case(random.Random(seed)), seed)


@pytest.mark.parametrize("per_group", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_last_shared_rows_at_every_width_and_stride(dtype, per_group):
    """Channels-last depthwise rows, and rows under a rotation (2 or 4 channels per group), go to a kernel built
    for their (kernel width, stride), or for the taps of each phase of a strided input gradient, where there is
    one: every pair up to 7 x 6, with padding on both sides or one, must reach its own or the general one."""
    for kernel, stride, padding in itertools.product(range(1, 8), range(1, 7), ((1, 1), (0, 2))):
        case = {
            "dims": 2,
            "kernel": (1, kernel),
            "stride": (1, stride),
            "dilation": (1, 1),
            "padding": ((0, 0), padding),
            "groups": 16 // per_group,
            "in_per_group": per_group,
            "out_per_group": per_group,
            "batch": 1,
            "size": (2, 29),
            "dtype": dtype,
            "layout": "channels_last",
        }
        run_case(case, 10 * kernel + stride)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize(
    ("channels", "groups", "kernel", "stride", "padding"),
    [
        (64, 64, 3, 1, ((1, 1), (1, 1))),  # depthwise
        (64, 8, 3, 1, ((1, 1), (1, 1))),  # ResNeXt-like, 8 per group
        (48, 3, 3, 2, ((0, 1), (0, 1))),  # 16 per group, strided, 'same'-like asymmetric
        (36, 12, 4, 1, ((1, 2), (2, 1))),  # even kernel, asymmetric padding
        (32, 32, 5, 2, ((2, 2), (2, 2))),  # depthwise strided
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_network_layers_match_pytorch(channels, groups, kernel, stride, padding, layout, dtype):
    case = {
        "dims": 2,
        "kernel": (kernel, kernel),
        "stride": (stride, stride),
        "dilation": (1, 1),
        "padding": padding,
        "groups": groups,
        "in_per_group": channels // groups,
        "out_per_group": channels // groups,
        "batch": 2,
        "size": (13, 17),
        "dtype": dtype,
        "layout": layout,
    }
    run_case(case, 0)


@pytest.mark.parametrize(
    ("stride", "dilation", "kernel", "padding", "width"),
    [
        (2, 1, 3, (1, 1), 75),  # stride 2: a vector from two loads; rows of several vectors and a partial one
        (2, 2, 5, (4, 3), 70),
        (3, 1, 3, (0, 2), 64),  # other strides: lane by lane
        (4, 1, 2, (1, 0), 3),  # a stride past the row: input-gradient phases with no tap
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_first_rows_strided_along_w(stride, dilation, kernel, padding, width, dtype):
    """Layers strided along W, channels-first: the kernels read every stride-th column and write the input
    gradient one phase of the stride at a time. Depthwise, 4 per group and 1-D."""
    for dims, groups, per_group in ((2, 6, 1), (2, 3, 4), (1, 4, 2)):
        case = {
            "dims": dims,
            "kernel": (kernel,) * dims,
            "stride": (2, stride)[-dims:],
            "dilation": (1, dilation)[-dims:],
            "padding": ((1, 1), padding)[-dims:],
            "groups": groups,
            "in_per_group": per_group,
            "out_per_group": per_group,
            "batch": 2,
            "size": (7, width)[-dims:],
            "dtype": dtype,
            "layout": "contiguous",
        }
        run_case(case, stride)


@pytest.mark.parametrize(
    ("size", "kernel", "dilation", "padding"),
    [
        ((14, 14), (3, 3), (1, 1), ((1, 1), (1, 1))),  # ResNeXt's 14 x 14: 13 vectors of 16 for 14 of 16
        ((7, 7), (3, 3), (1, 1), ((0, 2), (1, 1))),  # a row narrower than half a vector; rows padded unevenly
        ((18, 28), (5, 5), (1, 1), ((2, 2), (2, 2))),  # two chunks of rows (16 and 2)
        ((20, 30), (3, 3), (2, 2), ((2, 2), (0, 4))),  # dilated, the row padded at one end only
        ((9, 13), (1, 3), (1, 1), ((0, 0), (1, 1))),
        ((11, 21), (3, 1), (1, 1), ((0, 0), (0, 0))),  # fewer dst rows than src rows
        ((50,), (3,), (1,), ((1, 1),)),
        ((3, 6, 10), (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    ],
)
@pytest.mark.parametrize(("in_per_group", "out_per_group"), [(4, 4), (8, 5), (1, 4), (6, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_narrow_channels_first_rows_as_one_flat_row(
    size, kernel, dilation, padding, in_per_group, out_per_group, dtype
):
    """Unit-stride channels-first layers whose rows are as wide in src as in dst and narrower than a whole
    number of vectors run each chunk of rows as one flat row, its taps masked (AVX-512): forward where a group
    has 4 or more outputs, input gradient where it has 4 or more inputs."""
    dims = len(size)
    case = {
        "dims": dims,
        "kernel": kernel,
        "stride": (1,) * dims,
        "dilation": dilation,
        "padding": padding,
        "groups": 3,
        "in_per_group": in_per_group,
        "out_per_group": out_per_group,
        "batch": 2,
        "size": size,
        "dtype": dtype,
        "layout": "contiguous",
    }
    run_case(case, 0)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(3, 1, 1), (5, 1, 2), (7, 1, 3), (3, 2, 1), (5, 2, 2), (3, 1, 0), (3, 2, 0)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_group", [1, 2, 4])
def test_rows_wide_enough_for_register_blocks(kernel, stride, padding, layout, dtype, per_group):
    """Rows of 41 and 70 pixels (interior runs in blocks of 8 and 2, border pixels alone, more than one span)
    over 40 channels (a partial SIMD block of channels), in bands of rows cut at each plane's end; depthwise,
    and 2 or 4 per group (channels-last: lanes rotated within each group)."""
    for size in ((5, 41), (3, 70)):
        case = {
            "dims": 2,
            "kernel": (kernel, kernel),
            "stride": (stride, stride),
            "dilation": (1, 1),
            "padding": ((padding, padding), (padding, padding)),
            "groups": 40 // per_group,
            "in_per_group": per_group,
            "out_per_group": per_group,
            "batch": 2,
            "size": size,
            "dtype": dtype,
            "layout": layout,
        }
        run_case(case, 0)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "padding"),
    [
        ((16, 16), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
        ((9, 19), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1))),  # strided: odd widths, last column unread
        ((11, 13), (3, 3), (1, 2), (2, 2), ((0, 2), (2, 0))),  # dilated, padded at one end of each dim
        ((4, 3), (3, 3), (1, 1), (1, 1), ((3, 3), (3, 3))),  # more padding than input: whole rows and columns of it
        ((14, 14), (5, 5), (1, 1), (1, 1), ((2, 2), (2, 2))),
        ((12, 17), (5, 5), (2, 2), (1, 1), ((2, 2), (1, 3))),
        ((3, 8, 9), (1, 3, 3), (2, 1, 1), (1, 1, 1), ((0, 0), (1, 1), (1, 1))),  # 3-D, one tap deep
    ],
)
@pytest.mark.parametrize("channels", [17, 48])  # a partial SIMD block of channels; three whole ones
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_last_depthwise_weight_gradient_with_every_tap_in_registers(
    size, kernel, stride, dilation, padding, channels, dtype
):
    """A 3x3 (and, on AVX-512, 5x5) depthwise channels-last weight gradient keeps every tap's sum in registers
    across the rows of a task, border columns included."""
    dims = len(size)
    case = {
        "dims": dims,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "groups": channels,
        "in_per_group": 1,
        "out_per_group": 1,
        "batch": 3,
        "size": size,
        "dtype": dtype,
        "layout": "channels_last",
    }
    run_case(case, channels)


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["avx2", "default"])
@pytest.mark.parametrize(
    "checks",
    [
        "test_channels_last_shared_rows_at_every_width_and_stride",
        "test_channels_last_depthwise_weight_gradient_with_every_tap_in_registers",
    ],
)
def test_channels_last_register_kernels_under_each_instruction_set(capability, checks):
    """The same checks on the builds this machine would not pick by itself (their register blocks differ)."""
    if capability == "avx2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2")
    test = f"{__file__}::{checks}"
    environment = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", test],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_input_grad_covers_an_input_larger_than_the_output_reads(layout):
    """input_size past what grad_y's outputs read (output_padding): those rows get zero gradient,
    and the weight gradient sees grad_y zero-extended."""
    spec = ConvSpec(8, 8, 3, stride=2, groups=4)
    size = (12, 11)  # conv of (12, 11) has (5, 5) outputs; give grad_y (4, 4)
    grad_y = stored_as(torch.randn(2, 8, 4, 4, dtype=torch.float64), layout)
    weight = torch.randn(8, 2, 3, 3, dtype=torch.float64)
    x = stored_as(torch.randn(2, 8, *size, dtype=torch.float64), layout)
    expected = F.conv_transpose2d(grad_y, weight, stride=2, groups=4, output_padding=0)
    expected = F.pad(expected, [0, size[1] - expected.shape[-1], 0, size[0] - expected.shape[-2]])
    torch.testing.assert_close(direct.input_grad(grad_y, weight, spec, size), expected)
    full = F.pad(grad_y, [0, 1, 0, 1])
    expected_w = torch.nn.grad.conv2d_weight(x, weight.shape, full, stride=2, groups=4)
    torch.testing.assert_close(direct.weight_grad(x, grad_y, spec), expected_w)


def test_taps_in_the_padding_add_nothing():
    """As in oneDNN's direct kernels, a tap reading padding is skipped, not multiplied by zero: an inf
    weight leaves the outputs whose inf tap falls in the padding finite; a NaN input reaches its 3x3."""
    x = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    weight = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    weight[1, 0, 0, 0] = float("inf")  # the top-left tap: in the padding for output row 0 and column 0
    x[0, 2, 3, 3] = float("nan")
    spec = ConvSpec(4, 4, 3, padding=1, groups=4)
    inside = torch.zeros(6, 7, dtype=torch.bool)
    inside[1:, 1:] = True
    nan = torch.zeros(6, 7, dtype=torch.bool)
    nan[2:5, 2:5] = True
    for layout in ("contiguous", "channels_last"):
        ours = direct.forward(stored_as(x, layout), weight, spec)[0]
        assert torch.equal(ours[1].isinf(), inside) and torch.equal(ours[2].isnan(), nan)
        assert ours[[0, 3]].isfinite().all()


def test_huge_dilation_and_padding_is_right():
    """The issue's case: Numba's kernels returned wrong data here; these index in int64 and allocate nothing."""
    x, weight = torch.randn(2, 8, 128, 128), torch.randn(8, 2, 3, 3)
    spec = ConvSpec(8, 8, 3, groups=4, dilation=40000, padding=40000)
    expected = F.conv2d(x, weight, groups=4, dilation=40000, padding=40000)
    for layout in ("contiguous", "channels_last"):
        torch.testing.assert_close(direct.forward(stored_as(x, layout), weight, spec), expected)


@pytest.mark.slow
def test_huge_dilation_and_padding_through_functional_twice():
    """The issue's case through groupconv.functional forced onto the kernels: right, and right again."""
    x, weight = torch.randn(2, 8, 128, 128), torch.randn(8, 2, 3, 3)
    expected = F.conv2d(x, weight, groups=4, dilation=40000, padding=40000)
    with dispatch.use("direct"):
        for _ in range(2):
            torch.testing.assert_close(gF.conv2d(x, weight, groups=4, dilation=40000, padding=40000), expected)


_OUT_OF_MEMORY = """
import resource, sys, torch
from groupconv.formulations import _native
# after the imports, so they run unconstrained: what is mapped now, plus 2 GiB
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + (2 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
weight = torch.randn(8, 2, 3, 3)
try:
    {call}
except (RuntimeError, MemoryError) as error:
    print(type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    sys.exit(0)
print("returned")
sys.exit(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "call",
    [
        # a 20 TB input gradient: 8 channels of 400,000 x 400,000 pixels
        "_native.ops.conv_input_grad(torch.randn(1, 8, 4, 4), weight, [400_000, 400_000], [1, 1], [0, 0], [0, 0],"
        " [100_000, 100_000], 4)",
        # a 820 GB output: 8 channels of (1 + 2 * 80_000) ** 2 pixels
        "_native.ops.conv_forward(torch.randn(1, 8, 1, 1), weight, [1, 1], [80_000, 80_000], [80_000, 80_000],"
        " [1, 1], 4)",
    ],
    ids=["input_grad", "forward"],
)
def test_allocation_failure_raises(call):
    """An output too large to allocate under a memory limit raises an exception with a message, never returns."""
    script = _OUT_OF_MEMORY.format(call=call)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    name, _, message = result.stdout.strip().partition(" ")
    assert name in ("RuntimeError", "MemoryError", "OutOfMemoryError") and message


_DOUBLE = torch.float64
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("x_size", "weight_size", "conv", "kwargs"),
    [
        pytest.param((2, 4, 7), (4, 2, 3), gF.conv1d, {"stride": 2, "padding": 1, "groups": 2}, id="conv1d"),
        pytest.param(
            (1, 4, 5, 6),
            (4, 1, 3, 2),
            gF.conv2d,
            {"padding": 1, "dilation": (1, 2), "groups": 4},
            id="conv2d_channels_last",
        ),
        pytest.param(
            (1, 4, 3, 4, 4), (2, 2, 2, 2, 2), gF.conv3d, {"padding": 1, "groups": 2}, id="conv3d", marks=_SLOW
        ),
        pytest.param(
            (1, 4, 4, 3),
            (4, 1, 3, 3),
            gF.conv_transpose2d,
            {"stride": 2, "padding": 1, "output_padding": 1, "groups": 4},
            id="conv_transpose2d",
        ),
    ],
)
def test_double_backward_through_the_kernels(x_size, weight_size, conv, kwargs):
    """Second derivatives of groupconv.functional forced onto the kernels, against finite differences."""
    torch.manual_seed(0)
    x = torch.randn(x_size, dtype=_DOUBLE)
    if x.dim() == 4:  # the 2-D layers run channels-last
        x = x.contiguous(memory_format=torch.channels_last)
    x, weight = x.requires_grad_(), torch.randn(weight_size, dtype=_DOUBLE, requires_grad=True)
    with dispatch.use("direct"):
        assert torch.autograd.gradgradcheck(lambda a, b: conv(a, b, **kwargs), (x, weight))


def _args(dims=2):
    return [[1] * dims, [1] * dims, [1] * dims, [1] * dims, 2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: _native.ops.conv_forward(torch.randn(1, 6, 5, 5), torch.randn(4, 2, 3, 3), *_args()), "channels"),
        (lambda: _native.ops.conv_forward(torch.randn(1, 4, 5, 5), torch.randn(3, 2, 3, 3), *_args()), "divisible"),
        (lambda: _native.ops.conv_forward(torch.randn(1, 4, 5), torch.randn(4, 2, 3, 3), *_args()), "dimensions"),
        (
            lambda: _native.ops.conv_forward(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3).double(), *_args()),
            "dtype",
        ),
        (
            lambda: _native.ops.conv_forward(torch.randn(1, 4, 5, 5).half(), torch.randn(4, 2, 3, 3).half(), *_args()),
            "dtype",
        ),
        (
            lambda: _native.ops.conv_forward(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), [1], [1], [1], [1], 2),
            "entries",
        ),
        (
            lambda: _native.ops.conv_forward(
                torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), [0, 1], [1, 1], [1, 1], [1, 1], 2
            ),
            "stride",
        ),
        (lambda: _native.ops.conv_forward(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), *_args()[:4], 0), "groups"),
        (lambda: _native.ops.conv_forward(torch.randn(1, 4, 1, 1), torch.randn(4, 2, 5, 5), *_args()), "reach"),
        (
            lambda: _native.ops.conv_input_grad(torch.randn(1, 4, 9, 9), torch.randn(4, 2, 3, 3), [5, 5], *_args()),
            "positions",
        ),
        (
            lambda: _native.ops.conv_input_grad(torch.randn(1, 6, 5, 5), torch.randn(4, 2, 3, 3), [5, 5], *_args()),
            "channels",
        ),
        (
            lambda: _native.ops.conv_input_grad(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), [5], *_args()),
            "input_size",
        ),
        (
            lambda: _native.ops.conv_weight_grad(torch.randn(2, 4, 5, 5), torch.randn(1, 4, 5, 5), [3, 3], *_args()),
            "batch",
        ),
        (
            lambda: _native.ops.conv_weight_grad(torch.randn(1, 5, 5, 5), torch.randn(1, 4, 5, 5), [3, 3], *_args()),
            "divisible",
        ),
        (
            lambda: _native.ops.conv_weight_grad(torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5), [3], *_args()),
            "kernel_size",
        ),
    ],
)
def test_inconsistent_operands_raise(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


def _opcheck_samples():
    for layout in ("contiguous", "channels_last"):
        x = stored_as(torch.randn(2, 8, 7, 6, dtype=torch.float64), layout)
        weight = torch.randn(12, 2, 3, 2, dtype=torch.float64)
        geometry = ([2, 1], [1, 0], [0, 1], [1, 2], 4)
        y = _native.ops.conv_forward(x, weight, *geometry)
        yield "conv_forward", (x, weight, *geometry)
        yield "conv_input_grad", (y, weight, [7, 6], *geometry)
        yield "conv_weight_grad", (x, y, [3, 2], *geometry)
        yield "relayout", (x.detach().requires_grad_(), layout == "contiguous")


@pytest.mark.parametrize(("name", "args"), list(_opcheck_samples()), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck(name, args):
    torch.library.opcheck(getattr(_native.ops, name), args)


@pytest.mark.parametrize("shape", [(3, 70, 19, 21), (2, 17, 4, 5, 6), (2, 1, 4, 4), (0, 4, 3, 3), (2, 5, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relayout_is_a_copy_in_the_other_layout(shape, dtype):
    """Tiles of 64 with remainders, 3-D layouts, one channel, no pixels, an empty batch: each way, the same values."""
    x = torch.randn(shape, dtype=dtype)
    channels_last = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    there = _native.ops.relayout(x, True)
    back = _native.ops.relayout(there, False)
    assert there.is_contiguous(memory_format=channels_last) and back.is_contiguous()
    assert torch.equal(there, x) and torch.equal(back, x)


def test_relayout_copies_a_strided_input_and_refuses_a_1d_one():
    sliced = torch.randn(2, 6, 8, 8)[..., ::2]
    assert torch.equal(_native.ops.relayout(sliced, True), sliced)
    with pytest.raises(RuntimeError, match="4 or 5 dims"):
        _native.ops.relayout(torch.randn(2, 3, 4), True)


_RELAYOUT_ROUND_TRIP = """
import sys, torch
from groupconv.formulations import _native
for shape in [(3, 70, 19, 21), (2, 16, 8, 8), (2, 32, 4, 4, 4)]:
    x = torch.randn(shape)
    there = _native.ops.relayout(x, True)
    assert torch.equal(there, x) and torch.equal(_native.ops.relayout(there, False), x), shape
print(_native.isa)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("capability", "isa"), [("avx2", "AVX2"), ("default", "DEFAULT")])
def test_relayout_under_each_instruction_set(capability, isa):
    """Each build has its own register transposes: run the ones this machine would not pick by itself."""
    if capability == "avx2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2")
    environment = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    done = subprocess.run([sys.executable, "-c", _RELAYOUT_ROUND_TRIP], env=environment, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, isa), done.stderr


@pytest.mark.slow
def test_first_call_in_a_fresh_process_compiles_nothing():
    """The kernels are built at install: a first narrow-group call loads no JIT (no Numba, no cpp_extension)."""
    script = """
import json, sys, torch
from groupconv import ConvSpec
from groupconv.formulations import direct
spec = ConvSpec(64, 64, 3, padding=1, groups=32)
x = torch.randn(2, 64, 9, 9).contiguous(memory_format=torch.channels_last)
y = direct.forward(x, torch.randn(64, 2, 3, 3), spec)
jit = [m for m in ("numba", "torch.utils.cpp_extension", "llvmlite") if m in sys.modules]
print(json.dumps({"jit": jit, "shape": list(y.shape)}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"jit": [], "shape": [2, 64, 9, 9]}
