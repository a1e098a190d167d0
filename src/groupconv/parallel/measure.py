"""Bytes sent and step time per training step: group-parallel, DistributedDataParallel, one process.

Each mode trains the same model (``groupconv train``'s, on Fashion-MNIST-shaped random
data) with Adam on the same global batch:

    one process     the whole batch, with 1 thread and with R threads
    data-parallel   DistributedDataParallel: each of R ranks a 1/R slice of the batch, its
                    gradients all-reduced (counted by a DDP communication hook)
    group-parallel  groupconv.parallel.shard: each of R ranks the whole batch and 1/R of
                    every layer (counted by its Communicator)

Bytes are what each rank sends under a ring algorithm (see
:class:`~groupconv.parallel.collectives.Traffic`); step time is rank 0's wall time for
forward, backward and optimizer step, as the median over every timed step.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..tables import markdown_table
from ..training.data import DATASETS
from ..training.train import TrainConfig, build_model
from .collectives import Traffic, sent_bytes
from .group_parallel import shard
from .launch import spawn
from .planner import plan
from .training import example_input

MODES = ("one process", "data-parallel", "group-parallel")
_ONE_PROCESS, _DISTRIBUTED = MODES[0], MODES[1:]


@dataclasses.dataclass(frozen=True)
class Setup:
    """What to measure: ``groupconv train``'s model, batch, ranks and how many steps."""

    model: str = "alexnet"
    groups: int = 2
    width: float = 0.125
    batch_size: int = 128
    ranks: int = 2
    warmup: int = 3
    steps: int = 20

    def config(self) -> TrainConfig:
        return TrainConfig(model=self.model, groups=self.groups, width=self.width, batch_size=self.batch_size)

    def __str__(self) -> str:
        return (
            f"{self.model}, groups={self.groups}, width {self.width}, batch {self.batch_size}, {self.ranks} ranks: "
            f"{self.steps} steps timed after {self.warmup}"
        )


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One mode's numbers: bytes and collectives per step (per rank), parameters held per rank, step times."""

    mode: str
    ranks: int
    threads_per_rank: int
    bytes_per_step: int
    collectives_per_step: int
    parameters_per_rank: int
    step_seconds: list[float]

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def quartiles(self) -> tuple[float, float]:
        quartiles = statistics.quantiles(self.step_seconds, n=4)
        return quartiles[0], quartiles[2]


def measure(setup: Setup) -> list[Measurement]:
    """Every mode of :data:`MODES` on ``setup``, in that order (one process twice: 1 and R threads)."""
    with tempfile.TemporaryDirectory(prefix="groupconv-measure-") as folder:
        results = [_one_process(setup, threads) for threads in sorted({1, setup.ranks})]
        for mode in _DISTRIBUTED:
            spawn(_rank, setup.ranks, mode, setup, folder, deadline=600)
            results.append(Measurement(**json.loads(Path(folder, "result.json").read_text())))
    return results


def table(setup: Setup, results: list[Measurement]) -> str:
    """A Markdown table of ``results``."""
    headers = [
        "mode", "ranks x threads", "bytes sent per rank per step", "collectives per step", "parameters per rank",
        "step time, median (quartiles)",
    ]  # fmt: skip
    rows = [
        [
            result.mode, f"{result.ranks} x {result.threads_per_rank}", f"{result.bytes_per_step:,}",
            result.collectives_per_step, f"{result.parameters_per_rank:,}", _step_time(result),
        ]
        for result in results
    ]  # fmt: skip
    return markdown_table(headers, rows, "<<>>><")


def _step_time(result: Measurement) -> str:
    low, high = result.quartiles
    return f"{1000 * result.median_seconds:.0f} ms ({1000 * low:.0f}-{1000 * high:.0f})"


def _one_process(setup: Setup, threads: int) -> Measurement:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, images, labels = _problem(setup)
        seconds, _ = _train(model, images, labels, setup)
    finally:
        torch.set_num_threads(previous)
    return Measurement(_ONE_PROCESS, 1, threads, 0, 0, _count(model), seconds)


def predicted_bytes(setup: Setup) -> tuple[int, int]:
    """Bytes per rank per step, without running: group-parallel's from its plan, data-parallel's
    from the parameters (one all_reduce of every gradient). ``measure`` counts the same."""
    model = build_model(setup.config())  # no batch is made: bytes scale with it, any size can be predicted
    group_parallel = plan(model, example_input(setup.config()), setup.ranks).bytes_per_step(setup.batch_size)
    gradients = sum(p.numel() * p.element_size() for p in model.parameters())
    return group_parallel, round(sent_bytes("all_reduce", gradients, setup.ranks))


def _rank(mode: str, setup: Setup, folder: str) -> None:
    """One rank of a distributed mode; rank 0 writes the measurement to ``folder``."""
    model, images, labels = _problem(setup)
    rank, ranks = dist.get_rank(), dist.get_world_size()
    if mode == "group-parallel":
        model = shard(model, images[:1])
    else:
        model = _data_parallel(model)
        images, labels = images.chunk(ranks)[rank], labels.chunk(ranks)[rank]
    seconds, counted = _train(model, images, labels, setup)
    if rank == 0:
        result = Measurement(mode, ranks, torch.get_num_threads(), counted.bytes, counted.calls, _count(model), seconds)
        Path(folder, "result.json").write_text(json.dumps(dataclasses.asdict(result)))


def _data_parallel(model: nn.Module) -> nn.Module:
    """``model`` under DistributedDataParallel, its gradient all-reduces counted in ``model.traffic``."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    traffic = Traffic()

    def counted_allreduce(state, bucket):
        buffer = bucket.buffer()
        traffic.add("all_reduce", sent_bytes("all_reduce", buffer.numel() * buffer.element_size(), state))
        return allreduce_hook(None, bucket)

    wrapped = nn.parallel.DistributedDataParallel(model)
    wrapped.register_comm_hook(dist.get_world_size(), counted_allreduce)
    wrapped.traffic = traffic
    return wrapped


def _train(model: nn.Module, images, labels, setup: Setup) -> tuple[list[float], Traffic]:
    """Step times of ``setup.steps`` Adam steps after ``setup.warmup``; the traffic (``model.traffic``) of the last."""
    traffic = getattr(model, "traffic", Traffic())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for step in range(setup.warmup + setup.steps):
        traffic.reset()
        start = time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= setup.warmup:
            seconds.append(time.perf_counter() - start)
    return seconds, traffic


def _problem(setup: Setup) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model (seed 0) and one random batch shaped like Fashion-MNIST."""
    config = setup.config()
    info = DATASETS[config.dataset]
    torch.manual_seed(0)
    model = build_model(config)
    images = torch.randn(setup.batch_size, *info.image_shape)
    labels = torch.randint(0, len(info.classes), (setup.batch_size,))
    return model, images, labels


def _count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
