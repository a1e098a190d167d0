"""End to end: one training step (forward, backward, SGD step) of a whole network,
plain PyTorch against the same network with ``groupconv.nn.convert`` and the same weights.
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
from ..models import resnext, shufflenet
from ..timing import TimerSettings, Timing, interleaved

_TORCH_OF_TWIN = {twin: torch_class for torch_class, twin in gnn.TWINS.items()}
_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Network:
    """A network to train: how to build it and the batch it trains on."""

    name: str
    build: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]


@dataclasses.dataclass
class StepResult:
    """Median training-step times of one network; ``speedup`` is PyTorch's time over groupconv's.
    ``loss_difference``: |loss| difference of the two on the same first batch (same weights)."""

    name: str
    input_shape: tuple[int, ...]
    pytorch: Timing
    groupconv: Timing
    loss_difference: float

    @property
    def speedup(self) -> float:
        return self.pytorch.median_s / self.groupconv.median_s


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
        Network(
            "ShuffleNet 0.5x g=8 (groupconv.models.shufflenet)",
            partial(shufflenet, groups=8, in_channels=3, width=0.5),
            (16, 3, 32, 32),
        ),
    ]


def measure(network: Network, settings: TimerSettings, tuned: bool = True, seed: int = 0) -> StepResult:
    """Time training steps of the plain-PyTorch network and its converted twin (tuned first unless
    not ``tuned``), interleaved."""
    torch.manual_seed(seed)
    plain = to_torch(network.build())
    twin = gnn.convert(copy.deepcopy(plain))
    x = torch.randn(network.input_shape)
    labels = torch.randint(_CLASSES, network.input_shape[:1])
    if tuned:
        tuning.tune(twin, x, retune=True, layout=False)  # the step is compared on channels-first input
    loss_difference = abs(F.cross_entropy(plain(x), labels).item() - F.cross_entropy(twin(x), labels).item())
    timings = interleaved({"pytorch": training_step(plain, x, labels), "groupconv": training_step(twin, x, labels)},
                          settings)  # fmt: skip
    return StepResult(network.name, network.input_shape, timings["pytorch"], timings["groupconv"], loss_difference)


def to_torch(model: torch.nn.Module) -> torch.nn.Module:
    """Turn every ``groupconv.nn`` conv in ``model`` back into its ``torch.nn`` class, in place
    (the inverse of ``groupconv.nn.convert``)."""
    for module in model.modules():
        torch_class = _TORCH_OF_TWIN.get(type(module))
        if torch_class is not None:
            module.__class__ = torch_class
    return model


def training_step(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One SGD step (momentum 0.9) of cross-entropy on ``(x, labels)``, as a call."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step
