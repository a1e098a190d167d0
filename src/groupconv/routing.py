"""Whole-layer routing: which route runs a layer, as a function of (x, weight, bias).

A route (:data:`groupconv.tuning.ROUTES`) is an engine and a layout: PyTorch's own convolution
(and autograd: one fused backward, no custom-op overhead) or groupconv's ops (a formulation per
direction, :mod:`groupconv.dispatch`, chosen once as the layer is routed: :func:`groupconv.autograd.bound`),
computing channels-first or channels-last, the input converted at the layer's boundary and the answer
given back in the input's layout.

When tuning (``GROUPCONV_TUNE=1`` or inside :func:`groupconv.tune`), every route is timed on the
layer, forward and then the backward autograd will ask of it, and the choice is cached under the
layer's key. Untuned, a layer with no such entry runs on PyTorch in the layout in which the
per-direction choices (cached or the dispatcher's default) give PyTorch every direction, else on
groupconv's ops in the input's layout. A forced formulation (:func:`groupconv.dispatch.use`) and
``torch.compile`` always go through the ops.

The core's order: dispatch (a formulation per call) and ops (the custom ops) below, this
module above them, :mod:`groupconv.functional` (the frontends) on top.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from . import autograd, dispatch, formulations, ops, tuning
from .formulations._native import relayout
from .layouts import empty, memory_format, named
from .precision import HALF, in_float32
from .spec import ConvSpec


def route(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor):
    """How calls like this one run, as a function of (x, weight, bias)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or dispatch.forced() is not None:
        return functools.partial(run_ops, spec)  # a graph records the custom ops, which choose per call
    return _runner(_layer_route(spec, x, weight), spec, x, weight)


def _runner(name: str, spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor):
    """The route ``name`` for calls like ``x``, as a function of (x, weight, bias), answering in x's layout."""
    engine, _, layout_name = name.partition("_")
    layout = named(layout_name, spec.dims)
    if engine == "groupconv":
        layer = _ops_runner(spec, x, weight, layout)
        if layout is memory_format(x):
            return layer
        return lambda x, weight, bias: relayout(layer(relayout(x, layout), weight, bias), memory_format(x))
    if layout is not memory_format(x) or any(lo != hi for lo, hi in spec.padding_pairs) or spec.transposed:
        return lambda x, weight, bias: run_pytorch(spec, x, weight, bias, layout)
    geometry = ops.convolution_arguments(spec)  # x is in the layout it computes in: one call, worked out once
    return lambda x, weight, bias: torch.convolution(x, _as(weight, layout), bias, *geometry).contiguous(
        memory_format=layout
    )


def _ops_runner(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, layout: torch.memory_format):
    """groupconv's ops computing the layer on input like x but in ``layout``, as a function of (x, weight, bias):
    on the formulations chosen now for its calls (:func:`groupconv.autograd.bound`), or, in half precision
    (computed in float32, :func:`run_ops`), choosing per call."""
    if x.dtype in HALF:
        return functools.partial(run_ops, spec)
    like = x if layout is memory_format(x) else _stand_in(x.shape, x, layout).requires_grad_(x.requires_grad)
    conv_spec = convolution(spec, weight)
    chosen = _chosen(conv_spec, *_layer_calls(like, weight, spec))
    output_size = spec.output_size(x.shape[2:]) if spec.transposed else None

    def run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return add_bias(autograd.bound(x, weight, conv_spec, chosen, output_size), bias, spec)

    return run


def _as(weight: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """The weight in ``layout``: PyTorch computes channels-last when either operand is (a no-op when it is already)."""
    return weight.contiguous(memory_format=layout)


def run_pytorch(
    spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, layout=None
) -> torch.Tensor:
    """The batched, zero-padded layer by PyTorch's convolution and autograd, computed in ``layout``
    (default: x's), answered in x's (channels-last in, channels-last out).

    A float32 or float64 transposed layer's bias is added afterwards: given one, PyTorch's transposed
    convolution has taken a much slower path (docs/design.md, "Planner"); a half-precision one gives
    PyTorch the bias, which it adds before the one rounding."""
    answer_layout = memory_format(x)
    layout = layout or answer_layout
    x, weight = relayout(x, layout), _as(weight, layout)
    if spec.transposed and x.dtype not in HALF:
        y = add_bias(ops.torch_convolution(x, weight, spec), bias, spec)
    else:
        y = ops.torch_convolution(x, weight, spec, bias)
    return relayout(y, answer_layout)


def run_ops(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The batched, zero-padded layer by groupconv's ops, answered in x's layout; half precision in float32,
    the bias included, rounded once."""
    return in_float32(functools.partial(_ops_layer, spec), x, weight, bias)


def _ops_layer(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if spec.transposed and torch.jit.is_tracing():  # the tracer cannot record its output size as the op's int[]
        return ops.torch_convolution(x, weight, spec, bias)
    if spec.transposed:
        y = autograd.conv_input_grad(x, weight, spec, spec.output_size(x.shape[2:]))
    else:
        y = autograd.conv(x, weight, spec)
    return add_bias(y, bias, spec)


def add_bias(y: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec) -> torch.Tensor:
    """``y`` plus one bias per output channel (none: ``y``)."""
    return y if bias is None else y + bias.view(-1, *(1,) * spec.dims)


def _layer_route(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor) -> str:
    """The route of this layer: cached for its key (its shapes, layout and the directions autograd will
    ask for), else timed now when tuning, else the untuned one. Noted for :func:`tuning.decisions_summary`."""
    calls, grad_y = _layer_calls(x, weight, spec)
    directions = tuple(direction for direction, *_ in calls)
    key = dispatch.call_key("layer", x, weight, spec, *directions)
    name = tuning.cached(key, tuning.ROUTES)
    if name is None and tuning.enabled():
        with tuning.apart():
            runs = _layer_runs(x, weight, spec, grad_y)
            operands = f"{tuple(x.shape)} x {tuple(weight.shape)}"
            incumbent = f"pytorch_{tuning.layout_name(x)}"
            name = tuning.tune_layer(key, runs, incumbent, directions, operands, spec.groups)
    tuned = name is not None and named(name.partition("_")[2], spec.dims) is not None
    if not tuned:
        name = _untuned(spec, x, weight, calls)
    tuning.note_route(key, name, tuned)
    return name


def _untuned(spec: ConvSpec, x: torch.Tensor, weight: torch.Tensor, calls: list[tuple]) -> str:
    """PyTorch in the layout in which every direction is chosen to be PyTorch's (``native`` in x's layout,
    or ``native_channels_last``), else groupconv's ops in x's layout. A transposed layer's ``native``
    output is PyTorch's input gradient, not its transposed convolution: it runs on PyTorch only when
    gradients are needed or the input is small, on the ops' input gradient otherwise (docs/design.md)."""
    conv_spec = convolution(spec, weight)
    chosen = {module.__name__.rpartition(".")[2] for module in _choices(conv_spec, calls).values()}
    own = tuning.layout_name(x)
    pytorch = {"native": own, "native_channels_last": "channels_last"}.get(chosen.pop()) if len(chosen) == 1 else None
    if spec.transposed and pytorch is not None:
        whole = len(calls) > 1 or x.numel() < dispatch.OPS_MIN_ELEMENTS
        pytorch = pytorch if whole and formulations.load("native").supports(conv_spec, x) else None
    return f"groupconv_{own}" if pytorch is None else f"pytorch_{pytorch}"


def _choices(conv_spec: ConvSpec, calls: list[tuple]) -> dict[str, ModuleType]:
    """The formulation :mod:`groupconv.dispatch` chooses for each of the layer's ``calls``, by direction."""
    return {direction: dispatch.choose(direction, a, b, conv_spec, *rest) for direction, a, b, *rest in calls}


def _chosen(conv_spec: ConvSpec, calls: list[tuple], grad_y: torch.Tensor | None) -> autograd.Chosen:
    """The layer's :class:`~groupconv.autograd.Chosen` formulations for ``calls``, which take ``grad_y``."""
    choices = _choices(conv_spec, calls)
    grad_layout = None if grad_y is None else dispatch.layout(grad_y)
    return autograd.Chosen(*map(choices.get, ("forward", "input_grad", "weight_grad")), grad_layout)


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


def _layer_runs(x, weight, spec: ConvSpec, grad_y) -> dict:
    """The layer's forward (and backward to what needs a gradient, when ``grad_y`` is given) by each
    route that exists for it, PyTorch's in x's layout first."""
    x, weight = x.detach().requires_grad_(x.requires_grad), weight.detach().requires_grad_(weight.requires_grad)
    wrt = [t for t in (x, weight) if t.requires_grad]

    @functools.cache  # built on the first (untimed) run: a route's choices are made once, as in use
    def runner(name: str):
        return _runner(name, spec, x, weight)

    def run(name: str):
        y = runner(name)(x, weight, None)
        return y if grad_y is None else torch.autograd.grad(y, wrt, grad_y)

    return {name: functools.partial(run, name) for name in tuning.ROUTES if named(name.partition("_")[2], spec.dims)}


def _stand_in(size, like: torch.Tensor, layout: torch.memory_format | None = None) -> torch.Tensor:
    """An operand's stand-in for choosing its formulation (in like's layout unless ``layout``): random values
    only when it may be timed."""
    stand_in = empty(size, like=like, layout=layout)
    return stand_in.normal_() if tuning.enabled() else stand_in
