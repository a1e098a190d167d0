"""groupconv.numpy against PyTorch and against groupconv's torch frontend.

The oracle is PyTorch itself (``torch.nn.functional.conv*`` / ``conv_transpose*``,
``torch.nn.ConvNd`` for padding modes, autograd for gradients); groupconv.functional
is checked on the same configurations, so the two groupconv frontends agree too.
Configurations are drawn at random from a seed: a failure names its seed and prints
the configuration.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import groupconv.functional as GF
from groupconv import GroupConvError
from groupconv import numpy as gnp
from groupconv.spec import ConvSpec

NUM_CONFIGS = 360
TOLERANCE = {"float32": dict(rtol=1e-4, atol=1e-4), "float64": dict(rtol=1e-10, atol=1e-10)}
PADDING_MODES = ("reflect", "replicate", "circular")

# PyTorch's performance note on padding="same" with even kernels is not about results
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The oracle's tensors are tiny: threads only add overhead, much more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclasses.dataclass(frozen=True)
class Config:
    """One call: a layer, its input's shape and the dtype, as the numpy API takes them."""

    dims: int
    transposed: bool
    groups: int
    in_per_group: int  # Cg: the layer's input channels per group
    out_per_group: int  # Og
    kernel_size: tuple[int, ...]
    stride: int | tuple[int, ...]
    padding: int | tuple[int, ...] | str
    dilation: int | tuple[int, ...]
    output_padding: int | tuple[int, ...]
    padding_mode: str
    bias: bool
    batch: int | None  # None: an unbatched input
    input_size: tuple[int, ...]
    dtype: str

    @property
    def in_channels(self) -> int:
        return self.groups * self.in_per_group

    @property
    def out_channels(self) -> int:
        return self.groups * self.out_per_group

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """(O, Cg, *K), or PyTorch's (C, Og, *K) for a transposed layer."""
        if self.transposed:
            return (self.in_channels, self.out_per_group, *self.kernel_size)
        return (self.out_channels, self.in_per_group, *self.kernel_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        batch = () if self.batch is None else (self.batch,)
        return (*batch, self.in_channels, *self.input_size)

    def layer_args(self) -> dict:
        """Keyword arguments of the numpy call, less the operands."""
        args = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        if self.transposed:
            return dict(args, output_padding=self.output_padding)
        return dict(args, padding_mode=self.padding_mode)


def _per_dim(rng: np.random.Generator, low: int, high: int, dims: int) -> int | tuple[int, ...]:
    """An int or ``dims`` ints in [low, high], as a caller may give either."""
    values = tuple(int(v) for v in rng.integers(low, high + 1, dims))
    return values[0] if rng.random() < 0.4 else values


def _tuple(value, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * dims


def random_config(seed: int) -> Config:
    rng = np.random.default_rng(seed)
    dims = int(rng.integers(1, 4))
    transposed = bool(rng.random() < 0.4)
    if rng.random() < 0.25:  # depthwise: one channel per group
        groups, in_per_group, out_per_group = int(rng.integers(2, 6)), 1, int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([1, 1, 2, 3]))
        in_per_group, out_per_group = (int(v) for v in rng.integers(1, 4, 2))
    kernel_size = tuple(int(k) for k in rng.integers(1, (4, 3, 2)[dims - 1] + 1, dims))  # 3-D kept small: speed
    stride = _per_dim(rng, 1, 3, dims)
    dilation = _per_dim(rng, 1, 3, dims)
    reach = [d * (k - 1) + 1 for d, k in zip(_tuple(dilation, dims), kernel_size)]
    extra = (3, 3, 2)[dims - 1]
    if transposed:
        padding = _per_dim(rng, 0, 2, dims)
        output_padding = tuple(
            int(rng.integers(0, max(s, d))) for s, d in zip(_tuple(stride, dims), _tuple(dilation, dims))
        )
        output_padding = output_padding[0] if len(set(output_padding)) == 1 and rng.random() < 0.5 else output_padding
        input_size = tuple(
            max(1 + int(rng.integers(0, extra)), -(-(2 * p - r - op + 1) // s) + 1)  # output >= 1
            for p, r, op, s in zip(_tuple(padding, dims), reach, _tuple(output_padding, dims), _tuple(stride, dims))
        )
        padding_mode = "zeros"
    else:
        output_padding = 0
        padding = ["int", "tuple", "same", "valid"][int(rng.integers(0, 4))]
        if padding == "same":
            stride = 1
            pairs = [((r - 1) // 2, r - 1 - (r - 1) // 2) for r in reach]  # r - 1 split, odd extra after
        elif padding == "valid":
            pairs = [(0, 0)] * dims
        else:
            padding = _per_dim(rng, 0, 2, dims) if padding == "tuple" else int(rng.integers(0, 3))
            pairs = [(p, p) for p in _tuple(padding, dims)]
        padding_mode = "zeros" if rng.random() < 0.4 else str(rng.choice(PADDING_MODES))
        input_size = tuple(
            max(1, r - lo - hi, hi + 1, lo + 1) + int(rng.integers(0, extra))  # window fits; reflect needs pad < S
            for r, (lo, hi) in zip(reach, pairs)
        )
    batch = [None, 0, 1, 2, 3][int(rng.choice(5, p=[0.1, 0.1, 0.3, 0.3, 0.2]))]
    return Config(
        dims=dims,
        transposed=transposed,
        groups=groups,
        in_per_group=in_per_group,
        out_per_group=out_per_group,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        padding_mode=padding_mode,
        bias=bool(rng.random() < 0.5),
        batch=batch,
        input_size=input_size,
        dtype=str(rng.choice(["float32", "float64"])),
    )


def random_operands(config: Config, seed: int) -> dict[str, np.ndarray | None]:
    """x, weight, bias and an output gradient for ``config``, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(config.input_shape).astype(config.dtype)
    weight = rng.standard_normal(config.weight_shape).astype(config.dtype)
    bias = rng.standard_normal(config.out_channels).astype(config.dtype) if config.bias else None
    output_shape = torch_forward(config, *map(_tensor, (x, weight, bias))).shape
    grad_output = rng.standard_normal(tuple(output_shape)).astype(config.dtype)
    return dict(x=x, weight=weight, bias=bias, grad_output=grad_output)


def _tensor(a: np.ndarray | None, requires_grad: bool = False) -> torch.Tensor | None:
    return None if a is None else torch.tensor(a, requires_grad=requires_grad)


def torch_forward(config: Config, x, weight, bias) -> torch.Tensor:
    """PyTorch's own result: the functional ops, or the module for a padding mode."""
    d = config.dims
    if config.transposed:
        op = getattr(F, f"conv_transpose{d}d")
        return op(x, weight, bias, config.stride, config.padding, config.output_padding, config.groups, config.dilation)
    if config.padding_mode == "zeros":
        op = getattr(F, f"conv{d}d")
        return op(x, weight, bias, config.stride, config.padding, config.dilation, config.groups)
    module = getattr(torch.nn, f"Conv{d}d")(
        config.in_channels,
        config.out_channels,
        config.kernel_size,
        config.stride,
        config.padding,
        config.dilation,
        config.groups,
        config.bias,
        config.padding_mode,
        dtype=getattr(torch, config.dtype),
    )
    parameters = {"weight": weight, **({"bias": bias} if bias is not None else {})}
    return torch.func.functional_call(module, parameters, (x,))


def frontend_forward(config: Config, x, weight, bias) -> torch.Tensor:
    """groupconv's torch frontend on the same call."""
    d = config.dims
    if config.transposed:
        op = getattr(GF, f"conv_transpose{d}d")
        return op(x, weight, bias, config.stride, config.padding, config.output_padding, config.groups, config.dilation)
    if config.padding_mode == "zeros":
        return getattr(GF, f"conv{d}d")(x, weight, bias, config.stride, config.padding, config.dilation, config.groups)
    spec = ConvSpec.from_weight(
        weight.shape,
        groups=config.groups,
        dims=d,
        stride=config.stride,
        padding=config.padding,
        dilation=config.dilation,
        bias=bias is not None,
        padding_mode=config.padding_mode,
    )
    return GF.apply(spec, x, weight, bias)


def torch_results(forward, config: Config, operands: dict) -> dict[str, np.ndarray | None]:
    """The output and every gradient, by autograd through ``forward``."""
    x, weight, bias = (_tensor(operands[k], requires_grad=True) for k in ("x", "weight", "bias"))
    y = forward(config, x, weight, bias)
    leaves = [t for t in (x, weight, bias) if t is not None]
    grads = torch.autograd.grad(y, leaves, torch.from_numpy(operands["grad_output"]), allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]  # an empty batch
    results = dict(y=y, input=grads[0], weight=grads[1], bias=grads[2] if bias is not None else None)
    return {k: None if v is None else v.detach().numpy() for k, v in results.items()}


def numpy_results(config: Config, operands: dict) -> dict[str, np.ndarray | None]:
    x, weight, bias, grad_output = (operands[k] for k in ("x", "weight", "bias", "grad_output"))
    if config.transposed:
        y = gnp.conv_transpose(x, weight, bias, **config.layer_args())
        grads = gnp.conv_transpose_grads(grad_output, x, weight, bias, **config.layer_args())
    else:
        y = gnp.conv(x, weight, bias, **config.layer_args())
        grads = gnp.conv_grads(grad_output, x, weight, bias, **config.layer_args())
    return dict(y=y, input=grads.input, weight=grads.weight, bias=grads.bias)


def assert_agree(actual: dict, expected: dict, config: Config, oracle: str) -> None:
    for name, want in expected.items():
        got = actual[name]
        message = f"{name} differs from {oracle} for {config}"
        if want is None:
            assert got is None, message
            continue
        assert got.dtype == want.dtype, message
        np.testing.assert_allclose(got, want, err_msg=message, **TOLERANCE[config.dtype])


def _config_id(seed: int) -> str:
    """e.g. "17-conv_transpose2d-g3-float32": the seed reproduces it, the rest is for -k."""
    config = random_config(seed)
    op = f"conv{'_transpose' if config.transposed else ''}{config.dims}d"
    mode = "" if config.padding_mode == "zeros" else f"-{config.padding_mode}"
    return f"{seed}-{op}-g{config.groups}{mode}-{config.dtype}"


@pytest.mark.parametrize("seed", range(NUM_CONFIGS), ids=_config_id)
def test_agrees_with_pytorch_and_the_torch_frontend(seed):
    config = random_config(seed)
    operands = random_operands(config, seed)
    originals = {k: None if v is None else v.copy() for k, v in operands.items()}
    results = numpy_results(config, operands)
    assert_agree(results, torch_results(torch_forward, config, operands), config, "PyTorch")
    assert_agree(results, torch_results(frontend_forward, config, operands), config, "groupconv.functional")
    for name, original in originals.items():  # operands are read, never written
        np.testing.assert_array_equal(operands[name], original, err_msg=name)


def test_random_configurations_cover_every_case():
    configs = [random_config(seed) for seed in range(NUM_CONFIGS)]
    for dims in (1, 2, 3):
        for transposed in (False, True):
            assert sum(c.dims == dims and c.transposed == transposed for c in configs) >= 10, (dims, transposed)
    for mode in ("zeros", *PADDING_MODES):
        assert sum(not c.transposed and c.padding_mode == mode for c in configs) >= 15, mode
    for padding in ("same", "valid"):
        assert sum(c.padding == padding for c in configs) >= 15, padding
    assert sum(isinstance(c.padding, tuple) for c in configs) >= 15
    assert sum(c.transposed and any(_tuple(c.output_padding, c.dims)) for c in configs) >= 15
    assert sum(c.groups > 1 and c.in_per_group == 1 and not c.transposed for c in configs) >= 10  # depthwise
    assert sum(c.groups == 1 for c in configs) >= 30
    for step in (1, 2, 3):
        assert sum(step in _tuple(c.stride, c.dims) for c in configs) >= 30, step
        assert sum(step in _tuple(c.dilation, c.dims) for c in configs) >= 30, step
    for batch in (None, 0, 1, 2, 3):
        assert sum(c.batch == batch for c in configs) >= 10, batch
    assert sum(c.bias for c in configs) >= 100 and sum(not c.bias for c in configs) >= 100
    for dtype in ("float32", "float64"):
        assert sum(c.dtype == dtype for c in configs) >= 100, dtype


@pytest.mark.parametrize("transposed", [False, True])
def test_float16_is_computed_in_float32_and_returned_in_float16(transposed):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float16)
    weight = rng.standard_normal((4, 2, 3, 3)).astype(np.float16)
    bias = rng.standard_normal(4).astype(np.float16)
    forward, grads = (gnp.conv_transpose, gnp.conv_transpose_grads) if transposed else (gnp.conv, gnp.conv_grads)
    args = dict(stride=2, padding=1, groups=2)
    y = forward(x, weight, bias, **args)
    as32 = [a.astype(np.float32) for a in (x, weight, bias)]
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, forward(*as32, **args).astype(np.float16))
    grad_output = rng.standard_normal(y.shape).astype(np.float16)
    half = grads(grad_output, x, weight, bias, **args)
    single = grads(grad_output.astype(np.float32), *as32, **args)
    for name, got, want in zip(half._fields, half, single):
        assert got.dtype == np.float16, name
        np.testing.assert_array_equal(got, want.astype(np.float16), err_msg=name)
    torch_op = F.conv_transpose2d if transposed else F.conv2d
    expected = torch_op(*(torch.from_numpy(a) for a in as32), **args).numpy()
    np.testing.assert_allclose(y.astype(np.float32), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("transposed", [False, True])
def test_unbatched_input_gives_unbatched_results(transposed):
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((6, 5, 7)), rng.standard_normal((6, 1, 2, 3)), rng.standard_normal(6)
    forward, grads = (gnp.conv_transpose, gnp.conv_transpose_grads) if transposed else (gnp.conv, gnp.conv_grads)
    y = forward(x, weight, bias, groups=6, dilation=2)
    np.testing.assert_array_equal(y, forward(x[None], weight, bias, groups=6, dilation=2)[0])
    grad_output = rng.standard_normal(y.shape)
    unbatched = grads(grad_output, x, weight, bias, groups=6, dilation=2)
    batched = grads(grad_output[None], x[None], weight, bias, groups=6, dilation=2)
    assert unbatched.input.shape == x.shape
    for name, got, want in zip(unbatched._fields, unbatched, batched):
        np.testing.assert_array_equal(got, want[0] if name == "input" else want, err_msg=name)


@pytest.mark.parametrize("transposed", [False, True])
def test_strided_views_give_the_results_of_contiguous_copies(transposed):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 10, 12))[::2, :, ::-1, 1::2]  # (2, 4, 10, 6), no axis contiguous
    weight = np.asfortranarray(rng.standard_normal((4, 2, 3, 2)))
    forward, grads = (gnp.conv_transpose, gnp.conv_transpose_grads) if transposed else (gnp.conv, gnp.conv_grads)
    args = dict(stride=(1, 2), groups=2, dilation=(2, 1))
    y = forward(x, weight, **args)
    np.testing.assert_array_equal(y, forward(x.copy(), weight.copy(), **args))
    grad_output = rng.standard_normal(y.shape)[..., ::-1]
    views = grads(grad_output, x, weight, **args)
    copies = grads(grad_output.copy(), x.copy(), weight.copy(), **args)
    for name, got, want in zip(views._fields[:2], views, copies):
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv(u), v> == <u, conv_transpose(v)>, with output_padding giving back u's size."""
    rng = np.random.default_rng(2)
    u, weight = rng.standard_normal((2, 6, 11, 8)), rng.standard_normal((9, 2, 3, 2))
    args = dict(stride=(3, 2), padding=(1, 2), dilation=(1, 2), groups=3)
    y = gnp.conv(u, weight, **args)
    v = rng.standard_normal(y.shape)
    back = gnp.conv_transpose(v, weight, output_padding=(1, 1), **args)
    assert back.shape == u.shape
    np.testing.assert_allclose(np.vdot(y, v), np.vdot(u, back), rtol=1e-12)


def test_grouped_conv_is_per_group_convs_concatenated():
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((2, 6, 7)), rng.standard_normal((4, 3, 3))
    grad_output = rng.standard_normal((2, 4, 7))
    args = dict(padding="same", padding_mode="reflect")
    y = gnp.conv(x, weight, groups=2, **args)
    grads = gnp.conv_grads(grad_output, x, weight, groups=2, **args)
    halves = [(x[:, :3], weight[:2], grad_output[:, :2]), (x[:, 3:], weight[2:], grad_output[:, 2:])]
    np.testing.assert_allclose(y, np.concatenate([gnp.conv(xi, wi, **args) for xi, wi, _ in halves], axis=1))
    split = [gnp.conv_grads(gi, xi, wi, **args) for xi, wi, gi in halves]
    np.testing.assert_allclose(grads.input, np.concatenate([s.input for s in split], axis=1))
    np.testing.assert_allclose(grads.weight, np.concatenate([s.weight for s in split], axis=0))


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_mode_input_gradient_matches_finite_differences(mode):
    """Independent of PyTorch: the input gradient through np.pad, by central differences."""
    rng = np.random.default_rng(4)
    x, weight = rng.standard_normal((1, 2, 4, 3)), rng.standard_normal((2, 2, 3, 3))
    args = dict(padding=(2, 1), padding_mode=mode)
    grad_output = rng.standard_normal(gnp.conv(x, weight, **args).shape)
    grad = gnp.conv_grads(grad_output, x, weight, **args).input
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = 1e-6
        loss = [np.vdot(gnp.conv(x + sign * step, weight, **args), grad_output) for sign in (1, -1)]
        numeric[index] = (loss[0] - loss[1]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# --- errors: TypeError for what is not a float array, the spec's messages for the rest

X, W = np.zeros((1, 4, 8, 8), np.float32), np.zeros((8, 2, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gnp.conv([[0.0]], W, groups=2), "x must be a numpy.ndarray, got list; use np.asarray(x)"),
        (lambda: gnp.conv(X, torch.zeros(8, 2, 3, 3), groups=2), "weight must be a numpy.ndarray, got Tensor"),
        (lambda: gnp.conv(X, W, 0.0, groups=2), "bias must be a numpy.ndarray, got float"),
        (lambda: gnp.conv_grads(None, X, W, groups=2), "grad_output must be a numpy.ndarray, got NoneType"),
        (
            lambda: gnp.conv(X.astype(np.int64), W.astype(np.int64), groups=2),
            "x has dtype int64; convolution needs floating point: use x.astype(np.float32)",
        ),
        (
            lambda: gnp.conv(X, W, np.zeros(8, np.complex64), groups=2),
            "bias has dtype complex64; convolution needs floating point",
        ),
        (
            lambda: gnp.conv(X, W.astype(np.float64), groups=2),
            "weight has dtype float64 but x has float32; convert one, e.g. weight.astype(x.dtype)",
        ),
        (
            lambda: gnp.conv_transpose_grads(np.zeros((1, 2, 10, 10)), X, np.zeros((4, 1, 3, 3), np.float32), groups=2),
            "grad_output has dtype float64 but x has float32",
        ),
    ],
)
def test_type_errors_name_the_argument_and_the_fix(call, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        call()


BAD_CALLS = {  # name: (input shape, weight shape, bias shape or None, layer arguments)
    "groups not dividing out_channels": ((1, 4, 8, 8), (5, 2, 3, 3), None, dict(groups=2)),
    "groups zero": ((1, 4, 8, 8), (8, 2, 3, 3), None, dict(groups=0)),
    "wrong input channels": ((1, 6, 8, 8), (8, 2, 3, 3), None, dict(groups=2)),
    "input rank": ((4, 8), (8, 2, 3, 3), None, dict(groups=2)),
    "empty output": ((1, 4, 2, 2), (8, 2, 3, 3), None, dict(groups=2)),
    "same with stride": ((1, 4, 8, 8), (8, 2, 3, 3), None, dict(groups=2, padding="same", stride=2)),
    "bias shape": ((1, 4, 8, 8), (8, 2, 3, 3), (4,), dict(groups=2)),
    "stride zero": ((1, 4, 8), (8, 2, 3), None, dict(groups=2, stride=0)),
    "padding entries": ((1, 4, 8, 8), (8, 2, 3, 3), None, dict(groups=2, padding=(1, 1, 1))),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_configuration_errors_are_the_torch_frontends(name):
    input_shape, weight_shape, bias_shape, args = BAD_CALLS[name]
    x, weight = np.zeros(input_shape, np.float32), np.zeros(weight_shape, np.float32)
    bias = None if bias_shape is None else np.zeros(bias_shape, np.float32)
    torch_conv = getattr(GF, f"conv{len(weight_shape) - 2}d")
    with pytest.raises(GroupConvError) as expected:
        torch_conv(*(None if a is None else torch.from_numpy(a) for a in (x, weight, bias)), **args)
    message = re.escape(str(expected.value))
    with pytest.raises(GroupConvError, match=f"^{message}$"):
        gnp.conv(x, weight, bias, **args)
    with pytest.raises(GroupConvError, match=f"^{message}$"):
        gnp.conv_grads(np.zeros((1, 8, 6, 6), np.float32), x, weight, bias, **args)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: gnp.conv(X, np.zeros((8, 2), np.float32)),
            "weight of size [8, 2] has 2 dimensions; expected 3, 4 or 5: "
            "(out_channels, in_channels/groups, *kernel_size)",
        ),
        (lambda: gnp.conv(X, W, groups=2, padding_mode="mirror"), "padding_mode='mirror' is not supported"),
        (
            lambda: gnp.conv(X, W, groups=2, padding=8, padding_mode="reflect"),
            "padding_mode='reflect' needs padding < input size",
        ),
        (
            lambda: gnp.conv_transpose(X, np.zeros((4, 2, 3, 3), np.float32), stride=2, output_padding=2),
            "output_padding=(2, 2) must be smaller than either stride=(2, 2) or dilation=(1, 1)",
        ),
        (
            lambda: gnp.conv_transpose(X, np.zeros((4, 2, 3, 3), np.float32), padding="same"),
            "padding='same' is not supported for a transposed convolution",
        ),
        (
            lambda: gnp.conv_grads(np.zeros((1, 8, 5, 5), np.float32), X, W, groups=2),
            "grad_output of size [1, 8, 5, 5] does not fit the output: expected [1, 8, 6, 6]",
        ),
    ],
)
def test_value_errors_name_the_fix(call, message):
    with pytest.raises(GroupConvError, match=re.escape(message)):
        call()


def test_public_api_is_small():
    assert sorted(gnp.__all__) == ["Grads", "conv", "conv_grads", "conv_transpose", "conv_transpose_grads"]
    assert gnp.Grads._fields == ("input", "weight", "bias")
    # torch's argument order (GF's signatures are torch's, and readable by inspect)
    for ours, torchs in ((gnp.conv, GF.conv2d), (gnp.conv_transpose, GF.conv_transpose2d)):
        ours = list(inspect.signature(ours).parameters)[1:]
        assert ours[: len(ours) - (ours[-1] == "padding_mode")] == list(inspect.signature(torchs).parameters)[1:]


def test_module_imports_no_framework():
    """groupconv.numpy must run where torch is not installed: numpy and groupconv's spec only."""
    tree = ast.parse(inspect.getsource(gnp))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {"." * node.level + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {
        "__future__",
        "dataclasses",
        "itertools",
        "math",
        "collections.abc",
        "typing",
        "numpy",
        ".spec",
        ".errors",
    }
    assert imported <= allowed, imported - allowed
