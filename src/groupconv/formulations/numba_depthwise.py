"""Depthwise layers computed channels-last by groupconv's own CPU kernels, compiled with Numba.

In a depthwise layer (one input and one output channel per group) every channel is its
own tiny convolution. Channels-first, each is a plane of a few hundred pixels, which
:mod:`numba_direct` copies into zero-bordered scratch; channels-last, a pixel's channels
are one contiguous row, so each kernel tap is one SIMD loop across all the channels,
and a tap that falls in the padding is skipped instead of multiplied by zero. Operands
not already channels-last are converted (a copy each); results come back channels-last.

All three directions use the two kernels in :mod:`._numba_kernels`: the forward, the
input gradient as the forward of the output's gradient with the kernel flipped (stride
1 only, hence this formulation's stride), and the weight gradient, summed per thread.
They run on PyTorch's OpenMP threads (see :mod:`._numba_runtime`).

Example:
    >>> from groupconv import ConvSpec
    >>> spec = ConvSpec(8, 8, 3, padding=1, groups=8)
    >>> forward(torch.randn(2, 8, 5, 5), torch.randn(8, 1, 3, 3), spec).shape
    torch.Size([2, 8, 5, 5])
"""

from __future__ import annotations

import numpy as np
import torch

from ..spec import ConvSpec
from ._memory import empty
from ._numba_runtime import geometry_3d, run, threads


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """CPU float32/float64 depthwise layers (one channel per group in and out) of stride 1, in 1, 2 or 3-D."""
    return (
        x.device.type == "cpu"
        and x.layout == torch.strided
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == spec.dims + 2
        and spec.in_per_group == spec.out_per_group == 1
        and all(s == 1 for s in spec.stride)
    )


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (C, 1, *K) -> (N, C, *L)."""
    _, dilation, pad = geometry_3d(spec)
    return _convolve(x, weight, spec.conv_output_size(x.shape[2:]), dilation, pad)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx: grad_y convolved with the flipped kernel, padded by the kernel's reach less the padding."""
    _, dilation, pad = geometry_3d(spec)
    reach = [d * (k - 1) for d, k in zip(dilation, _kernel_3d(spec))]
    flipped = weight.flip(list(range(2, weight.dim())))
    return _convolve(grad_y, flipped, tuple(input_size), dilation, tuple(r - p for r, p in zip(reach, pad)))


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, C, *L) -> (C, 1, *K); each thread sums its rows into its own partial."""
    channels, taps = x.shape[1], int(np.prod(spec.kernel_size))
    partial = torch.zeros(threads(), taps, channels, dtype=x.dtype)
    run("depthwise_weight_grad", _pixels(x), _pixels(grad_y), partial.numpy(), _ints(spec))
    return partial.sum(0).t().reshape(channels, 1, *spec.kernel_size)


def _convolve(x: torch.Tensor, weight: torch.Tensor, output_size, dilation, pad) -> torch.Tensor:
    """The depthwise convolution of x at stride 1, zero-padded by ``pad`` before each dim, to ``output_size``."""
    n, channels = x.shape[:2]
    y = empty((n, *output_size, channels), x.dtype)
    kernel = (1,) * (5 - weight.dim()) + tuple(weight.shape[2:])
    taps_by_channel = weight.detach().reshape(channels, -1).t().contiguous()  # (taps, C): a tap's row of weights
    ints = (1, 1, 1, *dilation, *pad, *kernel)
    run("depthwise_forward", _pixels(x), taps_by_channel.numpy(), _pixels(y.movedim(-1, 1)), ints)
    return y.movedim(-1, 1)


def _ints(spec: ConvSpec) -> tuple[int, ...]:
    """The kernels' geometry: stride, dilation, padding before and kernel size, each in 3-D."""
    stride, dilation, pad = geometry_3d(spec)
    return (*stride, *dilation, *pad, *_kernel_3d(spec))


def _kernel_3d(spec: ConvSpec) -> tuple[int, int, int]:
    return (1,) * (3 - spec.dims) + spec.kernel_size


def _pixels(t: torch.Tensor) -> np.ndarray:
    """(N, C, *S) as a C-contiguous (N, D, H, W, C) array: no copy when ``t`` is channels-last."""
    t = t.detach().movedim(1, -1).contiguous()
    return t.reshape(t.shape[0], *(1,) * (4 - t.dim()), *t.shape[1:]).numpy()
