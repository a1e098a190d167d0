"""The networks of *A Deeper Understanding of Grouped Convolution*, built from groupconv layers.

    alexnet(groups)         AlexNet with filter groups in conv2, conv4, conv5
    ResNeXtBlock, resnext   split-transform-merge in three equivalent forms
    channel_shuffle, shufflenet
    mobilenet               depthwise-separable convolutions

``BUILTIN`` names a ready-made model for the command line; ``DEFAULT_INPUT`` gives
each one's input shape (Fashion-MNIST-sized: one 28x28 grey image).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torch.nn import ChannelShuffle  # PyTorch's layer is the project's one shuffle layer

from .alexnet import GROUPED_LAYERS, alexnet
from .mobilenet import mobilenet
from .resnext import ResNeXtBlock, convert_block, resnext
from .shufflenet import ShuffleUnit, channel_shuffle, shufflenet

BUILTIN: dict[str, Callable[[], nn.Module]] = {
    "alexnet": partial(alexnet, groups=1),
    "alexnet-g2": partial(alexnet, groups=2),
    "alexnet-g4": partial(alexnet, groups=4),
    "resnext": resnext,
    "shufflenet": shufflenet,
    "mobilenet": mobilenet,
}
DEFAULT_INPUT: dict[str, tuple[int, ...]] = {name: (1, 1, 28, 28) for name in BUILTIN}

__all__ = [
    "BUILTIN", "DEFAULT_INPUT", "GROUPED_LAYERS", "ChannelShuffle", "ResNeXtBlock", "ShuffleUnit",
    "alexnet", "channel_shuffle", "convert_block", "mobilenet", "resnext", "shufflenet",
]  # fmt: skip
