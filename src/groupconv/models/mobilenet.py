"""A small MobileNet (Howard et al. 2017): depthwise-separable convolutions.

Each block is a depthwise 3x3 convolution (groups = channels: every channel filtered
on its own) followed by a pointwise 1x1 convolution that mixes channels: together
about k*k times cheaper than one dense k x k convolution.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .layers import conv_bn

# (output channels, stride) of each depthwise-separable block, MobileNet v1's opening
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
_STEM = 32


def separable_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(
        OrderedDict(
            depthwise=conv_bn(in_channels, in_channels, 3, stride, groups=in_channels),
            pointwise=conv_bn(in_channels, out_channels, 1),
        )
    )


def mobilenet(num_classes: int = 10, in_channels: int = 1, width: float = 0.5) -> nn.Sequential:
    """A 3x3 stem, MobileNet's first depthwise-separable blocks, global pooling, a classifier.

    Example:
        >>> import torch
        >>> mobilenet()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    scaled = lambda channels: max(8, round(channels * width / 8) * 8)
    stem = scaled(_STEM)
    layers = OrderedDict(stem=conv_bn(in_channels, stem, 3))
    channels = stem
    for index, (out_channels, stride) in enumerate(BLOCKS, start=1):
        layers[f"block{index}"] = separable_block(channels, scaled(out_channels), stride)
        channels = scaled(out_channels)
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)
