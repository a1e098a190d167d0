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


class _CustomOps(NamedTuple):
    """A layer's three directions as the custom ops: differentiable, each choosing its formulation per call."""

    geometry: ops.Geometry

    def forward(self, x, weight):
        return ops.conv_forward(x, weight, *self.geometry)

    def input_grad(self, grad_y, weight, input_size):
        return ops.conv_input_grad(grad_y, weight, *self.geometry, list(input_size))

    def weight_grad(self, x, grad_y):
        return ops.conv_weight_grad(x, grad_y, *self.geometry)


class Chosen(NamedTuple):
    """The formulation :mod:`groupconv.dispatch` chose for each direction of one layer's calls (None: one the
    layer does not run), and the layout (:func:`groupconv.dispatch.layout`) of the output gradient it chose for."""

    forward: ModuleType | None
    input_grad: ModuleType | None
    weight_grad: ModuleType | None
    grad_layout: str | None


class _Formulations(NamedTuple):
    """A layer's three directions by the formulations ``chosen`` for them (not differentiable)."""

    chosen: Chosen
    spec: ConvSpec

    def forward(self, x, weight):
        return ops.answer("forward", x, weight, self.spec, formulation=self.chosen.forward)

    def input_grad(self, grad_y, weight, input_size):
        formulation = self.chosen.input_grad
        return ops.answer("input_grad", grad_y, weight, self.spec, tuple(input_size), formulation=formulation)

    def weight_grad(self, x, grad_y):
        return ops.answer("weight_grad", x, grad_y, self.spec, formulation=self.chosen.weight_grad)


def _save_operands(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:2])
    ctx.directions = _CustomOps(ops.geometry_of(inputs))


def _cropped(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` cut to ``like``'s size: a transposed convolution's output_padding can give conv(x) rows
    that no output position of ``like`` reads."""
    return t[(..., *map(slice, like.shape[2:]))]


def _gradients(ctx, grad_a, grad_b) -> tuple:
    """The two tensor operands' gradients, and None for each of the op's other inputs."""
    return grad_a, grad_b, *[None] * (len(ctx.needs_input_grad) - 2)


def _like(t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``t`` in the layout of a layer's input ``a``: PyTorch answers both of a layer's gradients in the layout
    it computes in, whatever the output gradient's."""
    return t.contiguous(memory_format=memory_format(a))


# Each op's backward, by the layer's ``ctx.directions``: the custom ops, or a bound layer's formulations.
def _conv_backward(ctx, grad_y):
    x, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[:2]
    grad_y = _like(grad_y, x)
    grad_x = ctx.directions.input_grad(grad_y, weight, x.shape[2:]) if need_x else None
    grad_w = _like(ctx.directions.weight_grad(x, grad_y), x) if need_w else None
    return _gradients(ctx, grad_x, grad_w)


def _conv_input_grad_backward(ctx, grad_grad_x):
    grad_y, weight = ctx.saved_tensors
    need_y, need_w = ctx.needs_input_grad[:2]
    grad_grad_x = _like(grad_grad_x, grad_y)
    d_grad_y = _cropped(ctx.directions.forward(grad_grad_x, weight), grad_y) if need_y else None
    d_weight = _like(ctx.directions.weight_grad(grad_grad_x, grad_y), grad_y) if need_w else None
    return _gradients(ctx, d_grad_y, d_weight)


def _conv_weight_grad_backward(ctx, grad_grad_w):
    x, grad_y = ctx.saved_tensors
    need_x, need_y = ctx.needs_input_grad[:2]
    d_x = ctx.directions.input_grad(grad_y, grad_grad_w, x.shape[2:]) if need_x else None
    d_grad_y = _cropped(ctx.directions.forward(x, grad_grad_w), grad_y) if need_y else None
    return _gradients(ctx, d_x, d_grad_y)


def bound(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, chosen: Chosen, output_size=None) -> torch.Tensor:
    """conv(x, weight), or with ``output_size`` the transposed convolution (its input gradient), by the
    formulations ``chosen`` for calls like this one: what :func:`conv` computes, with one dispatch per layer
    instead of one per call."""
    if torch._C._are_functorch_transforms_active():  # vmap, grad: only the custom ops run under them
        return _output(_CustomOps(ops.encode(spec)), x, weight, output_size)
    if chosen.grad_layout is None and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return _output(_Formulations(chosen, spec), x, weight, output_size)  # nothing to differentiate: no node
    return _Bound.apply(x, weight, spec, chosen, output_size)


def _output(directions, a: torch.Tensor, weight: torch.Tensor, output_size) -> torch.Tensor:
    """The layer's output: conv(a, weight), or its input gradient of ``output_size`` (a transposed layer)."""
    return directions.forward(a, weight) if output_size is None else directions.input_grad(a, weight, output_size)


class _Bound(torch.autograd.Function):
    """A layer on its chosen formulations. Its backward takes the custom ops where it must itself be
    differentiable (double backward) or meets an output gradient unlike the one chosen for (another
    layout, a broadcast one): they dispatch per call. (A ``setup_context`` would let functorch run it, and
    cost every call an ``inspect.signature``.)"""

    @staticmethod
    def forward(ctx, a, weight, spec, chosen, output_size):
        ctx.save_for_backward(a, weight)
        ctx.spec, ctx.chosen, ctx.transposed = spec, chosen, output_size is not None
        return _output(_Formulations(chosen, spec), a, weight, output_size)

    @staticmethod
    def backward(ctx, grad):
        grad = _like(grad, ctx.saved_tensors[0])
        bound_here = _runs_bound(ctx, grad)
        ctx.directions = _Formulations(ctx.chosen, ctx.spec) if bound_here else _CustomOps(ops.encode(ctx.spec))
        return (_conv_input_grad_backward if ctx.transposed else _conv_backward)(ctx, grad)


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


torch.library.register_autograd("groupconv::conv_forward", _conv_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_input_grad", _conv_input_grad_backward, setup_context=_save_operands)
torch.library.register_autograd("groupconv::conv_weight_grad", _conv_weight_grad_backward, setup_context=_save_operands)
