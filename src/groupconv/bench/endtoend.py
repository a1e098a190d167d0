"""End to end: one training step (forward, backward, SGD step) of a whole network, plain PyTorch
in each memory layout against the same network after ``groupconv.nn.convert`` (tuned), same weights.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from .. import nn as gnn
from .. import tuning
from ..layouts import named
from ..models import resnext, shufflenet
from ..timing import TimerSettings, Timing, interleaved, median_of

_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Network:
    """A network to train: how to build it and the batch it trains on."""

    name: str
    build: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]
    target: float = 1.0  # groupconv's training step at least this many times as fast as PyTorch's faster layout


@dataclasses.dataclass
class StepResult:
    """Median training-step times of one network: PyTorch channels-first (``pytorch``) and channels-last
    (``pytorch_cl``), and groupconv on channels-first input, run in the layout ``groupconv.tune`` chose
    for the model (``groupconv_layout``; the input's conversion to it is in the step). ``speedup`` is
    PyTorch's faster layout's time over groupconv's. ``loss_difference``: |loss| difference of
    PyTorch's and groupconv's first batch (same weights)."""

    name: str
    input_shape: tuple[int, ...]
    pytorch: Timing
    pytorch_cl: Timing
    groupconv: Timing
    loss_difference: float
    target: float
    groupconv_layout: str = "channels_first"
    run_speedups: list[float] = dataclasses.field(default_factory=list)  # every run's, when several ran

    @property
    def speedup(self) -> float:
        return min(self.pytorch.median_s, self.pytorch_cl.median_s) / self.groupconv.median_s


def median_run(runs: list[StepResult]) -> StepResult:
    """The run with the median speedup (the lower one of an even count), with every run's speedup."""
    return dataclasses.replace(median_of(runs, key=lambda run: run.speedup), run_speedups=[run.speedup for run in runs])


def networks(quick: bool = False) -> list[Network]:
    """A ResNeXt-style and a ShuffleNet-style network from :mod:`groupconv.models` on
    CIFAR-sized colour images, batch 16 (quick: tiny ones, batch 2)."""
    if quick:
        return [
            Network("ResNeXt (tiny)", partial(resnext, in_channels=3, cardinality=4, stages=((16, 1), (32, 2))),
                    (2, 3, 8, 8)),
            Network("ShuffleNet g=3 (tiny)", partial(shufflenet, groups=3, in_channels=3, repeats=(1, 1, 1)),
                    (2, 3, 16, 16)),
        ]  # fmt: skip
    return [
        Network("ResNeXt 8x4d, 3 blocks (groupconv.models.resnext)", partial(resnext, in_channels=3), (16, 3, 32, 32)),
        # every 3x3 layer at 4 channels per group, where groupconv's own kernels should pay most
        Network(
            "ResNeXt, 4 channels per group in every block (constant_width=True)",
            partial(resnext, in_channels=3, constant_width=True),
            (16, 3, 32, 32),
            1.3,
        ),
        Network(
            "ShuffleNet 0.5x g=8 (groupconv.models.shufflenet)",
            partial(shufflenet, groups=8, in_channels=3, width=0.5),
            (16, 3, 32, 32),
        ),
    ]


def measure(network: Network, settings: TimerSettings, tuned: bool = True, seed: int = 0) -> StepResult:
    """Time training steps of the plain-PyTorch network in both layouts and its converted twin on
    channels-first input, interleaved. Unless not ``tuned``, the twin is tuned first and runs in the
    layout tune chose for it (as ``tune(model, x, apply_layout=True)`` leaves a user's model)."""
    torch.manual_seed(seed)
    plain = gnn.revert(network.build())
    twin = gnn.convert(copy.deepcopy(plain))
    plain_cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x = torch.randn(network.input_shape)
    labels = torch.randint(_CLASSES, network.input_shape[:1])
    layout = tuning.tune(twin, x, apply_layout=True).layout.chosen if tuned else "channels_first"
    loss_difference = abs(F.cross_entropy(plain(x), labels).item() - F.cross_entropy(twin(x), labels).item())
    steps = {
        "pytorch": training_step(plain, x, labels),
        "pytorch_cl": training_step(plain_cl, x.contiguous(memory_format=torch.channels_last), labels),
        "groupconv": training_step(twin, x, labels, named(layout, x.dim() - 2)),
    }
    timings = interleaved(steps, settings)
    return StepResult(
        network.name, network.input_shape, **timings, loss_difference=loss_difference, target=network.target,
        groupconv_layout=layout,
    )  # fmt: skip


def training_step(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, layout: torch.memory_format | None = None
) -> Callable[[], None]:
    """One SGD step (momentum 0.9) of cross-entropy on ``(x, labels)``, as a call; ``x`` is converted to
    ``layout`` (if given) inside the step, as a training loop converts each batch."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x if layout is None else x.contiguous(memory_format=layout)), labels).backward()
        optimizer.step()

    return step
