"""AlexNet with filter groups, scaled to small images.

Krizhevsky et al. split conv2, conv4 and conv5 across two GPUs: each half of those
layers sees only the half of the channels on its own GPU. ``groups`` puts exactly
that split (2, or 4, or none) into one model. Widths are AlexNet's (96, 256, 384,
384, 256 and 4096) times ``width``; kernels and strides are cut down for 28x28 or
32x32 inputs.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .. import nn as gnn
from ..errors import GroupConvError
from ..spec import check_int

GROUPED_LAYERS = ("conv2", "conv4", "conv5")  # where AlexNet had its two-GPU split
_CONV_WIDTHS = (96, 256, 384, 384, 256)
_HIDDEN = 4096


def alexnet(
    groups: int = 1,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    width: float = 0.5,
    dropout: float = 0.5,
    widen: float = 1.0,
    conv1_channels: int | None = None,
) -> nn.Sequential:
    """AlexNet's layout with ``groups`` filter groups in conv2, conv4 and conv5.

    Layers are named ``features.conv1`` ... ``features.conv5`` and ``classifier.fc6`` ...
    ``classifier.fc8``. groups=1 is the same network without groups. ``width`` scales
    AlexNet's widths, each rounded to a multiple of 16 (the same widths for groups 1-16);
    ``widen`` then multiplies every layer's width again, rounded to a multiple of
    ``groups`` (a grouped network widened to match another's parameter count).
    ``conv1_channels``, if given, sets conv1's width alone (a conv1 wide enough to
    study its filters, in an otherwise small network); it must divide by ``groups``.

    Example:
        >>> import torch
        >>> model = alexnet(groups=2)
        >>> model.features.conv2
        Conv2d(48, 128, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), groups=2)
        >>> model(torch.zeros(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """
    groups = check_int("groups", groups, minimum=1)
    if widen < 1:
        raise GroupConvError(f"widen={widen} would narrow the network; use widen >= 1 (or a smaller width)")
    if image_size < 8:
        raise GroupConvError(f"image_size={image_size} is too small: AlexNet pools three times; use >= 8")
    c1, c2, c3, c4, c5 = (_scaled(_scaled(c, width, 16), widen, groups) for c in _CONV_WIDTHS)
    if conv1_channels is not None:
        if check_int("conv1_channels", conv1_channels, minimum=1) % groups:
            raise GroupConvError(f"conv1_channels={conv1_channels} must be divisible by groups={groups} (conv2's)")
        c1 = conv1_channels
    hidden = _scaled(_scaled(_HIDDEN, width / 4, multiple=8), widen, multiple=1)
    pooled = image_size // 2 // 2 // 2
    features = nn.Sequential(OrderedDict([
        ("conv1", gnn.Conv2d(in_channels, c1, 5, padding=2)), ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", gnn.Conv2d(c1, c2, 5, padding=2, groups=groups)), ("relu2", nn.ReLU(inplace=True)),
        ("pool2", nn.MaxPool2d(2)),
        ("conv3", gnn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU(inplace=True)),
        ("conv4", gnn.Conv2d(c3, c4, 3, padding=1, groups=groups)), ("relu4", nn.ReLU(inplace=True)),
        ("conv5", gnn.Conv2d(c4, c5, 3, padding=1, groups=groups)), ("relu5", nn.ReLU(inplace=True)),
        ("pool5", nn.MaxPool2d(2)),
    ]))  # fmt: skip
    classifier = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("drop6", nn.Dropout(dropout)),
        ("fc6", nn.Linear(c5 * pooled * pooled, hidden)), ("relu6", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(dropout)),
        ("fc7", nn.Linear(hidden, hidden)), ("relu7", nn.ReLU(inplace=True)),
        ("fc8", nn.Linear(hidden, num_classes)),
    ]))  # fmt: skip
    return nn.Sequential(OrderedDict([("features", features), ("classifier", classifier)]))


def _scaled(channels: int, width: float, multiple: int) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, round(channels * width / multiple) * multiple)
