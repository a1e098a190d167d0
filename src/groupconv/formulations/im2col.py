"""Grouped convolution as im2col + one batched matmul over the group axis.

Every kernel window of the (padded) input is laid out as a column (im2col), the
columns are split into G channel groups, and each group's columns meet only that
group's filters: one einsum ``(N, G, Cg, L, K) x (G, Og, Cg, K) -> (N, G, Og, L)``,
which torch runs as a single batched GEMM — *A Deeper Understanding of Grouped Convolution*'s "split, convolve
each group, concatenate" without a Python loop over groups.

Inputs arrive with zero padding still to apply (``spec.padding_pairs``); other padding
modes were applied by the frontend. Runs on whatever device the tensors are on.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..spec import ConvSpec

_LETTERS = "ijk", "uvw"  # L (output positions) and K (kernel taps) subscripts, per dim


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """Every geometry, on any device: the reference the others are checked against."""
    return True


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    columns = _columns(x, spec)  # (N, G, Cg, *L, *K)
    filters = weight.unflatten(0, (spec.groups, -1))  # (G, Og, Cg, *K)
    L, K = _subscripts(spec)
    return torch.einsum(f"ngc{L}{K},goc{K}->ngo{L}", columns, filters).flatten(1, 2)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx of conv(x, weight) for spatial input size S: (N, O, *L) -> (N, C, *S).

    This is also the transposed convolution of ``grad_y`` (col2im of the columns).
    """
    L, K = _subscripts(spec)
    filters = weight.unflatten(0, (spec.groups, -1))  # (G, Og, Cg, *K)
    columns = torch.einsum(f"ngo{L},goc{K}->ngc{L}{K}", grad_y.unflatten(1, (spec.groups, -1)), filters)
    columns = columns.flatten(1, 2)  # (N, C, *L, *K)
    output_size = grad_y.shape[2:]
    reach = [(positions - 1) * s + r for positions, s, r in zip(output_size, spec.stride, spec.reach)]
    padded = columns.new_zeros(*columns.shape[:2], *reach)
    windows = _windows(padded, spec)  # a view: padded's elements, laid out like columns
    for tap in itertools.product(*map(range, spec.kernel_size)):
        windows[(..., *tap)] += columns[(..., *tap)]  # one tap's windows never overlap
    return _crop(padded, [lo for lo, _ in spec.padding_pairs], input_size)


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight of conv(x, weight): (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    L, K = _subscripts(spec)
    grad_y = grad_y.unflatten(1, (spec.groups, -1))  # (N, G, Og, *L)
    columns = _columns(x, spec, output_size=grad_y.shape[3:])
    return torch.einsum(f"ngo{L},ngc{L}{K}->goc{K}", grad_y, columns).flatten(0, 1)


def _columns(x: torch.Tensor, spec: ConvSpec, output_size=None) -> torch.Tensor:
    """im2col: (N, C, *S) -> (N, G, Cg, *L, *K), every kernel window of the padded input."""
    padded = F.pad(x, [p for pair in reversed(spec.padding_pairs) for p in pair])
    columns = _windows(padded, spec)
    if output_size is not None:  # trailing rows that no window of the output reaches
        columns = columns[(..., *map(slice, output_size), *(slice(None),) * spec.dims)]
    return columns.unflatten(1, (spec.groups, -1))


def _windows(padded: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """A strided view (N, C, *L, *K) of ``padded``'s kernel windows; no copy."""
    for dim, (reach, s) in enumerate(zip(spec.reach, spec.stride)):
        padded = padded.unfold(2 + dim, reach, s)  # appends the window's extent as a dim
    return padded[(..., *(slice(None, None, d) for d in spec.dilation))]


def _crop(t: torch.Tensor, starts, sizes) -> torch.Tensor:
    """t[..., start:start+size] per spatial dim, zero-filled where that runs past t's end."""
    pads = []
    for start, size, have in reversed(list(zip(starts, sizes, t.shape[2:]))):
        cut = min(start, have)  # a start past the end (padding wider than what the windows reach) cuts it all
        pads += [-cut, size - (have - cut)]
    return F.pad(t, pads)


def _subscripts(spec: ConvSpec) -> tuple[str, str]:
    return _LETTERS[0][: spec.dims], _LETTERS[1][: spec.dims]
