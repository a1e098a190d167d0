"""groupconv.numpy against PyTorch and against groupconv's torch frontend.

The oracle is PyTorch itself (``torch.nn.functional.conv*`` / ``conv_transpose*``,
``torch.nn.ConvNd`` for padding modes, autograd for gradients); groupconv.functional
or groupconv.nn is checked on the same configurations, so the groupconv frontends agree too.
Configurations are cases.random_case's (the oracle tests' own): a failure names its
seed and prints the case.
"""

from __future__ import annotations

import ast
import inspect
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import (
    Case,
    assert_results_close,
    forward_and_backward,
    groupconv_result,
    per_dim,
    random_case,
    torch_reference,
)
from tiers import fast_first

import groupconv.functional as GF
from groupconv import GroupConvError
from groupconv import numpy as gnp

NUM_CONFIGS = 360
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


def numpy_results(case: Case, x, weight, bias, grad_output) -> dict[str, np.ndarray | None]:
    """groupconv.numpy's output and gradients, keyed as forward_and_backward's results."""
    args = case.functional_kwargs()
    if case.transposed:
        y = gnp.conv_transpose(x, weight, bias, **args)
        grads = gnp.conv_transpose_grads(grad_output, x, weight, bias, **args)
    else:
        y = gnp.conv(x, weight, bias, **args, padding_mode=case.padding_mode)
        grads = gnp.conv_grads(grad_output, x, weight, bias, **args, padding_mode=case.padding_mode)
    return dict(output=y, input=grads.input, weight=grads.weight, bias=grads.bias)


def _case_id(seed: int) -> str:
    """e.g. "17-conv_transpose2d-g3-float32": the seed reproduces it, the rest is for -k."""
    case = random_case(seed)
    mode = "" if case.padding_mode == "zeros" else f"-{case.padding_mode}"
    return f"{seed}-{case.function_name}-g{case.groups}{mode}-{str(case.dtype).removeprefix('torch.')}"


@pytest.mark.parametrize("seed", fast_first(range(NUM_CONFIGS), 40), ids=_case_id)
def test_agrees_with_pytorch_and_the_torch_frontend(seed):
    case = random_case(seed)
    operands = case.make_operands()
    expected = forward_and_backward(torch_reference, case, *operands)
    frontend = forward_and_backward(groupconv_result, case, *operands)
    # numpy views of the case's tensors: a sliced or channels-last input stays a strided array
    arrays = [None if t is None else np.asarray(t.detach()) for t in operands]
    arrays.append(case.make_grad_output(expected["output"].shape).numpy())
    originals = [None if a is None else a.copy() for a in arrays]
    results = numpy_results(case, *arrays)
    results = {k: None if v is None else torch.from_numpy(np.ascontiguousarray(v)) for k, v in results.items()}
    assert_results_close(results, expected, case, "PyTorch")
    assert_results_close(results, frontend, case, f"groupconv.{case.frontend}")
    for name, array, original in zip(("x", "weight", "bias", "grad_output"), arrays, originals):
        np.testing.assert_array_equal(array, original, err_msg=f"{name} was written to")  # read, never written


def test_random_cases_cover_every_numpy_case():
    cases = [random_case(seed) for seed in range(NUM_CONFIGS)]
    for dims in (1, 2, 3):
        for transposed in (False, True):
            assert sum(c.dims == dims and c.transposed == transposed for c in cases) >= 10, (dims, transposed)
    for mode in ("zeros", *PADDING_MODES):
        assert sum(not c.transposed and c.padding_mode == mode for c in cases) >= 15, mode
    for padding in ("same", "valid"):
        assert sum(c.padding == padding for c in cases) >= 15, padding
    assert sum(isinstance(c.padding, tuple) for c in cases) >= 15
    assert sum(c.transposed and any(per_dim(c.output_padding, c.dims)) for c in cases) >= 15
    assert sum(c.transposed and c.output_padding and isinstance(c.output_padding, int) for c in cases) >= 5
    assert sum(c.groups > 1 and c.in_channels == c.groups and not c.transposed for c in cases) >= 10  # depthwise
    assert sum(c.groups == 1 for c in cases) >= 30
    for step in (1, 2, 3):
        assert sum(step in per_dim(c.stride, c.dims) for c in cases) >= 30, step
        assert sum(step in per_dim(c.dilation, c.dims) for c in cases) >= 30, step
    for name in ("stride", "dilation"):  # one int for every dimension, as well as tuples
        assert sum(isinstance(getattr(c, name), int) and c.dims > 1 for c in cases) >= 30, name
    for batch in (None, 0, 1, 2, 3):
        assert sum(c.batch == batch for c in cases) >= 10, batch
    for layout in ("sliced", "channels_last"):  # strided numpy arrays
        assert sum(c.layout == layout for c in cases) >= 30, layout
    assert sum(c.bias for c in cases) >= 100 and sum(not c.bias for c in cases) >= 100
    for dtype in (torch.float32, torch.float64):
        assert sum(c.dtype == dtype for c in cases) >= 100, dtype
    for frontend in ("functional", "nn"):
        assert sum(c.frontend == frontend for c in cases) >= 30, frontend


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
