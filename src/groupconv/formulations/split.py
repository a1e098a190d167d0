"""*A Deeper Understanding of Grouped Convolution*'s description taken literally: split the channels into groups,
convolve each group with its own filters as an ordinary convolution, concatenate.

One native convolution per group: a baseline that shows what grouping costs when a
framework loops over groups, and a fallback for very wide groups.
"""

from __future__ import annotations

import dataclasses

import torch

from ..layouts import memory_format
from ..spec import ConvSpec
from . import native

supports = native.supports


def forward(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """y = conv(x, weight): (N, C, *S) x (O, Cg, *K) -> (N, O, *L)."""
    one = _one_group(spec)
    parts = zip(_groups(x, spec, 1), _groups(weight, spec, 0))
    return torch.cat([native.forward(xg, wg, one) for xg, wg in parts], dim=1)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, input_size) -> torch.Tensor:
    """The transposed convolution: (N, O, *L) -> (N, C, *S)."""
    one = _one_group(spec)
    parts = zip(_groups(grad_y, spec, 1), _groups(weight, spec, 0))
    return torch.cat([native.input_grad(gyg, wg, one, input_size) for gyg, wg in parts], dim=1)


def weight_grad(x: torch.Tensor, grad_y: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """dL/dweight: (N, C, *S), (N, O, *L) -> (O, Cg, *K)."""
    one = _one_group(spec)
    parts = zip(_groups(x, spec, 1), _groups(grad_y, spec, 1))
    return torch.cat([native.weight_grad(xg, gyg, one) for xg, gyg in parts], dim=0)


def _one_group(spec: ConvSpec) -> ConvSpec:
    """The spec of one group's slice: an ordinary convolution (transposed or not, as ``spec``)."""
    groups = spec.groups
    return dataclasses.replace(
        spec, in_channels=spec.in_channels // groups, out_channels=spec.out_channels // groups, groups=1
    )


def _groups(tensor: torch.Tensor, spec: ConvSpec, dim: int) -> list[torch.Tensor]:
    """``tensor`` cut into its ``groups`` channel slices along ``dim``, each dense: channels-last where ``tensor``
    is and a slice has more than one channel, else contiguous. torch 2.13's CPU convolution answers wrongly on a
    one-channel slice of a channels-last input (tests/cases.py, seed 89: float32, stride (1, 5))."""
    parts = tensor.chunk(spec.groups, dim=dim)
    layout = memory_format(tensor) if parts[0].shape[1] > 1 else torch.contiguous_format
    return [part.contiguous(memory_format=layout) for part in parts]
