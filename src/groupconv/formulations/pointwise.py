"""A grouped 1x1 convolution as one batched matrix product per direction, channels-first.

With a 1x1 kernel and no padding, group g of the output is ``W_g @ x_g``: a (Og x Cg) matrix
times the group's (Cg x positions) slice of each image, which a channels-first tensor already
holds contiguously. ``torch.matmul`` runs all images and groups as one batched GEMM, with no
im2col and no layout conversion (ShuffleNet's grouped 1x1 layers, where PyTorch's
channels-first path is slowest: docs/design.md, "Planner"). A stride subsamples the input.
"""

from __future__ import annotations

import torch

from ..spec import ConvSpec


def supports(spec: ConvSpec, x: torch.Tensor) -> bool:
    """1x1 kernels without padding, any stride, on any device; fastest on channels-first input."""
    return all(k == 1 for k in spec.kernel_size) and all(pair == (0, 0) for pair in spec.padding_pairs)


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, 1...) -> (N, O, *L)."""
    x = _subsampled(x, spec)
    y = torch.matmul(_matrices(weight, spec), _by_group(x, spec))  # (N, G, Og, P)
    return y.reshape(x.shape[0], spec.out_channels, *x.shape[2:])


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """dL/dx: (N, O, *L) -> (N, C, *S); zero at the positions a stride skips."""
    grad_sampled = torch.matmul(_matrices(weight, spec).transpose(1, 2), _by_group(grad_y, spec))  # (N, G, Cg, P)
    grad_sampled = grad_sampled.reshape(grad_y.shape[0], spec.in_channels, *grad_y.shape[2:])
    if tuple(input_size) == tuple(grad_y.shape[2:]):
        return grad_sampled
    # a stride skips positions, and a transposed layer's output_padding adds rows no output reads
    grad_x = grad_y.new_zeros(grad_y.shape[0], spec.in_channels, *input_size)
    read = (slice(None, size * s, s) for size, s in zip(grad_y.shape[2:], spec.stride))
    grad_x[(slice(None), slice(None), *read)] = grad_sampled
    return grad_x


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, O, *L) -> (O, Cg, 1...): per image and group gy_g @ x_g^T, summed over images."""
    x = _subsampled(x, spec)[(..., *map(slice, grad_y.shape[2:]))]  # rows past the last output: output_padding
    per_image = torch.matmul(_by_group(grad_y, spec), _by_group(x, spec).transpose(2, 3))  # (N, G, Og, Cg)
    return per_image.sum(0).reshape(spec.out_channels, spec.in_per_group, *spec.kernel_size)


def _subsampled(x: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The positions a 1x1 kernel reads: every ``stride``-th along each spatial dim."""
    return x if all(s == 1 for s in spec.stride) else x[(..., *(slice(None, None, s) for s in spec.stride))]


def _matrices(weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """(O, Cg, 1...) -> (G, Og, Cg)."""
    return weight.reshape(spec.groups, spec.out_per_group, spec.in_per_group)


def _by_group(t: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """(N, C, *S) -> (N, G, C/G, positions); a view of a channels-first tensor, a copy of any other."""
    return t.reshape(t.shape[0], spec.groups, t.shape[1] // spec.groups, t.shape[2:].numel())  # no -1: empty batches
