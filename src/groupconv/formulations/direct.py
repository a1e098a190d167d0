"""Narrow groups computed directly by groupconv's C++ kernels (``torch.ops.groupconv_native``).

When each group has few channels (``Cg``, ``Og`` <= 16; depthwise has one), a grouped
convolution is many tiny matrix products, which GEMM-based libraries run far below the
machine's speed. These kernels (src/groupconv/csrc) compute each direction directly, in the
operand's own layout, with no copies:

* channels-last: the SIMD lanes run across output channels (several groups at once), several
  output pixels accumulated in registers across the taps;
* channels-first: the lanes run along a row of pixels; a block of output channels x rows x vectors
  accumulates across the group's channels and taps, each source row loaded once for every output
  row it feeds (strided along W, each lane reads every stride-th column);
* the input gradient is the transposed convolution in the same form (strided along W, one phase of
  the stride at a time); the weight gradient keeps a block of (taps x channels) in registers, sums
  per chunk of work and then across chunks.

Results come back in the input's layout (other strided inputs are made contiguous first). The
instruction set (AVX-512, AVX2 or baseline) is ATen's own choice, made once; threads are
PyTorch's (``at::parallel_for``).

Example:
    >>> from groupconv import ConvSpec
    >>> spec = ConvSpec(8, 8, 3, padding=1, groups=8)
    >>> x, w = torch.randn(2, 8, 5, 5), torch.randn(8, 1, 3, 3)
    >>> forward(x, w, spec).shape if _native.ops is not None else torch.Size([2, 8, 5, 5])
    torch.Size([2, 8, 5, 5])
"""

from __future__ import annotations

import functools
import warnings

import torch

from ..precision import HALF, in_float32
from ..spec import ConvSpec
from . import _native

MAX_GROUP_WIDTH = 16  # channels per group, in and out; wider groups are GEMM's strength
_warned = False


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """CPU floating-point tensors (half precision computed in float32) of 1-, 2- or 3-D convolutions with
    at most 16 channels per group, when the native kernels are built."""
    narrow = (
        x.device.type == "cpu"
        and x.layout == torch.strided
        and x.dtype in (torch.float32, torch.float64, *HALF)
        and x.dim() == spec.dims + 2
        and max(spec.in_per_group, spec.out_per_group) <= MAX_GROUP_WIDTH
    )
    if narrow and _native.ops is None:
        _warn_once()
        return False
    return narrow


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    return in_float32(_native.ops.conv_forward, x, weight, *_geometry(spec))


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx of conv(x, weight) for spatial input size S, also the transposed convolution of
    ``grad_y``: (N, O, *L) -> (N, C, *S)."""
    return in_float32(_native.ops.conv_input_grad, grad_y, weight, list(input_size), *_geometry(spec))


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight of conv(x, weight): (N, C, *S), (N, O, *L) -> (O, Cg, *K). ``grad_y`` may cover
    fewer positions than conv(x) has (a transposed convolution's output_padding): the rest count as zero."""
    return in_float32(_native.ops.conv_weight_grad, x, grad_y, list(spec.kernel_size), *_geometry(spec))


@functools.lru_cache(maxsize=1024)
def _geometry(spec: ConvSpec) -> tuple:
    """stride, padding before, padding after, dilation and groups, as the operators take them (per spec:
    building them is most of this module's per-call work)."""
    before, after = zip(*spec.padding_pairs)
    return list(spec.stride), list(before), list(after), list(spec.dilation), spec.groups


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(_native.reason, RuntimeWarning, stacklevel=3)
