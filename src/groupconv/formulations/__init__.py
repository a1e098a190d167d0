"""Formulations of grouped convolution: one file each, each with the same four functions.

    supports(spec, a) -> bool                               can it compute this call?
    forward(x, weight, spec) -> y                          (N, C, *S) -> (N, O, *L)
    input_grad(grad_y, weight, spec, input_size) -> grad_x  (N, O, *L) -> (N, C, *S)
    weight_grad(x, grad_y, spec) -> grad_weight             -> (O, Cg, *K)

``spec`` is the convolution's :class:`~groupconv.spec.ConvSpec`, read for its geometry
only (stride, dilation, groups, kernel_size, zero ``padding_pairs``): a transposed
convolution is ``input_grad`` of the convolution with the same spec. ``a`` is the
call's first tensor operand (its device, dtype and layout may matter). Tensors come in
float32/float64 (the caller upcasts half precision), in any layout, and are never
modified; results may come back in any layout.

Which one runs is :mod:`groupconv.dispatch`'s choice.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("native", "native_channels_last", "direct", "pointwise", "im2col", "split")
REFERENCE = "im2col"  # the one tuned candidates are checked against: groupconv's own, any geometry


def load(name: str) -> ModuleType:
    """The formulation module called ``name`` (one of :data:`NAMES`)."""
    return importlib.import_module(f"{__name__}.{name}")
