"""Whole-layer routing: whether a layer runs on PyTorch's own convolution (and autograd) or on groupconv's ops.

When every direction a layer will compute (its output, and the gradients autograd will ask
for) is chosen to be PyTorch's own convolution, :func:`pytorch_layout` says so and the
layer runs on PyTorch whole: one fused backward and no custom-op overhead, so it runs at
PyTorch's own speed. A layer whose directions are split between formulations is, when
tuning, also timed whole both ways (a ``layer`` entry in the cache).

The core's order: dispatch (a formulation per call) and ops (the custom ops) below, this
module above them, :mod:`groupconv.functional` (the frontends) on top.
"""

from __future__ import annotations

import functools

import torch

from . import autograd, dispatch, formulations, ops, tuning
from .layouts import CHANNELS_LAST, empty, memory_format
from .spec import ConvSpec


def route(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor):
    """How calls like this one run, as a function of (x, weight, bias): PyTorch's convolution and
    autograd where the dispatcher gives PyTorch every direction, else groupconv's ops."""
    layout = pytorch_layout(x, weight, spec)
    if layout is None:
        return lambda x, weight, bias: run_ops(spec, x, weight, bias)
    if layout is not memory_format(x) or any(lo != hi for lo, hi in spec.padding_pairs) or spec.transposed:
        return lambda x, weight, bias: run_pytorch(spec, x, weight, bias, layout)
    geometry = ops.convolution_arguments(spec)  # x is in the layout it computes in: one call, worked out once
    return lambda x, weight, bias: torch.convolution(x, weight, bias, *geometry).contiguous(memory_format=layout)


def run_pytorch(
    spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, layout=None
) -> torch.Tensor:
    """The batched, zero-padded layer by PyTorch's convolution and autograd, computed in ``layout``
    (default: x's), answered in x's (channels-last in, channels-last out).

    A transposed layer's bias is added afterwards: given one, PyTorch 2.13's transposed convolution
    takes a slower path (forward of ``ConvTranspose2d(128, 128, 3, padding=1, groups=32)`` on
    8x128x28x28: 10.4 ms with the bias, 1.2 ms without it and 0.02 ms to add it)."""
    answer_layout = memory_format(x)
    x = x.contiguous(memory_format=layout or answer_layout)
    if spec.transposed:
        y = _add_bias(ops.torch_convolution(x, weight, spec), bias, spec)
    else:
        y = ops.torch_convolution(x, weight, spec, bias)
    return y.contiguous(memory_format=answer_layout)


def run_ops(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The batched, zero-padded layer by groupconv's ops, answered in x's layout."""
    if spec.transposed:
        y = autograd.conv_input_grad(x, weight, spec, spec.output_size(x.shape[2:]))
    else:
        y = autograd.conv(x, weight, spec)
    return _add_bias(y, bias, spec)


def _add_bias(y: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec) -> torch.Tensor:
    return y if bias is None else y + bias.view(-1, *(1,) * spec.dims)


def pytorch_layout(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.memory_format | None:
    """The layout in which PyTorch's own convolution should run this layer, forward and whatever
    backward autograd will ask of it; None when groupconv's ops run it.

    A layer goes to PyTorch when every one of those directions is chosen to be PyTorch's
    (``native`` in x's layout, or ``native_channels_last``), with two exceptions, settled by timing the
    layer whole when tuning (:func:`_layer_route`): a layer whose directions are split between
    formulations (untuned: the ops), and a transposed layer, whose ``native`` output is PyTorch's input
    gradient, not its transposed convolution (untuned: PyTorch's when gradients are needed or the input
    is small, the ops otherwise; on ``ConvTranspose2d(256, 256, 4, stride=2, groups=16)`` at 8x256x14x14 the
    ops' forward took 0.7x PyTorch's, at 8x32x8x8 1.9x, and forward+backward 0.97x and 1.9x).

    A forced formulation (:func:`use`) and ``torch.compile`` always go through the ops.
    """
    if torch.compiler.is_compiling() or dispatch.forced() is not None:
        return None
    conv_spec = convolution(spec, weight)
    calls, grad_y = _layer_calls(x, weight, spec)
    chosen = {
        dispatch.choose(direction, a, b, conv_spec, *rest).__name__.rpartition(".")[2]
        for direction, a, b, *rest in calls
    }
    layouts = {"native": memory_format(x), "native_channels_last": CHANNELS_LAST.get(spec.dims)}
    pytorch = layouts.get(chosen.pop()) if len(chosen) == 1 else None  # PyTorch's layout, if it has every call
    if pytorch is not None and not spec.transposed:
        return pytorch
    if (pytorch is None and len(calls) == 1) or not formulations.load("native").supports(conv_spec, x):
        return None
    untuned = pytorch if pytorch is not None and (len(calls) > 1 or x.numel() < dispatch.OPS_MIN_ELEMENTS) else None
    directions = tuple(direction for direction, *_ in calls)
    return _layer_route(x, weight, spec, grad_y, directions, pytorch or memory_format(x), untuned)


def convolution(spec: ConvSpec, weight: torch.Tensor) -> ConvSpec:
    """The (non-transposed, bias-free) convolution whose directions compute ``spec``'s layer, as
    groupconv's ops see it: a transposed layer is the input gradient of a convolution with its weight."""
    return ops.spec_of_weight(ops.encode(spec), weight)


def _layer_calls(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> tuple[list[tuple], torch.Tensor | None]:
    """(direction, a, b, *rest) of each call the layer will make: its output, and the gradients that
    autograd will ask for; and the stand-in for the output's gradient they take (None: no gradients).

    A transposed layer's output is the convolution's input gradient, so its input's gradient is
    the convolution's forward of the output's gradient, and its weight's the convolution's weight
    gradient of (output's gradient, input)."""
    output_shape = (x.shape[0], spec.out_channels, *spec.output_size(x.shape[2:]))
    wants = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    grad_y = _stand_in(output_shape, like=x) if wants else None
    if spec.transposed:
        output = ("input_grad", x, weight, output_shape[2:])
        gradients = ("forward", grad_y, weight), ("weight_grad", grad_y, x)
    else:
        output = ("forward", x, weight)
        gradients = ("input_grad", grad_y, weight, tuple(x.shape[2:])), ("weight_grad", x, grad_y)
    needed = (wants and x.requires_grad, wants and weight.requires_grad)
    return [output, *(call for call, need in zip(gradients, needed) if need)], grad_y


def _layer_route(x, weight, spec: ConvSpec, grad_y, directions: tuple, layout, untuned) -> torch.memory_format | None:
    """Whether PyTorch's own convolution (and fused backward) in ``layout`` beats groupconv's ops when
    the layer's ``directions`` run together: ``layout`` or None, timed on the layer when tuning is on and
    cached like a direction's choice (keyed by the directions, the output's first: a transposed
    layer's differ); ``untuned`` when neither. Directions timed alone misjudge this: they leave out the
    layout conversions between them, and PyTorch's fused backward."""
    key = dispatch.call_key("layer", x, weight, spec, *directions)
    name = tuning.cached(key)
    if name is None and tuning.enabled():
        runs = _layer_runs(x, weight, spec, grad_y, layout)
        name = tuning.tune_layer(key, runs, f"{tuple(x.shape)} x {tuple(weight.shape)}", spec.groups, x.device)
    if name is None:
        return untuned
    return layout if name == "pytorch" else None


def _layer_runs(x, weight, spec: ConvSpec, grad_y, layout: torch.memory_format) -> dict:
    """The layer's forward (and backward, when ``grad_y`` is given) by PyTorch's convolution in
    ``layout``, and by groupconv's ops."""
    x, weight = x.detach().requires_grad_(x.requires_grad), weight.detach().requires_grad_(weight.requires_grad)
    wrt = [t for t in (x, weight) if t.requires_grad]

    def run(layer):
        y = layer(spec, x, weight)
        return y if grad_y is None else torch.autograd.grad(y, wrt, grad_y)

    return {
        "pytorch": functools.partial(run, functools.partial(run_pytorch, layout=layout)),
        "groupconv": functools.partial(run, run_ops),
    }


def _stand_in(size, like: torch.Tensor) -> torch.Tensor:
    """A gradient's stand-in for choosing its formulation: random values only when it may be timed."""
    stand_in = empty(size, like=like)
    return stand_in.normal_() if tuning.enabled() else stand_in
