"""PyTorch's own convolution on channels-last copies of its operands.

oneDNN's channels-last kernels run grouped and depthwise layers several times faster
than its channels-first ones for some shapes; the conversion costs a copy of each
operand not already channels-last. Results come back channels-last.
"""

from __future__ import annotations

import torch

from ..layouts import CHANNELS_LAST, memory_format
from ..spec import ConvSpec
from . import native


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """2-D and 3-D layers that :mod:`native` supports (1-D tensors have no channels-last layout), on
    operands not already channels-last (on those, this is :mod:`native`)."""
    return spec.dims in CHANNELS_LAST and memory_format(x) is torch.contiguous_format and native.supports(spec, x)


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    return native.forward(*_channels_last(spec, x, weight), spec)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """The transposed convolution: (N, O, *L) -> (N, C, *S)."""
    return native.input_grad(*_channels_last(spec, grad_y, weight), spec, input_size)


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    return native.weight_grad(*_channels_last(spec, x, grad_y), spec)


def _channels_last(spec: ConvSpec, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.contiguous(memory_format=CHANNELS_LAST[spec.dims]) for t in tensors]
