"""Building blocks shared by the model zoo."""

from __future__ import annotations

from torch import nn

from .. import nn as gnn


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    """A bias-free groupconv convolution ('same'-style padding), BatchNorm, and optionally ReLU."""
    layers = [
        gnn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))
