"""groupconv's three convolution directions as ``torch.library`` custom ops.

    groupconv::conv_forward(x, weight, *geometry) -> y                        (N, C, *S) -> (N, O, *L)
    groupconv::conv_input_grad(grad_y, weight, *geometry, input_size) -> grad_x  (N, O, *L) -> (N, C, *S)
    groupconv::conv_weight_grad(x, grad_y, *geometry) -> grad_weight            -> (O, Cg, *K)

``geometry`` is a :class:`Geometry`: a :class:`~groupconv.ConvSpec`'s kernel size,
stride, zero padding, dilation and groups as ints and int lists, the only arguments an
op schema takes (:func:`encode` and :func:`decode`). Each op runs the formulation the
dispatcher picks, and has a fake implementation that gives its output's shape, dtype,
device and memory format without computing it; :mod:`groupconv.autograd` registers
their gradients, which are the ops again, so any order of derivative works.

Why custom ops: ``torch.compile`` (and ``torch.export``) see each op as one node whose
output it can describe, so dynamo traces a model through groupconv without graph
breaks, and the compiled graph still runs groupconv's own kernels.

Memory format: an output is channels-last when the op's first operand is
channels-last (and not also contiguous), otherwise contiguous; the weight gradient is
always contiguous. The real op converts what the formulation returns to that format,
because a compiled graph trusts the fake implementation's strides.

ONNX: these ops have no ONNX counterpart, and a plain ``torch.onnx.export(model, (x,), f)``
passes no translation table for them. So while ONNX export traces the model
(``torch.onnx.is_in_onnx_export()``), :func:`groupconv.functional.apply` computes with
:func:`torch_convolution`, PyTorch's own convolution, which both exporters (the default
``dynamo=True`` and the TorchScript one, ``dynamo=False``) write as standard ONNX
``Conv`` / ``ConvTranspose`` nodes with a ``group`` attribute. The exported model
computes the same convolution as groupconv, within float rounding. (Should the default
exporter's non-strict ``torch.export`` fail on some model and fall back to strict
tracing, dynamo reads ``is_in_onnx_export()`` as False and these ops reach the ONNX
translator, which rejects them: the fallback, not this path, is what failed.)

Example:
    >>> import torch, groupconv
    >>> spec = groupconv.ConvSpec(4, 8, 3, groups=2, padding=1)
    >>> x, w = torch.randn(1, 4, 5, 5), torch.randn(8, 2, 3, 3)
    >>> torch.ops.groupconv.conv_forward(x, w, *encode(spec)).shape
    torch.Size([1, 8, 5, 5])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from . import dispatch
from .errors import GroupConvError
from .formulations import _native as native
from .layouts import empty, memory_format
from .spec import ConvSpec


class Geometry(NamedTuple):
    """A convolution's geometry as op-schema types; ``padding`` is (before, after) per dim, flattened."""

    kernel_size: list[int]
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    groups: int


def encode(spec: ConvSpec) -> Geometry:
    """The geometry of ``spec``, as the custom ops take it (``padding_mode`` and bias are the frontend's)."""
    padding = [p for pair in spec.padding_pairs for p in pair]
    return Geometry(list(spec.kernel_size), list(spec.stride), padding, list(spec.dilation), spec.groups)


def decode(geometry: Geometry, in_channels: int, out_channels: int) -> ConvSpec:
    """The (non-transposed, bias-free) :class:`ConvSpec` of ``geometry``: the inverse of :func:`encode`.

    Example:
        >>> spec = ConvSpec(4, 8, 4, padding="same", bias=False)
        >>> decode(encode(spec), 4, 8).padding_pairs == spec.padding_pairs
        True
    """
    # int() pins any symbolic int torch.compile passes in (an int argument that varied): ConvSpec takes ints
    *sizes, groups = geometry
    kernel_size, stride, padding, dilation = (tuple(map(int, values)) for values in sizes)
    return _spec(kernel_size, stride, padding, dilation, int(groups), int(in_channels), int(out_channels))


@functools.lru_cache(maxsize=4096)
def _spec(kernel_size, stride, padding, dilation, groups, in_channels, out_channels) -> ConvSpec:
    """:func:`decode`'s work, once per geometry: validating a ConvSpec takes longer than a small convolution."""
    before, after = padding[::2], padding[1::2]
    spec = ConvSpec(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        before if before == after else "same",  # only "same" pads one side more
        dilation,
        groups,
        bias=False,
        dims=len(kernel_size),
    )
    if tuple(p for pair in spec.padding_pairs for p in pair) != padding:
        raise GroupConvError(
            f"padding={list(padding)} is invalid: give (before, after) per dim, equal on both sides "
            f"or as padding='same' pads"
        )
    return spec


def geometry_of(inputs: Sequence) -> Geometry:
    """The :class:`Geometry` among a custom op's inputs: what follows its two tensors."""
    return Geometry._make(inputs[2 : 2 + len(Geometry._fields)])


def torch_convolution(
    x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``spec``'s zero-padded convolution (or transposed convolution) by PyTorch's own
    ``torch.convolution``: what ONNX export records, as one ``Conv`` / ``ConvTranspose``, and
    what runs a layer whose every direction the dispatcher gives to PyTorch."""
    extra = [hi - lo for lo, hi in reversed(spec.padding_pairs)]
    if any(extra):  # padding="same" with an even reach: the odd extra goes after, as F.conv2d does
        x = F.pad(x, [p for e in extra for p in (0, e)])
    return torch.convolution(x, weight, bias, *convolution_arguments(spec))


def convolution_arguments(spec: ConvSpec) -> tuple:
    """``torch.convolution``'s arguments after (input, weight, bias) for ``spec``: stride, the padding
    before each dim (the odd extra of an uneven padding is the caller's), dilation, transposed,
    output_padding, groups."""
    before = [lo for lo, _ in spec.padding_pairs]
    return spec.stride, before, spec.dilation, spec.transposed, spec.output_padding, spec.groups


def _op(fn):
    """Register ``fn`` as the op groupconv::<its name>, schema from its annotations; the op (its overload).

    ``torch.library.custom_op`` would do the same, but it wraps the implementation in
    ``torch._disable_dynamo``, whose first call imports ``torch._dynamo``: a second on a
    user's first narrow-group call. ``torch.compile`` sees the op through its fake
    implementation either way."""
    qualname = f"groupconv::{fn.__name__}"
    torch.library.define(qualname, torch.library.infer_schema(fn, mutates_args=()))
    torch.library.impl(qualname, "default", fn)
    return getattr(torch.ops.groupconv, fn.__name__).default


@_op
def conv_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    spec = spec_of_weight(Geometry(kernel_size, stride, padding, dilation, groups), weight)
    return answer("forward", x, weight, spec)


@_op
def conv_input_grad(
    grad_y: torch.Tensor,
    weight: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    input_size: Sequence[int],
) -> torch.Tensor:
    """dL/dx of conv(x, weight), also the transposed convolution: (N, O, *L) -> (N, C, *input_size)."""
    spec = spec_of_weight(Geometry(kernel_size, stride, padding, dilation, groups), weight)
    return answer("input_grad", grad_y, weight, spec, tuple(input_size))


@_op
def conv_weight_grad(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> torch.Tensor:
    """dL/dweight of conv(x, weight): (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    spec = decode(Geometry(kernel_size, stride, padding, dilation, groups), x.shape[1], grad_y.shape[1])
    return answer("weight_grad", x, grad_y, spec)


def answer(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest, formulation=None) -> torch.Tensor:
    """``direction`` of ``spec`` by ``formulation`` (default: the dispatcher's choice for this call), in the
    layout its op answers in: the first operand's, the weight gradient contiguous."""
    formulation = formulation or dispatch.choose(direction, a, b, spec, *rest)
    result = getattr(formulation, direction)(a, b, spec, *rest)
    return result.contiguous(memory_format=torch.contiguous_format if direction == "weight_grad" else memory_format(a))


@torch.library.register_fake("groupconv::conv_forward")
def _conv_forward_fake(x, weight, kernel_size, stride, padding, dilation, groups):
    spec = spec_of_weight(Geometry(kernel_size, stride, padding, dilation, groups), weight)
    shape = (x.shape[0], weight.shape[0], *spec.output_size(x.shape[2:]))
    return empty(shape, like=x)


@torch.library.register_fake("groupconv::conv_input_grad")
def _conv_input_grad_fake(grad_y, weight, kernel_size, stride, padding, dilation, groups, input_size):
    shape = (grad_y.shape[0], weight.shape[1] * groups, *input_size)
    return empty(shape, like=grad_y)


@torch.library.register_fake("groupconv::conv_weight_grad")
def _conv_weight_grad_fake(x, grad_y, kernel_size, stride, padding, dilation, groups):
    shape = (grad_y.shape[1], x.shape[1] // groups, *kernel_size)
    return empty(shape, like=x, layout=torch.contiguous_format)


# FlopCounterMode counts aten's convolutions; it counts these alike: 2 x MACs, and each direction
# has the forward's MACs, (elements of y or grad_y) x (Cg x kernel taps). (A layer that PyTorch runs
# whole, see groupconv.routing, is counted by PyTorch's formulas, which may count a grouped weight
# gradient `groups` times over: docs/design.md, "Custom ops, compile and ONNX".) The native kernels'
# operators, which a bound layer (groupconv.autograd.bound) calls directly, have the same operands first
# and are counted alike; inside a custom op the counter sees only the custom op.
def _forward_flops(x_shape, weight_shape, *geometry, out_shape, **_) -> int:
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


def _input_grad_flops(grad_y_shape, weight_shape, *geometry, out_shape, **_) -> int:
    return 2 * math.prod(grad_y_shape) * math.prod(weight_shape[1:])


def _weight_grad_flops(x_shape, grad_y_shape, *geometry, out_shape, **_) -> int:
    return 2 * math.prod(grad_y_shape) * math.prod(out_shape[1:])


for _library in (torch.ops.groupconv, native.ops):
    if _library is not None:  # no native kernels built: only the custom ops
        register_flop_formula(_library.conv_forward)(_forward_flops)
        register_flop_formula(_library.conv_input_grad)(_input_grad_flops)
        register_flop_formula(_library.conv_weight_grad)(_weight_grad_flops)


def spec_of_weight(geometry: Geometry, weight: torch.Tensor) -> ConvSpec:
    """The convolution of ``geometry`` whose weight (O, Cg, *K) is ``weight``."""
    return decode(geometry, weight.shape[1] * geometry.groups, weight.shape[0])
