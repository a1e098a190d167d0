"""Channel shuffle and a small ShuffleNet (Zhang et al. 2018).

Stacked grouped 1x1 convolutions would keep each group's channels apart forever;
a channel shuffle between them lets the next layer's every group see every previous
group. Shuffling is a fixed permutation: view the channels as (groups, C/groups),
transpose, flatten. The layer is PyTorch's own ``torch.nn.ChannelShuffle``;
:func:`channel_shuffle` is the same permutation with a message that lists valid groups.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .. import nn as gnn
from ..errors import GroupConvError
from ..spec import check_int
from .layers import conv_bn

# ShuffleNet 1x's first-stage widths per group count (Table 1 of the paper)
STAGE_WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
_STEM = 24


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: channel ``g * (C/groups) + i`` moves to
    ``i * groups + g``. ``channel_shuffle(y, C // groups)`` undoes it.

    Example:
        >>> channel_shuffle(torch.arange(6.).view(1, 6, 1, 1), 2).flatten().tolist()
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    groups = check_int("groups", groups, minimum=1)
    channels = x.shape[1]
    if channels % groups:
        divisors = [g for g in range(1, channels + 1) if channels % g == 0]
        raise GroupConvError(
            f"channel_shuffle: {channels} channels are not divisible by groups={groups}; "
            f"valid groups: {', '.join(map(str, divisors))}"
        )
    if x.dim() > 2:
        return nn.functional.channel_shuffle(x, groups)
    return nn.functional.channel_shuffle(x.unsqueeze(-1), groups).squeeze(-1)  # PyTorch's needs a spatial axis


class ShuffleUnit(nn.Module):
    """ShuffleNet's unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1, then a residual
    sum (stride 1) or a concatenation with an average-pooled shortcut (stride 2).

    ``first_groups`` sets the groups of the first 1x1 conv (the paper uses 1 where the
    input is too narrow to split). ``shuffle=False`` leaves the shuffle out (the paper's
    ablation, Table 3): each group of the last 1x1 then reads only its own group's channels.
    """

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, stride: int = 1, first_groups=None, shuffle=True
    ):
        super().__init__()
        if stride not in (1, 2):
            raise GroupConvError(f"stride={stride} is invalid for a ShuffleUnit: use 1 or 2")
        if stride == 1 and in_channels != out_channels:
            raise GroupConvError(
                f"a stride-1 ShuffleUnit adds its input: in_channels={in_channels} must equal "
                f"out_channels={out_channels}"
            )
        self.stride = stride
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4
        self.branch = nn.Sequential(OrderedDict([
            ("compress", gnn.Conv2d(in_channels, mid, 1, groups=first_groups or groups, bias=False)),
            ("bn1", nn.BatchNorm2d(mid)), ("relu1", nn.ReLU(inplace=True)),
            ("shuffle", nn.ChannelShuffle(groups) if shuffle else nn.Identity()),
            ("depthwise", gnn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)),
            ("bn2", nn.BatchNorm2d(mid)),
            ("expand", gnn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)),
            ("bn3", nn.BatchNorm2d(branch_out)),
        ]))  # fmt: skip
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch, shortcut = self.branch(x), self.shortcut(x)
        merged = torch.cat([shortcut, branch], dim=1) if self.stride == 2 else shortcut + branch
        return torch.relu(merged)


def shufflenet(
    groups: int = 3,
    num_classes: int = 10,
    in_channels: int = 1,
    width: float = 0.25,
    repeats=(2, 4, 2),
    shuffle: bool = True,
) -> nn.Sequential:
    """A small ShuffleNet: a 3x3 stem, three stages of ShuffleUnits (each opening with a
    stride-2 unit and doubling the width), global pooling and a classifier; ``shuffle``
    switches every unit's channel shuffle on or off.

    Example:
        >>> model = shufflenet(groups=3)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if groups not in STAGE_WIDTHS:
        raise GroupConvError(f"groups={groups} is not one of ShuffleNet's {sorted(STAGE_WIDTHS)}")
    if any(repeat < 1 for repeat in repeats):  # each stage opens with its stride-2 unit
        raise GroupConvError(f"repeats={tuple(repeats)}: every stage needs at least one unit; use repeats >= 1")
    multiple = 4 * groups  # a unit's bottleneck is a quarter of its width, split into groups
    smallest = (_STEM // multiple + 1) * multiple  # a stride-2 unit concatenates its input: the width must grow
    first = max(smallest, round(STAGE_WIDTHS[groups] * width / multiple) * multiple)
    layers = OrderedDict(stem=conv_bn(in_channels, _STEM, 3))
    channels = _STEM
    for stage, repeat in enumerate(repeats):
        width_out = first * 2**stage
        first_groups = 1 if stage == 0 else None
        units = [ShuffleUnit(channels, width_out, groups, 2, first_groups, shuffle)]
        units += [ShuffleUnit(width_out, width_out, groups, shuffle=shuffle) for _ in range(repeat - 1)]
        layers[f"stage{stage + 2}"] = nn.Sequential(*units)
        channels = width_out
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)
