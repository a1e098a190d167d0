"""PyTorch's own convolution (oneDNN on CPU, cuDNN on CUDA), in the input's layout.

The three directions are ``torch.convolution`` and ``aten.convolution_backward`` with one
gradient's mask set, as PyTorch's own backward runs them (for channels-last operands its
input gradient is faster than the equivalent transposed convolution: docs/design.md). The
operand a gradient does not need (x, or the weight) is an uninitialised stand-in in the
input's layout: aten reads only its size, but picks its kernels by layout.
Native kernels take one symmetric padding per dimension, so the asymmetric padding of
``'same'`` with an even kernel is left to other formulations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layouts import empty
from ..spec import ConvSpec


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """Every geometry with symmetric padding, on any device."""
    return all(left == right for left, right in spec.padding_pairs)


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    return torch.convolution(x, weight, None, *_geometry(spec), False, [0] * spec.dims, spec.groups)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx, the transposed convolution: (N, O, *L) -> (N, C, *S)."""
    stride, padding, dilation = _geometry(spec)
    output_padding = [size - reach for size, reach in zip(input_size, _reach(spec, grad_y.shape[2:]))]
    if any(extra >= s for extra, s in zip(output_padding, stride)):  # conv(x) would have more outputs than grad_y
        return torch.convolution(grad_y, weight, None, stride, padding, dilation, True, output_padding, spec.groups)
    x_size = empty((grad_y.shape[0], weight.shape[1] * spec.groups, *input_size), like=grad_y)
    grad_x, _, _ = _backward(grad_y, x_size, weight, spec, [True, False, False])
    return grad_x


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, O, *L) -> (O, Cg, *K).

    When x has rows past the last one ``grad_y``'s outputs read (a transposed
    convolution's output_padding), ``grad_y`` is zero-extended to conv(x)'s full size.
    """
    missing = [full - length for full, length in zip(spec.conv_output_size(x.shape[2:]), grad_y.shape[2:])]
    grad_y = F.pad(grad_y, [end for m in reversed(missing) for end in (0, m)]) if any(missing) else grad_y
    weight_size = empty(spec.weight_shape, like=x)
    _, grad_weight, _ = _backward(grad_y, x, weight_size, spec, [False, True, False])
    return grad_weight


def _backward(grad_y, x, weight, spec: ConvSpec, mask: list[bool]) -> tuple:
    """PyTorch's convolution backward, computing the gradients ``mask`` selects (input, weight, bias)."""
    stride, padding, dilation = _geometry(spec)
    return torch.ops.aten.convolution_backward(
        grad_y, x, weight, None, stride, padding, dilation, False, [0] * spec.dims, spec.groups, mask
    )


def _reach(spec: ConvSpec, output_size) -> list[int]:
    """The smallest input size whose convolution has ``output_size``, per dimension."""
    stride, padding, _ = _geometry(spec)
    return [(length - 1) * s - 2 * p + r for length, s, p, r in zip(output_size, stride, padding, spec.reach)]


def _geometry(spec: ConvSpec) -> tuple[list[int], list[int], list[int]]:
    """stride, symmetric padding and dilation as the lists aten takes."""
    return list(spec.stride), [left for left, _ in spec.padding_pairs], list(spec.dilation)
