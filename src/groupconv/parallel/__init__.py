"""Group-parallel: split a model by its groups across processes, as AlexNet split across two GPUs.

A grouped layer's groups need nothing from each other, so R ranks can each keep 1/R of
the groups of every grouped layer, and of the per-channel layers between them, and
run a chain of aligned grouped layers without communicating. Layers that mix channels
(dense convolutions, Linear, channel shuffles) are split too, by output or by input
channels, and communicate through ``torch.distributed`` collectives whose gradients
are their transposes. Every rank reads the whole batch and gets the whole output.

    plan(model, example_input, world_size)    how it would be split: no processes needed
    shard(model, example_input)               the split model, on an initialised process group
    launch.spawn(fn, world_size)              run fn on R local processes (gloo, or NCCL on GPUs)

Modules: ``collectives`` (placements, transitions, byte counts), ``rules`` (how each kind
of layer is split), ``planner`` (tracing and decisions), ``group_parallel`` (the split
model, checkpoints), ``launch`` (processes), ``measure`` (bytes and step times).
"""

from .collectives import CollectiveError, Traffic
from .group_parallel import GroupParallel, shard
from .planner import Plan, plan
from .rules import ShardingError

__all__ = ["CollectiveError", "GroupParallel", "Plan", "ShardingError", "Traffic", "plan", "shard"]
