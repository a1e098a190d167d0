"""Which formulation computes each call, and whether groupconv's ops run a layer at all.

In order: the formulation forced by :func:`use`; else the tuned choice cached on disk
for this exact call (shapes, geometry, dtype, layout, device, threads); else, when
tuning is on (``GROUPCONV_TUNE=1`` or inside :func:`groupconv.tune`), the fastest of
all formulations timed on the call itself, then cached; else a heuristic default.

    >>> import torch
    >>> from groupconv import ConvSpec
    >>> spec = ConvSpec(8, 8, 3, groups=8)
    >>> with use("im2col"):
    ...     compute("forward", torch.randn(1, 8, 5, 5), torch.randn(8, 1, 3, 3), spec).shape
    torch.Size([1, 8, 3, 3])

When every direction a layer will compute is chosen to be PyTorch's own convolution,
:func:`pytorch_layout` says so, and the frontend hands the whole layer to PyTorch, its
autograd included: one fused backward and no custom-op overhead, so such a layer runs
at PyTorch's own speed. A layer whose directions are split between formulations is, when
tuning, also timed whole both ways (a ``layer`` entry in the cache).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from types import ModuleType

import torch

from . import formulations, tuning
from .errors import GroupConvError
from .layouts import CHANNELS_LAST, empty, memory_format
from .spec import ConvSpec

NARROW = range(2, 5)  # channels per group where groupconv's kernels beat PyTorch's untuned (see docs/benchmarks.md)
# ...on inputs this large. On smaller ones groupconv's kernels still beat oneDNN's (2-4 channels per group,
# 3x3, 768 to 24k elements: 0.3-1.1x its time per direction), but not by the ~0.1 ms that each of the three
# custom-op calls costs over PyTorch running the layer whole; for the same reason an untuned transposed
# layer this small goes to PyTorch whole
OPS_MIN_ELEMENTS = 200_000

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("groupconv_forced", default=None)


def compute(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> torch.Tensor:
    """Run ``direction`` ("forward", "input_grad" or "weight_grad") of the formulation chosen for this call."""
    return getattr(choose(direction, a, b, spec, *rest), direction)(a, b, spec, *rest)


def choose(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> ModuleType:
    """The formulation that computes this call: forced, cached, tuned now, or the default."""
    forced = _forced.get()
    if forced is not None:
        return _checked(forced, spec, a)
    return _tuned(direction, a, b, spec, *rest) or default(spec, a)


def _tuned(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> ModuleType | None:
    """The cached choice for this call (tuned now if tuning is on and there is none), if it can run the call."""
    tuning_on = tuning.enabled()
    if not tuning_on and not tuning.cache().entries:
        return None  # nothing to look up: spare every call of an untuned process building its key
    key = call_key(direction, a, b, spec, *rest)
    name = tuning.cached(key)
    if name is None and tuning_on:
        name = tuning.tune_call(key, direction, a, b, spec, *rest)
    module = None if name is None else formulations.load(name)
    return module if module is not None and module.supports(spec, a) else None


def default(spec: ConvSpec, a: torch.Tensor) -> ModuleType:
    """The heuristic choice when nothing is tuned: PyTorch's kernels in the input's layout, except
    groupconv's Numba kernels for channels-first CPU input of at least 200,000 elements with 2 to 4
    channels per group, where oneDNN is slowest. (Depthwise layers and wider groups are oneDNN's;
    tuning finds the exceptions.)"""
    numba_wins = spec.in_per_group in NARROW and spec.out_per_group in NARROW and a.numel() >= OPS_MIN_ELEMENTS
    if a.device.type == "cpu" and layout(a) != "channels_last" and numba_wins:
        preferred = ["numba_direct", "native"]
    else:
        preferred = ["native"]
    candidates = (formulations.load(name) for name in [*preferred, formulations.REFERENCE])
    return next(module for module in candidates if module.supports(spec, a))  # the reference supports all


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
    if torch.compiler.is_compiling() or _forced.get() is not None:
        return None
    conv_spec = convolution(spec, weight)
    calls, grad_y = _layer_calls(x, weight, spec)
    chosen = {choose(direction, a, b, conv_spec, *rest).__name__.rpartition(".")[2] for direction, a, b, *rest in calls}
    layouts = {"native": memory_format(x), "native_channels_last": CHANNELS_LAST.get(spec.dims)}
    pytorch = layouts.get(chosen.pop()) if len(chosen) == 1 else None  # PyTorch's layout, if it has every call
    if pytorch is not None and not spec.transposed:
        return pytorch
    if (pytorch is None and len(calls) == 1) or not formulations.load("native").supports(conv_spec, x):
        return None
    untuned = pytorch if pytorch is not None and (len(calls) > 1 or x.numel() < OPS_MIN_ELEMENTS) else None
    directions = tuple(direction for direction, *_ in calls)
    return _layer_route(x, weight, spec, grad_y, directions, pytorch or memory_format(x), untuned)


def convolution(spec: ConvSpec, weight: torch.Tensor) -> ConvSpec:
    """The (non-transposed, bias-free) convolution whose directions compute ``spec``'s layer, as
    groupconv's ops see it: a transposed layer is the input gradient of a convolution with its weight."""
    from . import ops  # it imports this module

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
    key = call_key("layer", x, weight, spec, *directions)
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
    from . import functional  # it imports this module

    x, weight = x.detach().requires_grad_(x.requires_grad), weight.detach().requires_grad_(weight.requires_grad)
    wrt = [t for t in (x, weight) if t.requires_grad]

    def run(layer):
        y = layer(spec, x, weight)
        return y if grad_y is None else torch.autograd.grad(y, wrt, grad_y)

    return {
        "pytorch": functools.partial(run, functools.partial(functional.run_pytorch, layout=layout)),
        "groupconv": functools.partial(run, functional.run_ops),
    }


def _stand_in(size, like: torch.Tensor) -> torch.Tensor:
    """A gradient's stand-in for choosing its formulation: random values only when it may be timed."""
    stand_in = empty(size, like=like)
    return stand_in.normal_() if tuning.enabled() else stand_in


def forced() -> str | None:
    """The formulation :func:`use` forces here, if any."""
    return _forced.get()


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Force every call inside the block onto the formulation ``name`` (for tests and measurements).

    A call the formulation does not support raises GroupConvError rather than silently running another.
    """
    if name not in formulations.NAMES:
        raise GroupConvError(f"formulation={name!r} is unknown; choose one of {', '.join(formulations.NAMES)}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


def call_key(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> str:
    """What makes two calls the same for timing: one line, the tuning cache's key."""
    geometry = (spec.kernel_size, spec.stride, spec.padding_pairs, spec.dilation, spec.groups)
    threads = torch.get_num_threads() if a.device.type == "cpu" else 0
    parts = direction, geometry, tuple(a.shape), tuple(b.shape), rest, a.dtype, layout(a), a.device.type, threads
    return " ".join(map(str, parts))


def layout(tensor: torch.Tensor) -> str:
    """ "contiguous", "channels_last" (or its 3-D twin) or "strided"."""
    if tensor.is_contiguous():
        return "contiguous"
    return "strided" if memory_format(tensor) is torch.contiguous_format else "channels_last"


def _checked(name: str, spec: ConvSpec, a: torch.Tensor) -> ModuleType:
    module = formulations.load(name)
    if not module.supports(spec, a):
        raise GroupConvError(
            f"formulation {name!r} does not support this call ({spec}, input {tuple(a.shape)} {a.dtype} on "
            f"{a.device}); leave the choice to groupconv or force another formulation"
        )
    return module
