"""``groupconv train --group-parallel`` (under torchrun) and ``--procs R`` (spawning R processes).

Every rank runs :func:`groupconv.training.train.train` on the same config and seed, so each builds
the same model and reads the same batches; ``wrap`` splits the model across the ranks.
Rank 0 shows progress and writes the checkpoint (of the whole model) and metrics.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from ..errors import GroupConvError
from ..training.data import DATASETS
from ..training.train import TrainConfig, build_model
from . import launch
from .group_parallel import shard
from .planner import plan


def spawn(command: Callable[[argparse.Namespace], object], ranks: int, config: TrainConfig, args) -> None:
    """Run ``command(args)`` in ``ranks`` new processes, each a rank of one process group.

    Splitting ``config``'s model is tried here first, so a model that cannot be split
    fails with its one-line message before any process starts.
    """
    plan(build_model(config), example_input(config), ranks)
    try:
        launch.spawn(command, ranks, args)
    except launch.LaunchError as error:
        raise GroupConvError(f"group-parallel training failed: {error} (each rank's error is above)") from None


def join(config: TrainConfig) -> tuple[Callable[[nn.Module], nn.Module], bool]:
    """``train``'s ``wrap`` for this rank, and whether this rank leads (reports and saves).

    Joins torchrun's process group, unless this process is a rank already (``--procs``).
    """
    if not dist.is_initialized():
        launch.initialize()
    example = example_input(config)
    return (lambda model: shard(model, example)), dist.get_rank() == 0


def example_input(config: TrainConfig) -> torch.Tensor:
    """One image of ``config``'s data set, zeros: what the planner traces the model on."""
    return torch.zeros(1, *DATASETS[config.dataset].image_shape)
