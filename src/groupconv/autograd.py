"""Differentiation of grouped convolution, to any order.

Convolution is bilinear, and its two gradients are convolutions of the same geometry:

    y  = conv(x, w)                 x̄ = conv_input_grad(ȳ, w)     w̄ = conv_weight_grad(x, ȳ)

``conv_input_grad`` is the transposed convolution. Each of the three is a custom op of
:mod:`groupconv.ops`; this module registers each op's backward, built from the other
two ops, so the gradient of a gradient (and so on) is again these ops: double
backward comes free, eagerly and under ``torch.compile``.

:func:`bound` runs an eager layer on formulations chosen once for its calls, skipping the
ops' per-call dispatch (docs/design.md, "Bound layers"); its double backward is the ops'.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import torch

from . import dispatch, ops
from .layouts import memory_format
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


class Chosen(NamedTuple):
    """The formulation :mod:`groupconv.dispatch` chose for each direction of one layer's calls (None: one the
    layer does not run), and the layout (:func:`groupconv.dispatch.layout`) of the output gradient it chose for."""

    forward: ModuleType | None
    input_grad: ModuleType | None
    weight_grad: ModuleType | None
    grad_layout: str | None


def bound(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, chosen: Chosen, output_size=None) -> torch.Tensor:
    """conv(x, weight), or with ``output_size`` the transposed convolution (its input gradient), by the
    formulations ``chosen`` for calls like this one: what :func:`conv` computes, with one dispatch per layer
    instead of one per call."""
    if torch._C._are_functorch_transforms_active():  # vmap, grad: only the custom ops run under them
        return conv(x, weight, spec) if output_size is None else conv_input_grad(x, weight, spec, output_size)
    if chosen.grad_layout is None and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return _output(x, weight, spec, chosen, output_size)  # nothing to differentiate: no autograd node
    return _Bound.apply(x, weight, spec, chosen, output_size)


def _output(a: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, chosen: Chosen, output_size) -> torch.Tensor:
    if output_size is None:
        y = chosen.forward.forward(a, weight, spec)
    else:
        y = chosen.input_grad.input_grad(a, weight, spec, tuple(output_size))
    return y.contiguous(memory_format=memory_format(a))


class _Bound(torch.autograd.Function):
    """A layer on its chosen formulations. Its backward takes the custom ops where it must itself be
    differentiable (double backward) or meets an output gradient unlike the one chosen for (another
    layout, a broadcast one): they dispatch per call. (A ``setup_context`` would let functorch run it, and
    cost every call an ``inspect.signature``.)"""

    @staticmethod
    def forward(ctx, a, weight, spec, chosen, output_size):
        ctx.save_for_backward(a, weight)
        ctx.spec, ctx.chosen, ctx.transposed = spec, chosen, output_size is not None
        return _output(a, weight, spec, chosen, output_size)

    @staticmethod
    def backward(ctx, grad):
        if not _runs_bound(ctx, grad):
            ctx.geometry = ops.encode(ctx.spec)
            return (_conv_input_grad_backward if ctx.transposed else _conv_backward)(ctx, grad)
        a, weight = ctx.saved_tensors
        need_a, need_w = ctx.needs_input_grad[:2]
        spec, chosen = ctx.spec, ctx.chosen
        grad_w = chosen.weight_grad.weight_grad(*((grad, a) if ctx.transposed else (a, grad)), spec) if need_w else None
        if not need_a:
            grad_a = None
        elif ctx.transposed:
            grad_a = chosen.forward.forward(grad, weight, spec)[(..., *map(slice, a.shape[2:]))]
        else:
            grad_a = chosen.input_grad.input_grad(grad, weight, spec, tuple(a.shape[2:]))
        return _gradients(ctx, _in_layout_of(grad_a, grad), None if grad_w is None else grad_w.contiguous())


def _runs_bound(ctx, grad: torch.Tensor) -> bool:
    """Whether the chosen formulations give this backward: it is not itself differentiated, the output
    gradient is in the layout they were chosen for, and one was chosen for each gradient asked."""
    chosen, (need_a, need_w) = ctx.chosen, ctx.needs_input_grad[:2]
    for_a = chosen.forward if ctx.transposed else chosen.input_grad
    return (
        not torch.is_grad_enabled()
        and dispatch.layout(grad) == chosen.grad_layout
        and (for_a is not None or not need_a)
        and (chosen.weight_grad is not None or not need_w)
    )


def _in_layout_of(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.contiguous(memory_format=memory_format(like))


torch.library.register_autograd("groupconv::conv_forward", _conv_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_input_grad", _conv_input_grad_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_weight_grad", _conv_weight_grad_backward, setup_context=_save_operands)
