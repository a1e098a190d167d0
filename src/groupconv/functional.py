"""Grouped convolution on tensors: drop-in twins of ``torch.nn.functional``'s conv functions.

Same signatures, argument order, defaults and results as PyTorch's, computed by
groupconv and differentiable to any order.

Example:
    >>> import torch, groupconv.functional as GF
    >>> x, w = torch.randn(1, 4, 32, 32), torch.randn(8, 2, 3, 3)
    >>> GF.conv2d(x, w, groups=2).shape
    torch.Size([1, 8, 30, 30])
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F

from . import dispatch, ops, routing, tuning
from .errors import GroupConvError, OperandTypeError
from .layouts import convolution_format, memory_format, sizes
from .precision import in_float32
from .spec import ConvSpec

_REMEMBERED_CALLS = 4096  # calls whose route apply remembers (see _call_key)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D grouped convolution: (N, C, L) x (O, C/groups, kL) -> (N, O, L_out). See ``torch.nn.functional.conv1d``."""
    return _conv(input, weight, bias, dims=1, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D grouped convolution: (N, C, H, W) x (O, C/groups, kH, kW) -> (N, O, H_out, W_out).

    See ``torch.nn.functional.conv2d``; ``padding`` may be ``"same"`` or ``"valid"``.
    """
    return _conv(input, weight, bias, dims=2, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D grouped convolution: (N, C, D, H, W) x (O, C/groups, kD, kH, kW). See ``torch.nn.functional.conv3d``."""
    return _conv(input, weight, bias, dims=3, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D grouped transposed convolution: (N, C, L) x (C, O/groups, kL).

    See ``torch.nn.functional.conv_transpose1d``.
    """
    return _conv_transpose(input, weight, bias, 1, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D grouped transposed convolution: (N, C, H, W) x (C, O/groups, kH, kW).

    Output size per dim: (S - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1.
    See ``torch.nn.functional.conv_transpose2d``.
    """
    return _conv_transpose(input, weight, bias, 2, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """3-D grouped transposed convolution: (N, C, D, H, W) x (C, O/groups, kD, kH, kW).

    See ``torch.nn.functional.conv_transpose3d``.
    """
    return _conv_transpose(input, weight, bias, 3, stride, padding, output_padding, groups, dilation)


def apply(spec: ConvSpec, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Run the layer ``spec`` on tensors: what every frontend calls.

    Validates the operands against ``spec``, applies its ``padding_mode``, and keeps
    PyTorch's conventions: an unbatched input (C, *S) gives an unbatched output, and a
    channels-last input or weight gives a channels-last output.

    Example:
        >>> spec = ConvSpec(4, 8, 3, groups=2, padding="same", padding_mode="circular")
        >>> apply(spec, torch.randn(1, 4, 8, 8), torch.randn(8, 2, 3, 3)).shape
        torch.Size([1, 8, 8, 8])
    """
    cast = _autocast_dtype(input)
    if cast is not None:  # as autocast does for torch's convolutions, which are on its lower-precision list
        operands = [_autocast(t, cast) for t in (input, weight, bias)]
        with torch.autocast(input.device.type, enabled=False):  # the computation below must not be recast
            return apply(spec, *operands)
    key = _call_key(spec, input, weight, bias)
    remembered = tuning.remembered.get(key) if key is not None else None
    if remembered is not None:  # this very call was checked and routed before
        return remembered(input, weight, bias)
    _check_tensors(spec, input, weight, bias)
    spec.output_shape(sizes(input))  # validates the input's rank, channels and size
    batched = input.dim() == spec.dims + 2
    x = _batched_and_padded(spec, input)
    layout = convolution_format(x, weight)  # PyTorch computes and answers in it
    x = _in_layout(x, layout)
    inner = dataclasses.replace(spec, padding=0, padding_mode="zeros") if spec.padding_mode != "zeros" else spec
    if _widened(inner, x):
        return _unbatched(in_float32(functools.partial(apply, inner), x, weight, bias), batched)
    if torch.onnx.is_in_onnx_export():  # standard ONNX Conv/ConvTranspose nodes: see groupconv.ops
        return _unbatched(ops.torch_convolution(x, weight, inner, bias), batched)
    if x.is_complex():
        return _unbatched(_complex(inner, x, weight, bias), batched)
    route = routing.route(inner, x, weight)
    if memory_format(x) is not layout:  # x reads as both layouts (one channel or pixel): answer as PyTorch does
        route = _answering_in(layout, route)
    if key is not None:  # later calls skip to the route, through the same padding and batching
        if len(tuning.remembered) >= _REMEMBERED_CALLS:  # ever-new shapes (a varying length, say) must not grow it
            tuning.remembered.clear()
        tuning.remembered[key] = route if x is input else functools.partial(_through, spec, route, layout)
    return _unbatched(route(x, weight, bias), batched)


def _complex(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A complex layer as PyTorch computes one: three real convolutions (Gauss's trick), each routed as any other."""
    real = functools.partial(apply, spec)
    a, b = real(x.real, weight.real), real(x.imag, weight.imag)
    c = real(x.real + x.imag, weight.real + weight.imag)
    return routing.add_bias(torch.complex(a - b, c - a - b), bias, spec)


def _batched_and_padded(spec: ConvSpec, input: torch.Tensor) -> torch.Tensor:
    """``input`` batched and padded by ``spec``'s ``padding_mode`` (not zeros), as the layer's route takes it."""
    x = input if input.dim() == spec.dims + 2 else input.unsqueeze(0)
    if spec.padding_mode != "zeros":
        x = F.pad(x, [p for pair in reversed(spec.padding_pairs) for p in pair], mode=spec.padding_mode)
    return x


def _in_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    return x if memory_format(x) is layout else x.contiguous(memory_format=layout)


def _answering_in(layout: torch.memory_format, route):
    """``route``, its answer in ``layout``."""
    return lambda x, weight, bias: route(x, weight, bias).contiguous(memory_format=layout)


def _through(spec: ConvSpec, route, layout, input: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """A remembered ``route`` of the batched, zero-padded layer run on ``input`` as ``spec`` takes it, in ``layout``."""
    x = _in_layout(_batched_and_padded(spec, input), layout)
    return _unbatched(route(x, weight, bias), input.dim() == spec.dims + 2)


def _widened(spec: ConvSpec, input: torch.Tensor) -> bool:
    """Half precision that runs in float32 on CPU: float16 (PyTorch's kernels are slow and may round as they
    go), and bfloat16 where torch 2.13's oneDNN returns garbage: one output along a strided dim (the forward
    on CPUs with AMX, tests/test_oracle.py seed 202; the channels-last weight gradient, up to 1e34, seed 95),
    an input narrower than the kernel's reach (the forward on CPUs with AMX, where PyTorch's own call can also
    crash), and a channels-last one-pixel output's weight gradient (now and then, seed 21)."""
    if input.device.type != "cpu" or input.dtype not in (torch.float16, torch.bfloat16):
        return False
    output_size = spec.output_size(input.shape[2:])
    strided_to_one = any(size == 1 and stride > 1 for size, stride in zip(output_size, spec.stride))
    overhung = not spec.transposed and any(size < reach for size, reach in zip(input.shape[2:], spec.reach))
    one_pixel = math.prod(output_size) == 1 and memory_format(input) is not torch.contiguous_format
    return input.dtype == torch.float16 or strided_to_one or overhung or one_pixel


def _autocast_dtype(input) -> torch.dtype | None:
    """The dtype an enabled ``torch.autocast`` casts convolutions to on ``input``'s device, else None."""
    if not torch._C._is_any_autocast_enabled():  # one C call for every call outside autocast (torch.nn's RNNs ask it)
        return None
    if not isinstance(input, torch.Tensor):
        return None  # the full path's checks say what is wrong
    device = input.device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return None
    return torch.get_autocast_dtype(device)


def _autocast(tensor, dtype: torch.dtype):
    """Autocast's rule for an operand: floating-point tensors other than float64 are cast, the rest kept."""
    eligible = isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dtype != torch.float64
    return tensor.to(dtype) if eligible else tensor


def _unbatched(y: torch.Tensor, batched: bool) -> torch.Tensor:
    return y if batched else y.squeeze(0)


def _call_key(spec: ConvSpec, input, weight, bias) -> tuple | None:
    """What :func:`apply` checks and routes a call by: a call with the same key was checked and routed
    alike, so a layer's later calls skip straight to their route (PyTorch's convolution or groupconv's
    ops). Kept lean: right after a large convolution, each Python call here runs from cold caches
    (docs/design.md). None where the route may change per call: while dynamo traces, while ONNX export traces
    (it records PyTorch's convolution), inside groupconv.tune (which may time calls anew), or while a
    formulation is forced."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # ONNX export is one or the other
        return None
    if tuning.session_active() or dispatch.forced():
        return None
    if not (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor)):
        return None  # the full path's checks say what is wrong
    if bias is not None and not isinstance(bias, torch.Tensor):
        return None
    grad = torch.is_grad_enabled()
    bias_key = None if bias is None else (bias.shape, bias.dtype, bias.device)
    return (
        spec, input.shape, input.dtype, input.device, input.stride(), weight.shape, weight.dtype, weight.device,
        weight.stride(), bias_key, grad and input.requires_grad, grad and weight.requires_grad, torch.get_num_threads(),
    )  # fmt: skip


def _conv(input, weight, bias, *, dims, stride, padding, dilation, groups):
    check_is_tensor("weight", weight)
    spec = ConvSpec.from_weight(
        sizes(weight),
        groups=groups,
        dims=dims,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=bias is not None,
    )
    return apply(spec, input, weight, bias)


def _conv_transpose(input, weight, bias, dims, stride, padding, output_padding, groups, dilation):
    check_is_tensor("weight", weight)
    spec = ConvSpec.from_weight(
        sizes(weight),
        groups=groups,
        transposed=True,
        dims=dims,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        bias=bias is not None,
    )
    return apply(spec, input, weight, bias)


def check_is_tensor(name: str, value: object) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _check_tensors(spec: ConvSpec, input, weight, bias) -> None:
    """TypeError for an operand that is no tensor, OperandTypeError for one of the wrong dtype or device,
    GroupConvError via the spec otherwise."""
    operands = {"input": input, "weight": weight}
    if bias is not None:
        operands["bias"] = bias
    for name, tensor in operands.items():
        check_is_tensor(name, tensor)
        if not (tensor.is_floating_point() or tensor.is_complex()):
            raise OperandTypeError(
                f"{name} has dtype {tensor.dtype}; convolution needs floating point: use {name}.float()"
            )
        if tensor.dtype != input.dtype:
            raise OperandTypeError(
                f"{name} has dtype {tensor.dtype} but input has {input.dtype}; convert one, e.g. {name}.to(input.dtype)"
            )
        if tensor.device != input.device:
            raise OperandTypeError(
                f"{name} is on {tensor.device} but input is on {input.device}; use {name}.to(input.device)"
            )
    if sizes(weight) != spec.weight_shape:
        raise GroupConvError(
            f"weight of size {list(weight.shape)} does not fit the layer: expected {list(spec.weight_shape)}"
        )
    if bias is not None and sizes(bias) != (spec.out_channels,):
        raise GroupConvError(
            f"bias of size {list(bias.shape)} does not fit the layer: "
            f"expected [{spec.out_channels}], one per output channel"
        )
