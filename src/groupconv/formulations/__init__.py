"""Formulations of grouped convolution: one file each, each with the same three functions.

    forward(x, weight, spec) -> y                          (N, C, *S) -> (N, O, *L)
    input_grad(grad_y, weight, spec, input_size) -> grad_x  (N, O, *L) -> (N, C, *S)
    weight_grad(x, grad_y, spec) -> grad_weight             -> (O, Cg, *K)

``spec`` is the convolution's :class:`~groupconv.spec.ConvSpec`, read for its geometry
only (stride, dilation, groups, kernel_size, zero ``padding_pairs``): a transposed
convolution is ``input_grad`` of the convolution with the same spec. Tensors come in
float32/float64 (the caller upcasts half precision) and are never modified.
"""

from types import ModuleType

from ..spec import ConvSpec
from . import im2col


def choose(spec: ConvSpec) -> ModuleType:
    """The formulation that computes ``spec``."""
    return im2col
