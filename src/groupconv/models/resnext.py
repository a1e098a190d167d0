"""ResNeXt's bottleneck block in its three equivalent forms (Xie et al. 2017, Fig. 3).

A block with ``cardinality`` C and bottleneck width d splits, transforms and merges:

    (a) C parallel paths, each 1x1 (in -> d), 3x3 (d -> d), 1x1 (d -> out), summed;
    (b) C paths of 1x1 and 3x3, concatenated (C*d channels), then one 1x1 (C*d -> out);
    (c) one 1x1 (in -> C*d), one 3x3 convolution with groups=C, one 1x1 (C*d -> out).

Summing the paths' last 1x1 convs is one 1x1 conv over their concatenation, so (a) is
(b); C independent 3x3 convs on concatenated slices are one grouped conv, so (b) is
(c). :func:`convert_block` moves a block's weights between forms exactly.

Shape legend: C cardinality, d bottleneck width, D = C*d grouped width.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as gnn
from ..errors import GroupConvError
from ..spec import check_int
from .layers import conv_bn

FORMS = ("a", "b", "c")
SMALL_STAGES = ((32, 2), (64, 2), (128, 2))  # (width, stride) per stage: 28x28 -> 14, 7, 4 (for training)


class ResNeXtBlock(nn.Module):
    """One ResNeXt bottleneck block, in form ``"a"``, ``"b"`` or ``"c"`` (see the module doc).

    Every form computes the same function of its canonical weights; BatchNorm after each
    3x3 and 1x1 is per channel, so it splits along the paths like the convs do.

    Example:
        >>> block = ResNeXtBlock(64, 64, cardinality=8, bottleneck_width=4, form="c")
        >>> block.transform[0]
        Conv2d(32, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=8, bias=False)
        >>> block(torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cardinality: int,
        bottleneck_width: int,
        form: str = "c",
        stride: int = 1,
    ):
        super().__init__()
        if form not in FORMS:
            raise GroupConvError(f"form={form!r} is not a ResNeXt form; use one of {', '.join(map(repr, FORMS))}")
        self.form, self.stride = form, stride
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cardinality = check_int("cardinality", cardinality, minimum=1)
        self.bottleneck_width = check_int("bottleneck_width", bottleneck_width, minimum=1)
        width = cardinality * bottleneck_width
        if form == "c":
            self.reduce = conv_bn(in_channels, width, 1)
            self.transform = conv_bn(width, width, 3, stride, groups=cardinality)
        else:
            self.paths = nn.ModuleList(
                nn.Sequential(
                    conv_bn(in_channels, bottleneck_width, 1), conv_bn(bottleneck_width, bottleneck_width, 3, stride)
                )
                for _ in range(cardinality)
            )
        # (a) keeps one d -> out 1x1 per path; (b) and (c) have one D -> out 1x1
        expand_in = bottleneck_width if form == "a" else width
        self.expand = nn.ModuleList(
            gnn.Conv2d(expand_in, out_channels, 1, bias=False) for _ in range(cardinality if form == "a" else 1)
        )
        self.merge_norm = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride, relu=False) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "c":
            transformed = [self.transform(self.reduce(x))]  # one (N, D, H, W) tensor
        else:
            transformed = [path(x) for path in self.paths]  # C tensors (N, d, H, W)
        if self.form == "b":
            transformed = [torch.cat(transformed, dim=1)]
        merged = sum(expand(t) for expand, t in zip(self.expand, transformed))  # (a) sums C paths
        return torch.relu(self.merge_norm(merged) + self.shortcut(x))

    def extra_repr(self) -> str:
        return f"cardinality={self.cardinality}, bottleneck_width={self.bottleneck_width}, form={self.form!r}"


def convert_block(block: ResNeXtBlock, form: str) -> ResNeXtBlock:
    """A new block of ``form`` that computes exactly what ``block`` computes.

    Example:
        >>> a = ResNeXtBlock(16, 16, cardinality=4, bottleneck_width=2, form="a").eval()
        >>> c = convert_block(a, "c")
        >>> x = torch.randn(2, 16, 5, 5)
        >>> torch.allclose(a(x), c(x), atol=1e-5)
        True
    """
    twin = ResNeXtBlock(
        block.in_channels, block.out_channels, block.cardinality, block.bottleneck_width, form, block.stride
    ).to(next(block.parameters()))  # same dtype and device
    twin.load_state_dict(_from_canonical(_canonical(block), twin))
    return twin.train(block.training)


def _canonical(block: ResNeXtBlock) -> dict[str, torch.Tensor]:
    """The block's state in form (c)'s keys: paths concatenated along channels."""
    state = block.state_dict()
    if block.form == "c":
        return state
    canonical = {k: v for k, v in state.items() if not k.startswith(("paths.", "expand."))}
    for key in block.paths[0].state_dict():  # "0.0.weight" (1x1), "1.1.running_mean" (3x3's BN), ...
        stage, rest = {"0": "reduce", "1": "transform"}[key[0]], key[2:]
        canonical[f"{stage}.{rest}"] = _concatenate([state[f"paths.{i}.{key}"] for i in range(block.cardinality)])
    expand = [state[f"expand.{i}.weight"] for i in range(len(block.expand))]
    canonical["expand.0.weight"] = torch.cat(expand, dim=1)  # (out, d) per path -> (out, D)
    return canonical


def _from_canonical(canonical: dict[str, torch.Tensor], block: ResNeXtBlock) -> dict[str, torch.Tensor]:
    """``canonical`` (form (c)'s keys) split into ``block``'s own keys."""
    if block.form == "c":
        return canonical
    state = {k: v for k, v in canonical.items() if not k.startswith(("reduce.", "transform.", "expand."))}
    for key in block.paths[0].state_dict():
        stage, rest = {"0": "reduce", "1": "transform"}[key[0]], key[2:]
        for i, piece in enumerate(_split(canonical[f"{stage}.{rest}"], block.cardinality)):
            state[f"paths.{i}.{key}"] = piece
    expand = canonical["expand.0.weight"]
    pieces = expand.chunk(block.cardinality, dim=1) if block.form == "a" else [expand]
    state.update({f"expand.{i}.weight": piece for i, piece in enumerate(pieces)})
    return state


def _concatenate(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Per-path tensors joined along the channel axis; a counter (num_batches_tracked) kept once."""
    return pieces[0] if pieces[0].dim() == 0 else torch.cat(pieces)


def _split(tensor: torch.Tensor, cardinality: int) -> list[torch.Tensor]:
    return [tensor] * cardinality if tensor.dim() == 0 else list(tensor.chunk(cardinality))


def resnext(
    num_classes: int = 10,
    in_channels: int = 1,
    cardinality: int = 8,
    bottleneck_width: float = 4,
    stages=((64, 1), (128, 2), (256, 2)),
    form: str = "c",
    constant_width: bool = False,
) -> nn.Sequential:
    """A small ResNeXt: a 3x3 stem, one ResNeXt block per (width, stride) stage, whose
    bottleneck width doubles with the block width, global pooling and a classifier.

    Stage ``i``'s paths are ``round(bottleneck_width * 2**i)`` channels wide, so a
    fractional ``bottleneck_width`` sets widths finely enough to hold the parameter count
    across cardinalities. With ``constant_width`` the cardinality doubles instead and every
    path stays ``bottleneck_width`` wide (RegNet's constant group width): the same grouped
    widths, in narrower groups.

    Example:
        >>> resnext()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if not stages:
        raise GroupConvError("stages=() has no stage; give at least one (width, stride), e.g. ((64, 1),)")
    stem = stages[0][0] // 2
    layers = nn.Sequential()
    layers.add_module("stem", conv_bn(in_channels, stem, 3))
    if bottleneck_width < 1:
        raise GroupConvError(f"bottleneck_width={bottleneck_width} is below one channel; use >= 1")
    channels = stem
    for index, (out_channels, stride) in enumerate(stages):
        paths, width = (cardinality * 2**index, 1) if constant_width else (cardinality, 2**index)
        width = max(1, round(bottleneck_width * width))
        layers.add_module(f"block{index + 1}", ResNeXtBlock(channels, out_channels, paths, width, form, stride))
        channels = out_channels
    layers.add_module("pool", nn.AdaptiveAvgPool2d(1))
    layers.add_module("flatten", nn.Flatten())
    layers.add_module("fc", nn.Linear(channels, num_classes))
    return layers
