"""The layers the benchmark times: the group sweep and a zoo of real networks' grouped layers.

Every layer is float32 and bias-free (the networks below follow their convs with a
norm, and a bias would only add an elementwise pass), except one transposed layer
timed also with a bias, torch.nn's default: given one, PyTorch's transposed convolution
takes a slower path. Batch sizes are smaller than
in training so the whole run stays within minutes on two cores; each is stated in
its layer's ``source``.
"""

from __future__ import annotations

import dataclasses

from ..spec import ConvSpec

_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "output_padding": 0}  # PyTorch's, left out of names


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer to time: its spec, its input shape and where the shape comes from."""

    name: str
    spec: ConvSpec
    input_shape: tuple[int, ...]
    source: str = ""


def sweep(quick: bool = False) -> list[Layer]:
    """256 -> 256, 3x3, padding 1, 28x28, batch 8 at groups 1, 2, 4, ..., 256 (quick: 16
    channels, 8x8, batch 2).

    Example:
        >>> [layer.spec.groups for layer in sweep(quick=True)]
        [1, 2, 4, 8, 16]
    """
    channels, size, batch = (16, 8, 2) if quick else (256, 28, 8)
    groups = [2**i for i in range(channels.bit_length()) if 2**i <= channels]
    return [
        Layer(f"g={g}", _conv(channels, channels, 3, padding=1, groups=g), (batch, channels, size, size), "sweep")
        for g in groups
    ]


def zoo(quick: bool = False) -> list[Layer]:
    """Grouped layers of real networks, at their real widths and feature-map sizes (quick:
    four tiny layers covering 1-, 2- and 3-D and a transposed one)."""
    return _QUICK_ZOO if quick else _ZOO


def outside() -> list[Layer]:
    """Grouped layers of real networks that are not in the zoo: ``python -m groupconv.bench.outside`` checks
    the planner on them, so that a choice tuned to the zoo shows here (nothing is ever tuned against them)."""
    return _OUTSIDE


def describe(spec: ConvSpec, groups: bool = True) -> str:
    """A short name of ``spec`` in PyTorch's words, with only the arguments that differ from their defaults.

    Example:
        >>> describe(ConvSpec(256, 256, 3, padding=1, groups=32, bias=False))
        'Conv2d(256, 256, 3x3, padding=1, groups=32)'
        >>> describe(ConvSpec(8, 4, 4, stride=2, padding=1, groups=2, transposed=True, dims=1), groups=False)
        'ConvTranspose1d(8, 4, 4, stride=2, padding=1)'
    """
    kind = "ConvTranspose" if spec.transposed else "Conv"
    words = [str(spec.in_channels), str(spec.out_channels), "x".join(map(str, spec.kernel_size))]
    for name, default in _DEFAULTS.items():
        values = getattr(spec, name)
        if isinstance(values, str):  # padding "same" or "valid"
            words.append(f"{name}={values!r}")
        elif any(value != default for value in values):
            words.append(f"{name}={_short(values)}")
    if groups and spec.groups > 1:
        words.append(f"groups={spec.groups}")
    return f"{kind}{spec.dims}d({', '.join(words)})"


def _short(values: tuple[int, ...]) -> str:
    """``(2, 2)`` -> ``2``; ``(1, 2)`` -> ``(1, 2)``."""
    return str(values[0]) if len(set(values)) == 1 else str(values)


def _conv(in_channels: int, out_channels: int, kernel_size, dims: int = 2, **layer) -> ConvSpec:
    return ConvSpec(in_channels, out_channels, kernel_size, bias=False, dims=dims, **layer)


def _resnext_stage(stage: int, channels: int, size: int) -> Layer:
    return Layer(
        f"ResNeXt-50 32x4d conv{stage + 1} 3x3",
        _conv(channels, channels, 3, padding=1, groups=32),
        (8, channels, size, size),
        f"Xie et al. 2017, stage {stage} at 224x224, batch 8",
    )


_ALEXNET = "Krizhevsky et al. 2012 at 227x227, batch 8"
OVERHEAD_LAYER = "per-call overhead: 1x64x7x7 g=8"
_ZOO = [
    Layer("AlexNet conv2", _conv(96, 256, 5, padding=2, groups=2), (8, 96, 27, 27), _ALEXNET),
    Layer("AlexNet conv4", _conv(384, 384, 3, padding=1, groups=2), (8, 384, 13, 13), _ALEXNET),
    Layer("AlexNet conv5", _conv(384, 256, 3, padding=1, groups=2), (8, 384, 13, 13), _ALEXNET),
    *(_resnext_stage(stage, 128 * 2 ** (stage - 1), 56 // 2 ** (stage - 1)) for stage in (1, 2, 3, 4)),
    Layer(
        "ShuffleNet 1x g=3 1x1",
        _conv(240, 60, 1, groups=3),
        (16, 240, 28, 28),
        "Zhang et al. 2018, stage 2 bottleneck 1x1 at 224x224, batch 16",
    ),
    Layer(
        "ShuffleNet 1x g=8 1x1",
        _conv(96, 384, 1, groups=8),
        (16, 96, 28, 28),
        "Zhang et al. 2018, stage 2 expanding 1x1 at 224x224, batch 16",
    ),
    Layer(
        "ShuffleNet-style 1x1 g=4 (68 per group)",
        _conv(272, 272, 1, groups=4),
        (8, 272, 28, 28),
        "Zhang et al. 2018, g=4 stage 2 width (272) at 224x224, batch 8: wide groups, where PyTorch channels-last wins",
    ),
    Layer(
        "MobileNetV2 3x3 depthwise",
        _conv(144, 144, 3, padding=1, groups=144),
        (8, 144, 56, 56),
        "Sandler et al. 2018, block 2 (expansion 6) at 224x224, batch 8",
    ),
    Layer(
        "ConvNeXt-T 7x7 depthwise",
        _conv(96, 96, 7, padding=3, groups=96),
        (8, 96, 56, 56),
        "Liu et al. 2022, stage 1 at 224x224, batch 8",
    ),
    Layer(
        "RegNetX-800MF 3x3 (group width 16)",
        _conv(128, 128, 3, padding=1, groups=8),
        (8, 128, 28, 28),
        "Radosavovic et al. 2020, stage 2 at 224x224, batch 8",
    ),
    Layer(
        "wav2vec 2.0 positional conv (1-D)",
        _conv(768, 768, 128, dims=1, padding=64, groups=16),
        (1, 768, 400),
        "Baevski et al. 2020, 8 s of 16 kHz audio (400 frames), batch 1",
    ),
    Layer(
        "3D ResNeXt-101 conv2 3x3x3 (3-D)",
        _conv(128, 128, 3, dims=3, padding=1, groups=32),
        (2, 128, 8, 28, 28),
        "Hara et al. 2018, stage 1 on 16x112x112 clips, batch 2",
    ),
    Layer(
        "grouped ConvTranspose2d 4x4 stride 2",
        ConvSpec(256, 256, 4, stride=2, padding=1, groups=16, bias=False, transposed=True),
        (8, 256, 14, 14),
        "a decoder's 2x upsampling, 14x14 -> 28x28, batch 8 (synthetic)",
    ),
    Layer(
        "grouped ConvTranspose2d 4x4 stride 2, bias",
        ConvSpec(256, 256, 4, stride=2, padding=1, groups=16, transposed=True),
        (8, 256, 14, 14),
        "the layer above with a bias, as torch.nn.ConvTranspose2d has by default",
    ),
    Layer(
        OVERHEAD_LAYER,
        _conv(64, 64, 3, padding=1, groups=8),
        (1, 64, 7, 7),
        "a tiny layer, where the call's cost, not its compute, sets the time",
    ),
]

_QUICK_ZOO = [
    Layer("tiny 2-D g=2", _conv(8, 8, 3, padding=1, groups=2), (2, 8, 6, 6), "quick"),
    Layer("tiny 1-D g=4", _conv(8, 8, 5, dims=1, padding=2, groups=4), (2, 8, 12), "quick"),
    Layer("tiny 3-D depthwise", _conv(4, 4, 3, dims=3, padding=1, groups=4), (1, 4, 4, 4, 4), "quick"),
    Layer(
        "tiny ConvTranspose2d g=2",
        ConvSpec(8, 4, 4, stride=2, padding=1, groups=2, bias=False, transposed=True),
        (2, 8, 4, 4),
        "quick",
    ),
]

_OUTSIDE = [
    Layer("RegNetY-400MF stage 1 3x3 (6 groups of 8)", _conv(48, 48, 3, padding=1, groups=6), (8, 48, 56, 56)),
    Layer("RegNetX-1.6GF stage 3 3x3 (17 groups of 24)", _conv(408, 408, 3, padding=1, groups=17), (8, 408, 14, 14)),
    Layer("ResNeXt-101 64x4d conv2 3x3 (64 groups of 4)", _conv(256, 256, 3, padding=1, groups=64), (8, 256, 56, 56)),
    Layer(
        "ShuffleNetV2 3x3 depthwise, stride 2", _conv(116, 116, 3, stride=2, padding=1, groups=116), (8, 116, 28, 28)
    ),
    Layer(
        "EfficientNet-B0 3x3 depthwise, stride 2", _conv(96, 96, 3, stride=2, padding=1, groups=96), (8, 96, 112, 112)
    ),
    Layer("MobileNetV3 5x5 depthwise", _conv(240, 240, 5, padding=2, groups=240), (8, 240, 14, 14)),
    Layer("ShuffleNet 1x g=3 stage 3 1x1", _conv(480, 120, 1, groups=3), (16, 480, 14, 14)),
    Layer("Conformer 1-D depthwise, kernel 31", _conv(256, 256, 31, dims=1, padding=15, groups=256), (8, 256, 200)),
    Layer("X3D 3x3x3 depthwise (3-D)", _conv(96, 96, 3, dims=3, padding=1, groups=96), (4, 96, 8, 28, 28)),
    Layer(
        "grouped ConvTranspose2d 4x4 stride 2 (32 groups of 4)",
        ConvSpec(128, 128, 4, stride=2, padding=1, groups=32, bias=False, transposed=True),
        (8, 128, 28, 28),
    ),
]
