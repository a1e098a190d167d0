"""PyTorch's own convolution (oneDNN on CPU, cuDNN on CUDA), in the input's layout.

The three directions are ``torch.convolution`` and ``aten.convolution_backward``: the
input gradient as the transposed convolution, the weight gradient with only the
weight's mask set. Native kernels take one symmetric padding per dimension, so the
asymmetric padding of ``'same'`` with an even kernel is left to other formulations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..spec import ConvSpec


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """Every geometry with symmetric padding, on any device."""
    return all(left == right for left, right in spec.padding_pairs)


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    return torch.convolution(x, weight, None, *_geometry(spec), False, [0] * spec.dims, spec.groups)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """The transposed convolution, its output_padding chosen to give ``input_size``: (N, O, *L) -> (N, C, *S)."""
    output_padding = [size - reach for size, reach in zip(input_size, _reach(spec, grad_y.shape[2:]))]
    return torch.convolution(grad_y, weight, None, *_geometry(spec), True, output_padding, spec.groups)


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, O, *L) -> (O, Cg, *K).

    When x has rows past the last one ``grad_y``'s outputs read (a transposed
    convolution's output_padding), ``grad_y`` is zero-extended to conv(x)'s full size.
    """
    stride, padding, dilation = _geometry(spec)
    full = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, s, p, d, k in zip(x.shape[2:], stride, padding, dilation, spec.kernel_size)
    ]
    missing = [f - length for f, length in zip(full, grad_y.shape[2:])]
    grad_y = F.pad(grad_y, [end for m in reversed(missing) for end in (0, m)]) if any(missing) else grad_y
    shape_only = x.new_empty(1).expand(spec.weight_shape)  # convolution_backward reads only its size here
    only_weight = [False, True, False]
    _, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_y, x, shape_only, None, stride, padding, dilation, False, [0] * spec.dims, spec.groups, only_weight
    )
    return grad_weight


def _reach(spec: ConvSpec, output_size) -> list[int]:
    """The smallest input size whose convolution has ``output_size``, per dimension."""
    stride, padding, dilation = _geometry(spec)
    return [
        (length - 1) * s - 2 * p + d * (k - 1) + 1
        for length, s, p, d, k in zip(output_size, stride, padding, dilation, spec.kernel_size)
    ]


def _geometry(spec: ConvSpec) -> tuple[list[int], list[int], list[int]]:
    """stride, symmetric padding and dilation as the lists aten takes."""
    return list(spec.stride), [left for left, _ in spec.padding_pairs], list(spec.dilation)
