"""Draw a convolution layer's filters, one block per group, like the AlexNet paper's conv1 figure.

A layer's groups are its own ``groups``; a layer without groups of its own (AlexNet's
conv1) is split by the groups of the convolution that reads its output, since that is
what decides which filters work together. Filters with 3 input channels are drawn in
colour, with 1 in grey, with more as their mean over input channels; each filter is
scaled on its own so that 0 is mid-grey (a grey pixel means equal weight on R, G, B).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import GroupConvError


def find_conv(model: nn.Module, name: str) -> nn.Conv2d:
    """The 2-D convolution called ``name`` in ``model``; the error lists the names there are."""
    convs = {key: module for key, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    if name not in convs:
        raise GroupConvError(f"no 2-D convolution named {name!r}; the model has {', '.join(convs) or 'none'}")
    return convs[name]


def filter_groups(model: nn.Module, name: str) -> int:
    """``name``'s own groups if more than 1, else the groups of the next convolution that reads its output.

    Example:
        >>> from groupconv.models import alexnet
        >>> model = alexnet(groups=2)  # conv1 feeds conv2, conv3 feeds conv4: both grouped
        >>> filter_groups(model, "features.conv1"), filter_groups(model, "features.conv3")
        (2, 2)
        >>> filter_groups(alexnet(groups=1), "features.conv1")
        1
    """
    layer = find_conv(model, name)
    if layer.groups > 1:
        return layer.groups
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    later = convs[convs.index(layer) + 1 :]
    consumer = next((conv for conv in later if conv.in_channels == layer.out_channels), None)
    return consumer.groups if consumer is not None else 1


def filter_images(weight: torch.Tensor) -> np.ndarray:
    """``(O, C, kH, kW)`` weights as ``(O, kH, kW, 3)`` RGB in [0, 1], each filter scaled so 0 is 0.5.

    Example:
        >>> filter_images(torch.tensor([[[[2.0]], [[0.0]], [[-2.0]]]])).ravel().tolist()
        [1.0, 0.5, 0.0]
    """
    weight = weight.detach().float().cpu()
    if weight.shape[1] != 3:
        weight = weight.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (weight / scale / 2 + 0.5).permute(0, 2, 3, 1).numpy()


def draw_filters(
    model: nn.Module, layer: str, path: str | Path, title: str | None = None, notes: Sequence[str] | None = None
) -> str:
    """Write ``layer``'s filters to ``path``, one row block per group; ``notes`` adds a caption per group.

    Returns a one-line description of what was drawn.
    """
    conv = find_conv(model, layer)
    groups = filter_groups(model, layer)
    draw_weights(conv.weight, groups, path, title, notes)
    colour = "RGB" if conv.weight.shape[1] == 3 else "grey"
    return f"{len(conv.weight)} {colour} filters of {layer} ({tuple(conv.weight.shape)}) in {groups} group(s)"


def draw_weights(
    weight: torch.Tensor, groups: int, path: str | Path, title: str | None = None, notes: Sequence[str] | None = None
) -> None:
    """Write the filters ``weight`` ``(O, C, kH, kW)`` to ``path`` in ``groups`` row blocks of O/groups each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = filter_images(weight)
    per_group = len(images) // groups
    columns = min(per_group, 16)
    rows = -(-per_group // columns)
    figure, axes = plt.subplots(groups, 1, figsize=(0.5 * columns + 0.5, (0.5 * rows + 0.45) * groups + 0.4),
                                squeeze=False, constrained_layout=True)  # fmt: skip
    for group, axis in enumerate(axes[:, 0]):
        chunk = images[group * per_group : (group + 1) * per_group]
        axis.imshow(_montage(chunk, columns), interpolation="nearest")
        axis.set_axis_off()
        caption = f"group {group}: filters {group * per_group}-{(group + 1) * per_group - 1}"
        axis.set_title(caption + (f", {notes[group]}" if notes else ""), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)


def _montage(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """``(n, h, w, 3)`` images tiled ``columns`` wide on a white background."""
    count, height, width, _ = images.shape
    rows = -(-count // columns)
    sheet = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, 3))
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        sheet[top : top + height, left : left + width] = image
    return sheet
