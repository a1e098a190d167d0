"""Which formulation computes each call, and whether groupconv's ops run a layer at all.

In order: the formulation forced by :func:`use`; else the tuned choice cached on disk
for this exact call (shapes, geometry, dtype, layout, device, threads); else, when
tuning is on (``GROUPCONV_TUNE=1`` or inside :func:`groupconv.tune`), the fastest of
all formulations timed on the call itself beyond the noise (PyTorch's ``native`` on a
near-tie), then cached; else a heuristic default.

    >>> import torch
    >>> from groupconv import ConvSpec
    >>> spec = ConvSpec(8, 8, 3, groups=8)
    >>> with use("im2col"):
    ...     compute("forward", torch.randn(1, 8, 5, 5), torch.randn(8, 1, 3, 3), spec).shape
    torch.Size([1, 8, 3, 3])

This module chooses per call and knows nothing of frontends; whether a whole layer runs
on groupconv's ops at all is :mod:`groupconv.routing`'s question.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from types import ModuleType

import torch

from . import formulations, tuning
from .errors import GroupConvError
from .layouts import memory_format
from .precision import HALF
from .spec import ConvSpec

# channels per group (in and out) where groupconv's kernels beat oneDNN in every direction, untuned (docs/design.md,
# "Kernels"): 2 at any stride; at unit stride also 1 to 4 on channels-first input and 4 on channels-last. Depthwise
# needs output rows of at least DEPTHWISE_MIN_WIDTH pixels (narrower ones fill too few lanes); strided, only its
# input gradient wins everywhere. Elsewhere some directions lose, which tuning judges per call
NARROW = range(2, 3)
NARROW_UNIT_STRIDE = {"contiguous": range(1, 5), "channels_last": range(2, 5, 2)}
# half precision pays a float32 copy of every operand, and oneDNN has bfloat16 kernels: depthwise, and 4 per
# group on channels-last, lose then (docs/design.md, "Half precision")
NARROW_UNIT_STRIDE_HALF = {"contiguous": range(2, 5), "channels_last": range(2, 3)}
DEPTHWISE_MIN_WIDTH = 16
NARROW_FORMULATION = "direct"  # the untuned choice for those narrow groups (groupconv's C++ kernels)
# ...on inputs this large: on smaller ones a direction's gain is less than the three custom-op calls cost over
# PyTorch running the layer whole (docs/design.md, "Planner"); for the same reason an untuned transposed layer
# this small goes to PyTorch whole
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
    return _tuned(direction, a, b, spec, *rest) or default(spec, a, direction)


def _tuned(direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> ModuleType | None:
    """The cached choice for this call (tuned now if tuning is on and there is none), if it can run the call."""
    tuning_on = tuning.enabled()
    if not tuning_on and not tuning.cache().entries:
        return None  # nothing to look up: spare every call of an untuned process building its key
    key = call_key(direction, a, b, spec, *rest)
    name = tuning.cached(key, formulations.NAMES)
    if name is None and tuning_on:
        with tuning.apart():
            name = tuning.tune_call(key, direction, a, b, spec, *rest)
    module = None if name is None else formulations.load(name)
    return module if module is not None and module.supports(spec, a) else None


def default(spec: ConvSpec, a: torch.Tensor, direction: str = "forward") -> ModuleType:
    """The heuristic choice for ``direction`` when nothing is tuned: PyTorch's kernels in the input's layout,
    except, for CPU input of at least 200,000 elements, where oneDNN is slowest: groupconv's own kernels
    (:data:`NARROW_FORMULATION`) with 2 channels per group, or at unit stride 1 to 4 on channels-first input
    and 4 on channels-last (half precision: 2 to 4, and 2), depthwise only on output rows of 16 pixels or
    more, where a strided layer's input gradient goes to them too; and batched matrix products (``pointwise``)
    for a grouped 1x1 layer on channels-first float32 or float64 input. (Wider groups are oneDNN's; tuning
    finds the exceptions.)"""
    large = a.device.type == "cpu" and a.numel() >= OPS_MIN_ELEMENTS
    if large and _narrow(spec, a, direction):
        preferred = [NARROW_FORMULATION, "native"]
    elif large and _grouped_pointwise(spec) and a.is_contiguous() and a.dtype not in HALF:
        preferred = ["pointwise", "native"]
    else:
        preferred = ["native"]
    candidates = (formulations.load(name) for name in [*preferred, formulations.REFERENCE])
    return next(module for module in candidates if module.supports(spec, a))  # the reference supports all


def _narrow(spec: ConvSpec, a: torch.Tensor, direction: str) -> bool:
    """Groups narrow enough for groupconv's kernels to win every direction on this input's layout."""
    per_group = spec.in_per_group if spec.in_per_group == spec.out_per_group else None
    if per_group in NARROW:
        return True
    per_layout = NARROW_UNIT_STRIDE_HALF if a.dtype in HALF else NARROW_UNIT_STRIDE
    if per_group not in per_layout.get(layout(a), ()):
        return False
    unit_stride = all(s == 1 for s in spec.stride)
    if per_group == 1:  # the lanes run along output rows (a phase of the input gradient's row is one too)
        width = a.shape[-1] if direction == "input_grad" else spec.conv_output_size(a.shape[2:])[-1]
        return (unit_stride or direction == "input_grad") and width >= DEPTHWISE_MIN_WIDTH
    return unit_stride


def _grouped_pointwise(spec: ConvSpec) -> bool:
    """A grouped 1x1 layer of stride 1 (strided, its weight gradient is PyTorch's faster)."""
    return spec.groups > 1 and all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)


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
