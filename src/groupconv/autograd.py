"""Differentiation of grouped convolution, to any order.

Convolution is bilinear, and its two gradients are convolutions of the same geometry:

    y  = conv(x, w)                 x̄ = conv_input_grad(ȳ, w)     w̄ = conv_weight_grad(x, ȳ)

``conv_input_grad`` is the transposed convolution. Each of the three is a custom op of
:mod:`groupconv.ops`; this module registers each op's backward, built from the other
two ops, so the gradient of a gradient (and so on) is again these ops: double
backward comes free, eagerly and under ``torch.compile``.
"""

from __future__ import annotations

import torch

from . import ops
from .spec import ConvSpec


def conv(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight), zero-padded by ``spec.padding_pairs``: (N, C, *S) -> (N, O, *L)."""
    return ops.conv_forward(x, weight, *ops.encode(spec))


def conv_input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """The transposed convolution: (N, O, *L) -> (N, C, *input_size)."""
    return ops.conv_input_grad(grad_y, weight, *ops.encode(spec), list(input_size))


def conv_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The weight gradient: (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    return ops.conv_weight_grad(x, grad_y, *ops.encode(spec))


def _save_operands(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:2])
    ctx.geometry = ops.geometry_of(inputs)


def _conv_cropped(x: torch.Tensor, weight: torch.Tensor, geometry: ops.Geometry, like: torch.Tensor) -> torch.Tensor:
    """conv(x, weight) cut to ``like``'s size: a transposed convolution's output_padding
    can give x rows that no output position of ``like`` reads."""
    return ops.conv_forward(x, weight, *geometry)[(..., *map(slice, like.shape[2:]))]


def _gradients(ctx, grad_a, grad_b) -> tuple:
    """The two tensor operands' gradients, and None for each of the op's other inputs."""
    return grad_a, grad_b, *[None] * (len(ctx.needs_input_grad) - 2)


def _conv_backward(ctx, grad_y):
    x, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[:2]
    grad_x = ops.conv_input_grad(grad_y, weight, *ctx.geometry, list(x.shape[2:])) if need_x else None
    grad_w = ops.conv_weight_grad(x, grad_y, *ctx.geometry) if need_w else None
    return _gradients(ctx, grad_x, grad_w)


def _conv_input_grad_backward(ctx, grad_grad_x):
    grad_y, weight = ctx.saved_tensors
    need_y, need_w = ctx.needs_input_grad[:2]
    d_grad_y = _conv_cropped(grad_grad_x, weight, ctx.geometry, grad_y) if need_y else None
    d_weight = ops.conv_weight_grad(grad_grad_x, grad_y, *ctx.geometry) if need_w else None
    return _gradients(ctx, d_grad_y, d_weight)


def _conv_weight_grad_backward(ctx, grad_grad_w):
    x, grad_y = ctx.saved_tensors
    need_x, need_y = ctx.needs_input_grad[:2]
    d_x = ops.conv_input_grad(grad_y, grad_grad_w, *ctx.geometry, list(x.shape[2:])) if need_x else None
    d_grad_y = _conv_cropped(x, grad_grad_w, ctx.geometry, grad_y) if need_y else None
    return _gradients(ctx, d_x, d_grad_y)


torch.library.register_autograd("groupconv::conv_forward", _conv_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_input_grad", _conv_input_grad_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_weight_grad", _conv_weight_grad_backward, setup_context=_save_operands)
