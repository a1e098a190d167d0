"""Differentiation of grouped convolution, to any order.

Convolution is bilinear, and its two gradients are convolutions of the same geometry:

    y  = conv(x, w)                 x̄ = conv_input_grad(ȳ, w)     w̄ = conv_weight_grad(x, ȳ)

``conv_input_grad`` is the transposed convolution. Each of the three ops is a
``torch.autograd.Function`` whose backward is built from the other two, so the
gradient of a gradient (and so on) is again these ops: double backward comes free.
"""

from __future__ import annotations

import torch

from . import formulations
from .spec import ConvSpec


def conv(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight), zero-padded by ``spec.padding_pairs``: (N, C, *S) -> (N, O, *L)."""
    return _Conv.apply(x, weight, spec)


def conv_input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """The transposed convolution: (N, O, *L) -> (N, C, *input_size)."""
    return _ConvInputGrad.apply(grad_y, weight, spec, tuple(input_size))


def conv_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The weight gradient: (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    return _ConvWeightGrad.apply(x, grad_y, spec)


def _conv_cropped(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, like: torch.Tensor) -> torch.Tensor:
    """conv(x, weight) cut to ``like``'s size: a transposed convolution's output_padding
    can give x rows that no output position of ``like`` reads."""
    return conv(x, weight, spec)[(..., *map(slice, like.shape[2:]))]


def _compute(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest):
    """Run one direction of the formulation chosen for ``spec``."""
    return getattr(formulations.choose(spec), direction)(a, b, spec, *rest)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, spec):
        ctx.save_for_backward(x, weight)
        ctx.spec = spec
        return _compute("forward", x, weight, spec)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        need_x, need_w, _ = ctx.needs_input_grad
        grad_x = conv_input_grad(grad_y, weight, ctx.spec, x.shape[2:]) if need_x else None
        grad_w = conv_weight_grad(x, grad_y, ctx.spec) if need_w else None
        return grad_x, grad_w, None


class _ConvInputGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_y, weight, spec, input_size):
        ctx.save_for_backward(grad_y, weight)
        ctx.spec = spec
        return _compute("input_grad", grad_y, weight, spec, input_size)

    @staticmethod
    def backward(ctx, grad_grad_x):
        grad_y, weight = ctx.saved_tensors
        need_y, need_w, _, _ = ctx.needs_input_grad
        d_grad_y = _conv_cropped(grad_grad_x, weight, ctx.spec, grad_y) if need_y else None
        d_weight = conv_weight_grad(grad_grad_x, grad_y, ctx.spec) if need_w else None
        return d_grad_y, d_weight, None, None


class _ConvWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grad_y, spec):
        ctx.save_for_backward(x, grad_y)
        ctx.spec = spec
        return _compute("weight_grad", x, grad_y, spec)

    @staticmethod
    def backward(ctx, grad_grad_w):
        x, grad_y = ctx.saved_tensors
        need_x, need_y, _ = ctx.needs_input_grad
        d_x = conv_input_grad(grad_y, grad_grad_w, ctx.spec, x.shape[2:]) if need_x else None
        d_grad_y = _conv_cropped(x, grad_grad_w, ctx.spec, grad_y) if need_y else None
        return d_x, d_grad_y, None
