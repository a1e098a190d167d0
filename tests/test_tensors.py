"""Tensors of every kind: half precision, empty batches, layouts, unbatched inputs, CUDA."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

import groupconv
import groupconv.functional as GF
from groupconv import ConvSpec, dispatch


def operands(dtype=torch.float32, batch=2, device="cpu"):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, 7, 7, generator=generator)
    w = torch.randn(9, 2, 3, 3, generator=generator)
    b = torch.randn(9, generator=generator)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, w, b)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    x, w, b = operands(dtype)
    y = GF.conv2d(x, w, b, groups=3, padding=1)
    assert y.dtype == dtype
    exact = F.conv2d(*(t.detach().double() for t in (x, w, b)), groups=3, padding=1)
    # float32 accumulation leaves only the final rounding to `dtype`: half an ulp
    torch.testing.assert_close(y.double(), exact, rtol=torch.finfo(dtype).eps, atol=1e-3)
    grads = torch.autograd.grad(y.float().sum(), (x, w, b))
    assert [g.dtype for g in grads] == [dtype] * 3


@pytest.mark.parametrize(
    ("shape", "kernel", "geometry"),
    [
        ((4, 1, 6, 6), (3, 1, 1, 2), dict(stride=(1, 4), dilation=(1, 3))),  # one output along a strided dim
        ((4, 4, 9, 5), (3, 4, 3, 2), dict(stride=(1, 4), dilation=(1, 3))),
        ((3, 6, 1, 8, 8), (2, 3, 2, 3, 2), dict(stride=(1, 5, 5), padding=(1, 1, 0), dilation=(1, 2, 1), groups=2)),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_where_onednn_errs_is_right(shape, kernel, geometry, channels_last):
    """torch 2.13's oneDNN answered these with values off by their own size on a CPU with AMX; the last has an
    input narrower than the kernel's reach along D."""
    generator = torch.Generator().manual_seed(0)
    x, w = (torch.randn(size, generator=generator).bfloat16() for size in (shape, kernel))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    conv, exact_conv = (GF.conv2d, F.conv2d) if x.dim() == 4 else (GF.conv3d, F.conv3d)
    y = conv(x, w, **geometry)
    assert y.dtype == torch.bfloat16
    exact = exact_conv(x.double(), w.double(), **geometry)
    torch.testing.assert_close(y.double(), exact, rtol=torch.finfo(torch.bfloat16).eps, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("route", [None, "direct"])  # as routed (PyTorch's own, in dtype), and groupconv's kernels
def test_half_precision_transposed_layer_rounds_once(dtype, route):
    """The bias too is added before the one rounding, on PyTorch's route and on groupconv's."""
    x, _, b = operands(dtype)
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    with dispatch.use(route) if route else contextlib.nullcontext():
        y = GF.conv_transpose2d(x, w, b, groups=3, stride=2)
    assert y.dtype == dtype
    exact = F.conv_transpose2d(*(t.detach().double() for t in (x, w, b)), groups=3, stride=2)
    torch.testing.assert_close(y.double(), exact, rtol=torch.finfo(dtype).eps, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("direction", ["forward", "input_grad", "weight_grad"])
def test_groupconv_kernels_take_half_precision_in_float32(dtype, direction):
    """Given half-precision operands directly, each of the kernels' directions computes in float32."""
    x, w, _ = (t.detach() for t in operands(dtype))
    spec = ConvSpec(6, 9, 3, groups=3, padding=1, bias=False)
    grad_y = torch.randn(2, 9, 7, 7).to(dtype)
    calls = {"forward": (x, w, ()), "input_grad": (grad_y, w, ((7, 7),)), "weight_grad": (x, grad_y, ())}
    a, b, rest = calls[direction]
    with dispatch.use("direct"):
        got = dispatch.compute(direction, a, b, spec, *rest)
    with dispatch.use("im2col"):
        exact = dispatch.compute(direction, a.double(), b.double(), spec, *rest)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), exact, rtol=torch.finfo(dtype).eps, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize(
    ("layer", "kwargs"),
    [
        (torch.nn.Conv2d, {"padding": "same", "padding_mode": "circular", "dilation": 2}),
        (torch.nn.Conv1d, {"stride": 2, "bias": False}),
        (torch.nn.ConvTranspose2d, {"stride": 2, "output_padding": 1}),
    ],
)
def test_complex_layers_compute_and_differentiate_as_pytorchs(dtype, layer, kwargs):
    torch.manual_seed(0)
    theirs = layer(6, 9, 3, groups=3, dtype=dtype, **kwargs)
    ours = groupconv.nn.convert(copy.deepcopy(theirs))
    x = torch.randn(2, 6, *(7,) * (theirs.weight.dim() - 2), dtype=dtype, requires_grad=True)
    y, expected = ours(x), theirs(x)
    torch.testing.assert_close(y, expected)
    cotangent = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, *ours.parameters()), cotangent)
    torch.testing.assert_close(got, torch.autograd.grad(expected, (x, *theirs.parameters()), cotangent))
    torch.testing.assert_close(ours(x[0]), theirs(x[0]))  # unbatched


def test_empty_batch_forward_and_backward():
    x, w, b = operands(batch=0)
    y = GF.conv2d(x, w, b, groups=3)
    assert y.shape == (0, 9, 5, 5)
    gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
    assert gx.shape == x.shape and torch.count_nonzero(gw) == 0 and torch.count_nonzero(gb) == 0
    assert GF.conv_transpose2d(torch.randn(0, 4, 3, 3), torch.randn(4, 2, 2, 2), groups=2).shape == (0, 4, 4, 4)


def test_channels_last_in_channels_last_out():
    x, w, b = operands()
    x_last = x.detach().contiguous(memory_format=torch.channels_last)
    y = GF.conv2d(x_last, w, b, groups=3)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, F.conv2d(x.detach(), w, b, groups=3), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("x_last", [False, True])
@pytest.mark.parametrize("w_last", [False, True])
def test_output_layout_follows_pytorch_for_either_operand_channels_last(transposed, x_last, w_last):
    """A model moved to channels-last and given channels-first input answers channels-last, as PyTorch does."""
    x, _, b = (t.detach() for t in operands())
    w = torch.randn(6, 3, 3, 3) if transposed else torch.randn(9, 2, 3, 3)
    x = x.contiguous(memory_format=torch.channels_last) if x_last else x
    w = w.contiguous(memory_format=torch.channels_last) if w_last else w
    ours, theirs = (GF.conv_transpose2d, F.conv_transpose2d) if transposed else (GF.conv2d, F.conv2d)
    expected = theirs(x, w, b[: w.shape[1] * 3] if transposed else b, groups=3)
    for _ in range(2):  # the first call routes the layer, the second takes the remembered route
        y = ours(x, w, b[: w.shape[1] * 3] if transposed else b, groups=3)
        assert y.stride() == expected.stride()
        torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)


@pytest.mark.parametrize(
    ("function", "x", "w", "groups"),
    [
        # MobileNet after model.to(channels_last), its input left channels-first: the depthwise weight is
        # contiguous too, but its strides read as channels-last
        ("conv2d", torch.randn(2, 8, 9, 9), channels_last(torch.randn(8, 1, 3, 3)), 8),
        ("conv_transpose2d", torch.randn(2, 8, 5, 5), channels_last(torch.randn(8, 1, 3, 3)), 8),
        # a grayscale image in channels-last is contiguous too
        ("conv2d", channels_last(torch.randn(2, 1, 9, 9)), torch.randn(8, 1, 3, 3), 1),
        # PyTorch computes 3-D layers in float64 and float16 channels-first on CPU
        ("conv3d", channels_last(torch.randn(2, 4, 5, 5, 5, dtype=torch.float64)), torch.randn(4, 2, 3, 3, 3), 2),
        ("conv3d", channels_last(torch.randn(2, 4, 5, 5, 5, dtype=torch.float16)), torch.randn(4, 2, 3, 3, 3), 2),
        ("conv3d", channels_last(torch.randn(2, 4, 5, 5, 5)), torch.randn(4, 2, 3, 3, 3), 2),
    ],
    ids=["depthwise_weight", "transposed_depthwise_weight", "one_channel", "3d_float64", "3d_float16", "3d_float32"],
)
def test_output_layout_follows_pytorch_where_a_tensor_reads_as_either_layout(function, x, w, groups):
    w = w.to(x.dtype)
    expected = getattr(F, function)(x, w, groups=groups)
    for _ in range(2):  # the first call routes the layer, the second takes the remembered route
        y = getattr(GF, function)(x, w, groups=groups)
        assert y.stride() == expected.stride()
        torch.testing.assert_close(y, expected)


def test_a_3d_layer_answers_channels_first_when_onednn_is_off_as_pytorch_does():
    """PyTorch's own 3-D kernel computes channels-first: with oneDNN disabled a channels-last input answers so."""
    x, w = channels_last(torch.randn(2, 4, 5, 5, 5)), torch.randn(4, 2, 3, 3, 3)
    with torch.backends.mkldnn.flags(enabled=False):
        expected, y = F.conv3d(x, w, groups=2), GF.conv3d(x, w, groups=2)
    assert y.stride() == expected.stride() and expected.is_contiguous()
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("grad_layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("x_layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("route", [None, "direct"])
def test_gradients_come_in_the_layout_pytorch_gives_whatever_the_output_gradients(x_layout, grad_layout, route):
    """PyTorch answers a layer's input and weight gradients in the layout it computes in (the input's here):
    a channels-first output gradient into a channels-last layer (after a view, say) does not change it."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 40, 40, dtype=torch.float64, generator=generator)  # large enough for groupconv's kernels
    x = (channels_last(x) if x_layout == "channels_last" else x).requires_grad_()
    w = torch.randn(64, 2, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    grad_y = torch.randn(2, 64, 40, 40, dtype=torch.float64, generator=generator)
    grad_y = channels_last(grad_y) if grad_layout == "channels_last" else grad_y
    expected = torch.autograd.grad(F.conv2d(x, w, padding=1, groups=32), (x, w), grad_y)
    with dispatch.use(route) if route else contextlib.nullcontext():
        grads = torch.autograd.grad(GF.conv2d(x, w, padding=1, groups=32), (x, w), grad_y)
    for grad, oracle in zip(grads, expected):
        assert grad.stride() == oracle.stride()
        torch.testing.assert_close(grad, oracle)


@pytest.mark.parametrize("route", [None, "direct", "native_channels_last"])
def test_strides_that_only_look_channels_last_run_as_pytorch_reads_them(route):
    """A (1, C, 1, W) transposed view passes is_contiguous(channels_last), but PyTorch reads it as
    channels-first; computing it channels-last (a channels-last weight) gets torch 2.13's float64 grouped
    weight gradient wrong."""
    sequence = torch.randn(7, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = sequence.t()[None, :, None, :].requires_grad_()
    w = torch.randn(12, 4, 1, 2, dtype=torch.float64, requires_grad=True)
    with dispatch.use(route) if route else contextlib.nullcontext():
        y = GF.conv2d(x, w, groups=3)
        grads = torch.autograd.grad(y.sum(), (x, w))
    x_first, w_first = (t.detach().contiguous().requires_grad_() for t in (x, w))
    y_ref = F.conv2d(x_first, w_first, groups=3)
    torch.testing.assert_close(y, y_ref)
    for grad, expected in zip(grads, torch.autograd.grad(y_ref.sum(), (x_first, w_first))):
        torch.testing.assert_close(grad, expected)


def test_unbatched_input_gives_unbatched_output():
    x, w, _ = operands()
    transposed_weight = torch.randn(6, 3, 3, 3)
    for ours, theirs, weight in (
        (GF.conv2d, F.conv2d, w),
        (GF.conv_transpose2d, F.conv_transpose2d, transposed_weight),
    ):
        y = ours(x[0], weight, None, groups=3)
        torch.testing.assert_close(y, theirs(x[0], weight, None, groups=3), rtol=1e-4, atol=1e-5)
        assert y.dim() == 3


def test_non_contiguous_weight():
    x, _, _ = operands()
    w_sliced = torch.randn(9, 2, 6, 6)[..., ::2, ::2]
    torch.testing.assert_close(GF.conv2d(x, w_sliced, groups=3), F.conv2d(x, w_sliced, groups=3), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_pytorch():
    x, w, b = operands(device="cuda")
    y = GF.conv2d(x, w, b, groups=3, stride=2, padding=1)
    assert y.device.type == "cuda"
    expected = F.conv2d(x, w, b, groups=3, stride=2, padding=1)
    torch.testing.assert_close(y, expected, rtol=1e-3, atol=1e-3)
    for got, want in zip(torch.autograd.grad(y.sum(), (x, w, b)), torch.autograd.grad(expected.sum(), (x, w, b))):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
