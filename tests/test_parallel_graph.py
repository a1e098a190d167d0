"""groupconv.parallel on graphs whose transitions meet: a collective after one layer feeding another's before it,
a model ending in a split layer, a layer called twice, and an example input the model cannot take.

Each split model runs forward and backward on 2 gloo processes (spawned once, a module fixture) in float64; its
output, every gradient and the bytes it sends must equal the unsplit model's (computed here) and the plan's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_parallel import DEADLINE, RANKS, close
from torch import nn

from groupconv.parallel import ShardingError, plan, shard
from groupconv.parallel.launch import spawn

CHANNELS, BATCH, SIZE = 2, 2, 5


class CalledTwice(nn.Module):
    """One layer applied twice (shared weights)."""

    def __init__(self, layer: nn.Module, stem: nn.Module):
        super().__init__()
        self.stem, self.layer = stem, layer

    def forward(self, x):
        return self.layer(self.layer(self.stem(x)))


class ReadTwice(nn.Module):
    """One dense layer reading one activation twice: both calls share one gather of it."""

    def __init__(self):
        super().__init__()
        self.stem, self.layer = nn.Conv2d(CHANNELS, 4, 1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        return self.layer(y) + self.layer(y)


MODELS = {
    # 4->3 split by inputs and all_reduced (3 does not divide by 2), read whole by 3->4 split by outputs
    "all-reduced-into-split-by-outputs": lambda: nn.Sequential(
        nn.Conv2d(CHANNELS, 4, 1), nn.Conv2d(4, 3, 1), nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(100, 2)
    ),
    # the 3x3 stride-2 conv shrinks its output, so it splits by inputs and reduce_scatters; the next gathers it
    "reduce-scattered-into-split-by-outputs": lambda: nn.Sequential(
        nn.Conv2d(CHANNELS, 4, 1),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.Conv2d(4, 4, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16, 2),
    ),
    "ends-in-a-channel-shuffle": lambda: nn.Sequential(
        nn.Conv2d(CHANNELS, 8, 1), nn.Conv2d(8, 8, 1, groups=2), nn.ChannelShuffle(2)
    ),
    "grouped-layer-called-twice": lambda: CalledTwice(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(2, 8, 1)),
    "4-groups-layer-called-twice": lambda: CalledTwice(nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Conv2d(2, 8, 1)),
    "dense-layer-reading-one-activation-twice": ReadTwice,
}


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 batch, and the generator that then draws the loss's weights."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=generator, dtype=torch.float64)
    return x, generator


def loss(output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random weighting of the output, so that a gradient in the wrong channel shows."""
    return (output * torch.randn(output.shape, generator=generator, dtype=output.dtype)).sum()


def rank_runs_every_model(folder: str) -> None:
    """On each rank: shard each model, run forward and backward; save the output, gradients and bytes, or the
    error (the same on every rank, so the others still run)."""
    rank = dist.get_rank()
    for name, make in MODELS.items():
        torch.manual_seed(0)
        x, generator = inputs()
        try:
            model = shard(make().double(), x[:1])
            output = model(x)
            loss(output, generator).backward()
            sent = model.traffic.bytes  # before full_grads' own collectives
            run = {"output": output.detach(), "grads": model.full_grads(), "sent": sent,
                   "planned": model.plan.bytes_per_step(BATCH)}  # fmt: skip
        except Exception as error:  # recorded, for this model's test to fail on
            run = {"error": f"{type(error).__name__}: {error}"}
        torch.save(run, Path(folder, f"{name}-{rank}.pt"))


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parallel-graph")
    spawn(rank_runs_every_model, RANKS, str(folder), timeout=30, deadline=DEADLINE)
    return folder


def whole_run(name: str) -> dict:
    torch.manual_seed(0)
    model = MODELS[name]().double()
    x, generator = inputs()
    output = model(x)
    loss(output, generator).backward()
    return {"output": output.detach(), "grads": {key: p.grad for key, p in model.named_parameters()}}


def split_run(folder: Path, name: str, rank: int) -> dict:
    run = torch.load(folder / f"{name}-{rank}.pt", weights_only=False)
    if "error" in run:
        pytest.fail(f"{name} on rank {rank}: {run['error']}")
    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_rank_gets_the_unsplit_models_output_and_gradients(split_runs, name):
    expected = whole_run(name)
    for rank in range(RANKS):
        run = split_run(split_runs, name, rank)
        for key in ("output", "grads"):
            close(run[key], expected[key], f"rank {rank} {key}:")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_the_bytes_sent_are_the_plans(split_runs, name):
    run = split_run(split_runs, name, 0)
    assert run["sent"] == run["planned"]  # a transition planned but left out of the graph would send less


def test_a_layer_called_twice_and_split_unlike_is_refused_naming_it_and_the_fix():
    model = CalledTwice(nn.Conv2d(4, 4, 3), nn.Identity())  # 5x5 -> 3x3 by outputs, then 3x3 -> 1x1 by inputs
    with pytest.raises(ShardingError, match=r"^cannot split layer: it is called more than once.*replicate=\['layer'\]"):
        plan(model, torch.zeros(1, 4, SIZE, SIZE), world_size=2)
    steps = plan(model, torch.zeros(1, 4, SIZE, SIZE), world_size=2, replicate=["layer"]).steps
    assert steps["layer"].decision.how == steps["layer_1"].decision.how == "replicated"


def test_an_example_input_the_model_cannot_take_is_refused_naming_its_shape(capfd):
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    message = r"^cannot split Sequential: it fails on the example input of shape \(1, 3, 8, 8\), at 0 \(RuntimeError: "
    with pytest.raises(ShardingError, match=message) as refusal:
        plan(model, torch.zeros(1, 3, 8, 8), world_size=2)
    assert "\n" not in str(refusal.value) and "example_input" in str(refusal.value)
    assert capfd.readouterr().err == ""  # no traceback printed besides
