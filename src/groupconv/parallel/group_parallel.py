"""``shard``: split a model by its groups across the ranks of a process group.

Each rank builds the same model (same seed), calls :func:`shard` with the same
example input, and trains the result as it would the model: every rank reads the whole
batch and gets the whole output, while each holds and computes only its part of the
layers (see :mod:`~groupconv.parallel.rules`) and the activations move between ranks
only where a layer mixes channels (see :mod:`~groupconv.parallel.collectives`).
"""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.fx as fx
from torch import nn

from ..errors import GroupConvError
from . import planner
from .collectives import Communicator, Traffic, Transition
from .planner import Plan, Step
from .rules import Placement, ShardingError, local_layer

_TRANSITIONS = "_parallel"  # where a GroupParallel's Transition modules live in its graph module


def shard(
    model: nn.Module,
    example_input: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    replicate: Iterable[str] = (),
) -> GroupParallel:
    """Split ``model`` across the ranks of ``group`` (default: all), each keeping 1/R of every layer.

    Call it on every rank, with the same model and example input. Like
    ``DistributedDataParallel``, rank 0's weights are copied to every rank first, so the
    split model computes exactly what ``model`` on rank 0 computes; ``model`` itself is
    left as it was. A model with dropout needs every rank seeded alike (the same masks
    on every rank, as in the unsplit model); :func:`shard` checks that.

    Args:
        model: the whole model, as one process would train it.
        example_input: a batch of its input (one sample is enough), to trace it.
        group: the process group to split over.
        replicate: names of layers to keep whole on every rank, where they cannot be split.

    Raises:
        ShardingError: a layer cannot be split, or the model does not run on ``example_input``;
            the message names the layer and the fix.

    Example (in each of R processes, after ``torch.distributed.init_process_group``)::

        torch.manual_seed(0)
        model = shard(alexnet(groups=2), torch.zeros(1, 1, 28, 28))
        optimizer = torch.optim.Adam(model.parameters())  # this rank's part
        loss = F.cross_entropy(model(images), labels)     # the whole batch on every rank
        loss.backward()
        optimizer.step()
        torch.save(model.full_state_dict(), "alexnet.pt")  # on every rank: it communicates
    """
    communicator = Communicator(group)
    plan = planner.plan(model, example_input, communicator.world_size, replicate)
    _check_random_state(model, communicator)
    state = {key: _from_rank0(key, tensor, communicator) for key, tensor in model.state_dict().items()}
    return GroupParallel(plan, state, communicator, _aliases(model))


def _aliases(model: nn.Module) -> dict[str, str]:
    """The model's state_dict keys that name a tensor an earlier key names (a module registered twice), each
    with that earlier key: the traced model keeps only the first name."""
    first: dict[int, str] = {}
    aliases = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key
    return aliases


class GroupParallel(nn.Module):
    """A model split by its groups across ranks; made by :func:`shard`.

    ``module`` is the split model (a ``torch.fx.GraphModule``: ``print(model.module.code)``
    shows where it communicates); its ``state_dict`` keys are the whole model's, holding
    this rank's parts. ``plan`` says how each layer is split; ``traffic`` counts what this
    rank has sent (``traffic.reset()`` to start over).
    """

    def __init__(self, plan: Plan, state: dict[str, torch.Tensor], communicator: Communicator, aliases: dict[str, str]):
        super().__init__()
        self.plan, self.communicator, self.aliases = plan, communicator, aliases
        self.module = plan.graph_module
        self.placements = _split_layers(self.module, plan, state, communicator)
        _tie(self.module, self.placements, aliases)
        self.parameter_names = {key for key, placement in self.placements.items() if placement.parameter}
        _insert_transitions(self.module, plan, communicator)
        communicator.traffic.reset()

    def forward(self, *args, **kwargs):
        _check_same_inputs(args, self.communicator)
        return self.module(*args, **kwargs)

    @property
    def traffic(self) -> Traffic:
        return self.communicator.traffic

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's ``state_dict``, assembled from every rank's part (on every rank).

        A collective: call it on every rank. ``model.load_state_dict`` of an unsplit model
        takes it.
        """
        local = self.module.state_dict()
        state = {key: self._assemble(key, local.get(key)) for key in self.placements}
        return {**state, **{alias: state[key] for alias, key in self.aliases.items()}}

    def full_grads(self) -> dict[str, torch.Tensor]:
        """Every parameter's gradient in the whole model, assembled like :meth:`full_state_dict`
        (zeros where backward has not given one). A collective: call it on every rank."""
        local = dict(self.module.named_parameters())
        grads = {key: getattr(local.get(key), "grad", None) for key in sorted(self.parameter_names)}
        return {key: self._assemble(key, grad, missing=torch.zeros) for key, grad in grads.items()}

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` by the whole model's gradient: scale every rank's
        gradients so that the whole 2-norm is at most ``max_norm``; return that norm (before).

        A collective: call it on every rank (a rank's own ``clip_grad_norm_`` sees only its part).
        """
        parameters = dict(self.module.named_parameters())
        grads = {key: parameters[key].grad for key in parameters if parameters[key].grad is not None}
        norm = self._grad_norm(grads)
        scale = min(1.0, max_norm / (norm.item() + 1e-6))  # torch.nn.utils.clip_grad_norm_'s rule
        for grad in grads.values():
            grad.mul_(scale)
        return norm

    def _grad_norm(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """The whole model's gradient 2-norm: split parts summed over the ranks, whole ones counted once."""
        split, whole = (torch.zeros((), dtype=torch.float64, device=self._device()) for _ in range(2))
        for key, grad in grads.items():
            square = grad.square().sum(dtype=torch.float64)
            if self.placements[key].whole:
                whole += square
            else:
                split += square
        return (self.communicator.all_reduce(split, "summing squared gradient norms") + whole).sqrt()

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a whole model's ``state_dict`` (a checkpoint of the unsplit model): each rank keeps its part."""
        expected = self.placements.keys() | self.aliases.keys()
        missing, unexpected = expected - state.keys(), state.keys() - expected
        if missing or unexpected:
            raise ShardingError(
                f"the state_dict does not fit this model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        local = self.module.state_dict()
        for key, placement in self.placements.items():
            part = placement.local(state[key], self.communicator.rank, self.communicator.world_size)
            if part is not None:
                local[key].copy_(part)

    def _assemble(self, key: str, part: torch.Tensor | None, missing=torch.empty) -> torch.Tensor:
        placement, communicator = self.placements[key], self.communicator
        if part is None:
            shape = placement.shape if placement.dim is None else _block_shape(placement, communicator.world_size)
            part = missing(shape, dtype=placement.dtype, device=self._device())
        where = f"assembling {key}"
        if placement.dim is not None:
            return communicator.all_gather(part.contiguous(), where, dim=placement.dim)
        if placement.owner is not None:
            return communicator.broadcast(part.clone(), where, source=placement.owner)
        return part.clone()

    def _device(self) -> torch.device:
        return next(self.module.parameters(), torch.empty(0)).device


def _split_layers(graph_module: fx.GraphModule, plan: Plan, state, communicator: Communicator) -> dict:
    """Replace each layer of ``graph_module`` with this rank's, loaded from ``state``; the placements of ``state``."""
    placements, split = {}, set()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr":
            placements.update(_own_attribute(graph_module, node.target, state))
        if node.op != "call_module" or node.target in split:  # a layer called twice is split once (plan checks how)
            continue
        split.add(node.target)
        layer = graph_module.get_submodule(node.target)
        prefix = f"{node.target}."
        layer_state = {key[len(prefix) :]: tensor for key, tensor in state.items() if key.startswith(prefix)}
        how = plan.steps[node.name].decision.how
        local, layer_placements = local_layer(layer, how, layer_state, communicator.rank, communicator.world_size)
        placements.update({prefix + key: placement for key, placement in layer_placements.items()})
        graph_module.set_submodule(node.target, local)
    return placements


def _tie(graph_module: fx.GraphModule, placements: dict[str, Placement], aliases: dict[str, str]) -> None:
    """Give each tensor the model ties to an earlier one (``head2.weight = head.weight``) this rank's part of that
    one, and drop its placement: it is assembled and loaded as its first name."""
    for alias, key in aliases.items():
        if alias not in placements:
            continue  # a module registered twice is traced once, under its first name
        if placements.pop(alias) != placements[key]:
            layers = [name.rpartition(".")[0] for name in (key, alias)]
            raise ShardingError(
                f"{alias} is {key} (tied), but their layers split it differently; keep both whole: replicate={layers}"
            )
        owner, _, name = alias.rpartition(".")
        setattr(graph_module.get_submodule(owner), name, functools.reduce(getattr, key.split("."), graph_module))


def _own_attribute(graph_module: fx.GraphModule, target: str, state) -> dict[str, Placement]:
    """A tensor the model's code reads directly (``get_attr``): a copy of rank 0's, kept whole on every rank."""
    owner_name, _, name = target.rpartition(".")
    owner = graph_module.get_submodule(owner_name)
    old = getattr(owner, name)
    tensor = state.get(target, old).detach().clone()
    if isinstance(old, nn.Parameter):
        owner.register_parameter(name, nn.Parameter(tensor, old.requires_grad))
    else:
        setattr(owner, name, tensor)
    parameter = isinstance(old, nn.Parameter)
    return {target: Placement(tensor.shape, tensor.dtype, parameter=parameter)} if target in state else {}


def _insert_transitions(graph_module: fx.GraphModule, plan: Plan, communicator: Communicator) -> None:
    """Put each step's transitions into the graph: its inputs' before it, its output's after it."""
    graph, made, count = graph_module.graph, {}, itertools.count()
    current = {}  # node name: the node its readers read, the transition after it where it has one
    for node in list(graph.nodes):
        step = plan.steps[node.name]
        where = f"before {step.name}" if node.op != "output" else "at the model's output"
        for edge in step.before:
            source = current[edge.source]
            if (edge.source, edge.kind) not in made:  # one transition per activation and kind, however many read it
                with graph.inserting_before(node):
                    transition = Transition(edge.kind, communicator, where)
                    made[edge.source, edge.kind] = _add(graph_module, transition, source, next(count))
            node.replace_input_with(source, made[edge.source, edge.kind])
        current[node.name] = _insert_after(graph_module, node, step, communicator, next(count)) if step.after else node
    graph.lint()
    graph_module.recompile()


def _insert_after(
    graph_module: fx.GraphModule, node: fx.Node, step: Step, communicator: Communicator, index: int
) -> fx.Node:
    """The node applying ``step``'s transition after ``node``, which every other reader of ``node`` now reads."""
    with graph_module.graph.inserting_after(node):
        transition = Transition(step.after.kind, communicator, f"after {step.name}", step.after.permutation)
        completed = _add(graph_module, transition, node, index)
    node.replace_all_uses_with(completed, delete_user_cb=lambda user: user is not completed)
    return completed


def _add(graph_module: fx.GraphModule, transition: Transition, source: fx.Node, index: int) -> fx.Node:
    """A node that applies ``transition`` to ``source``, at the graph's insertion point."""
    name = f"{_TRANSITIONS}.{transition.kind}_{index}"
    graph_module.add_submodule(name, transition)
    return graph_module.graph.call_module(name, (source,))


def _from_rank0(key: str, tensor: torch.Tensor, communicator: Communicator) -> torch.Tensor:
    """Rank 0's copy of one tensor of the model's state, where the original lives."""
    copy = tensor.detach().to(communicator.device, copy=True)
    return communicator.broadcast(copy, f"copying {key} from rank 0").to(tensor.device)


def _check_random_state(model: nn.Module, communicator: Communicator) -> None:
    """Dropout must draw the same masks on every rank: the random states must agree."""
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return
    states = [torch.get_rng_state()] + ([torch.cuda.get_rng_state()] if communicator.backend == "nccl" else [])
    digest = torch.tensor([[zlib.crc32(torch.cat(states).numpy().tobytes())]], device=communicator.device)
    digests = communicator.all_gather(digest, "comparing random states").flatten().tolist()
    if len(set(digests)) > 1:
        raise ShardingError(
            "the ranks' random states differ, so dropout would drop different units on each rank: seed every "
            "rank alike (torch.manual_seed(seed) on each) before building and sharding the model"
        )


def _block_shape(placement: Placement, world_size: int) -> list[int]:
    shape = list(placement.shape)
    shape[placement.dim] //= world_size
    return shape


_CHECKED_INPUTS, _CHECKED_DIMS = 4, 6  # the fingerprint's fixed size: every rank must send as many numbers


def _check_same_inputs(args: tuple, communicator: Communicator) -> None:
    """Every rank must compute on rank 0's batch: a different batch of the same size would silently give wrong
    outputs, and of another size abort a collective. One all_reduce of a small fingerprint (each input tensor's
    shape, sum, sum of squares and position-weighted sum) taken both as MAX and, negated, as MIN: any difference
    reaches every rank, so all of them stop with the same message."""
    fingerprint = _fingerprint([a for a in args if isinstance(a, torch.Tensor)][:_CHECKED_INPUTS])
    both = torch.cat([fingerprint, -fingerprint]).to(communicator.device)
    with torch.no_grad():
        dist.all_reduce(both, op=dist.ReduceOp.MAX, group=communicator.group)
    highest, lowest = both[: len(fingerprint)], -both[len(fingerprint) :]
    if not torch.equal(highest, lowest):
        raise GroupConvError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: the ranks' inputs differ in shape or data; "
            "group-parallel needs the same batch on every rank (the same data, batch size and shuffling seed)"
        )


def _fingerprint(tensors: list[torch.Tensor]) -> torch.Tensor:
    rows = []
    for x in tensors:
        shape = list(x.shape)[:_CHECKED_DIMS] + [-1] * (_CHECKED_DIMS - min(x.dim(), _CHECKED_DIMS))
        values = x.detach().double().flatten()
        positions = torch.arange(1, len(values) + 1, dtype=values.dtype, device=values.device)
        sums = [values.sum(), values.square().sum(), (values * positions).sum()]  # the last: order matters
        rows.append(torch.tensor([x.dim(), *shape, *(total.item() for total in sums)]))
    rows += [torch.full((_CHECKED_DIMS + 4,), -2.0)] * (_CHECKED_INPUTS - len(rows))
    return torch.cat(rows).double()
