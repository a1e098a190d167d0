"""Narrow groups computed directly by groupconv's own CPU kernels, compiled with Numba.

When each group has few channels (``Cg``, ``Og`` <= 16; depthwise has one), a grouped
convolution is many tiny matrix products, which GEMM-based libraries run far below
the machine's speed. Here every direction is a direct convolution on channels-first
memory (the kernels are in :mod:`._numba_kernels`), split among threads by (sample, group),
so each thread owns the output channels it writes and needs neither locks nor atomics:

* stride 1 (most layers, and every input gradient of one): a sample's group of input planes
  is copied into zero-bordered scratch planes, after which each kernel tap is one long
  contiguous SIMD loop over a whole output plane, four or six taps per pass; the transposed
  direction is the same kernel with the weight flipped and its channels swapped;
* other strides: row by row, each tap's loop clipped to the pixels it reaches.

Inputs in other layouts (channels-last, slices) are made contiguous first: reading them in
place through their strides was measured slower than torch's conversion.

The kernels compile once per machine (``cache=True``; the first use compiles them all, for
float32 and float64, in about a minute), and run on PyTorch's own OpenMP threads, as many
as ``torch.get_num_threads()`` (see :mod:`._numba_runtime`).

Example:
    >>> from groupconv import ConvSpec
    >>> spec = ConvSpec(8, 8, 3, padding=1, groups=8)
    >>> x, w = torch.randn(2, 8, 5, 5), torch.randn(8, 1, 3, 3)
    >>> forward(x, w, spec).shape
    torch.Size([2, 8, 5, 5])
"""

from __future__ import annotations

import numpy as np
import torch

from ..spec import ConvSpec
from ._memory import empty
from ._numba_runtime import geometry_3d as _geometry
from ._numba_runtime import run, threads

MAX_GROUP_WIDTH = 16  # channels per group, in and out; wider groups are GEMM's strength


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """CPU float32/float64 tensors of 1-, 2- or 3-D convolutions with at most 16 channels per group."""
    return (
        x.device.type == "cpu"
        and x.layout == torch.strided
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() == spec.dims + 2
        and max(spec.in_per_group, spec.out_per_group) <= MAX_GROUP_WIDTH
    )


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    output_size = spec.conv_output_size(x.shape[2:])
    y = empty((x.shape[0], weight.shape[0], *output_size), x.dtype)
    kernel = "plane_forward" if _unit_stride(spec) else "rows"
    run(kernel, _volume(x), _volume(weight), _volume(y), (*_ints(spec), 0))  # 0: not the adjoint
    return y


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx of conv(x, weight) for spatial input size S: (N, O, *L) -> (N, C, *S); also the
    transposed convolution of ``grad_y``."""
    channels = weight.shape[1] * spec.groups
    grad_x = empty((grad_y.shape[0], channels, *input_size), grad_y.dtype)
    # Stride 1: a convolution of zero-bordered grad_y with the flipped kernel, in and out swapped. A NaN or
    # inf weight would meet the border's zeros (0 x inf = NaN) where PyTorch never multiplies: row by row then.
    if _unit_stride(spec) and bool(weight.isfinite().all()):
        stride, dilation, pad = _geometry(spec)
        reach = [d * (k - 1) for d, k in zip(dilation, _kernel_3d(weight))]
        flipped = [r - p for r, p in zip(reach, pad)]
        adjoint = _volume(_adjoint_weight(weight, spec))
        run("plane_forward", _volume(grad_y), adjoint, _volume(grad_x), (*stride, *dilation, *flipped))
    else:
        run("rows", _volume(grad_x), _volume(weight), _volume(grad_y), (*_ints(spec), 1))  # 1: the adjoint
    return grad_x


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight of conv(x, weight): (N, C, *S), (N, O, *L) -> (O, Cg, *K).

    Each thread sums its share of the (sample, group) tasks into a partial gradient of its own.
    """
    partial = x.new_zeros(
        threads(), grad_y.shape[1], x.shape[1] // spec.groups, *(1,) * (3 - spec.dims), *spec.kernel_size
    )
    if _unit_stride(spec):
        flat = partial.flatten(2).numpy()  # a view: tap t of weight[o] is partial[worker, o, t]
        run("plane_weight_grad", _volume(x), _volume(grad_y), flat, (*_ints(spec), *_kernel_3d(partial[0])))
    else:
        run("weight_grad", _volume(x), _volume(grad_y), partial.numpy(), _ints(spec))
    return partial.sum(0).reshape(grad_y.shape[1], -1, *spec.kernel_size)


def _ints(spec: ConvSpec) -> tuple[int, ...]:
    """Stride, dilation and padding before, each in 3-D: the kernels' geometry."""
    return tuple(value for values in _geometry(spec) for value in values)


def _unit_stride(spec: ConvSpec) -> bool:
    return all(s == 1 for s in spec.stride)


def _kernel_3d(weight: torch.Tensor) -> tuple[int, int, int]:
    return (1,) * (5 - weight.dim()) + tuple(weight.shape[2:])


def _adjoint_weight(weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """(O, Cg, *K) -> (C, Og, *K) flipped in space: the kernel that convolves grad_y into grad_x."""
    per_group = weight.unflatten(0, (spec.groups, -1))  # (G, Og, Cg, *K)
    spatial = list(range(3, weight.dim() + 1))
    return per_group.transpose(1, 2).flip(spatial).flatten(0, 1)


def _volume(t: torch.Tensor) -> np.ndarray:
    """(N, C, *S) as a C-contiguous (N, C, D, H, W) array (no copy when ``t`` is contiguous)."""
    t = t.detach().contiguous()
    return t.reshape(*t.shape[:2], *(1,) * (5 - t.dim()), *t.shape[2:]).numpy()
