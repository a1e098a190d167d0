"""The worked example of *A Deeper Understanding of Grouped Convolution*, computed: one layer at every
valid group count.

in_channels=4, out_channels=8, a 3x3 kernel and a 1x4x32x32 input: each ``groups``
changes the weight's shape and parameter count, and groupconv's output is set
beside PyTorch's own to show they agree.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..functional import conv2d
from ..spec import ConvSpec, valid_groups


@dataclasses.dataclass(frozen=True)
class GroupsRow:
    groups: int
    weight_shape: tuple[int, ...]
    parameters: int
    macs: int
    output_shape: tuple[int, ...]
    max_difference: float  # largest |groupconv - PyTorch| over the output


def worked_example(in_channels=4, out_channels=8, kernel_size=3, input_size=32, seed=0) -> list[GroupsRow]:
    """One row per valid ``groups``: shapes and counts without bias, and agreement with PyTorch.

    Example:
        >>> [(row.groups, row.parameters) for row in worked_example()]
        [(1, 288), (2, 144), (4, 72)]
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, in_channels, input_size, input_size, generator=generator)
    rows = []
    for groups in valid_groups(in_channels, out_channels):
        spec = ConvSpec(in_channels, out_channels, kernel_size, groups=groups, bias=False)
        weight = torch.randn(spec.weight_shape, generator=generator)
        ours, pytorch = conv2d(x, weight, groups=groups), F.conv2d(x, weight, groups=groups)
        rows.append(
            GroupsRow(
                groups,
                spec.weight_shape,
                spec.num_params,
                spec.macs(x.shape),
                tuple(ours.shape),
                (ours - pytorch).abs().max().item(),
            )
        )
    return rows
