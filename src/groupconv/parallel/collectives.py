"""The collectives a group-parallel model communicates through, and their gradients.

Every activation of a split model is in one of three placements across the R ranks (where its pieces live):

    replicated  every rank holds the whole tensor, and after backward its whole gradient
    sharded     rank r holds block r of R along dim 1 (channels, or features once
                flattened), and that block's gradient
    partial     every rank holds a summand (the output of a layer split by input channels)

A :class:`Transition` moves a tensor between placements. Its backward is the forward's
transpose (as a linear map), so every gradient arrives in the placement of its tensor:

    transition      forward          backward         placements
    gather          all_gather       keep own block   sharded    -> replicated
    split           keep own block   all_gather       replicated -> sharded
    gather_to_mix   all_gather       reduce_scatter   sharded    -> replicated, read by a layer split by outputs
    copy_to_mix     identity         all_reduce       replicated -> replicated, read by a layer split by outputs
    reduce_scatter  reduce_scatter   all_gather       partial    -> sharded
    all_reduce      all_reduce       identity         partial    -> replicated
    shuffle         all_to_all       all_to_all       sharded    -> sharded, channels permuted (inverse backward)

("to_mix": a layer split by output channels reads the whole input, so each rank's input
gradient is only its outputs' share, a summand, and the backward sums them.)

:class:`Communicator` runs the collectives on a ``torch.distributed`` process group,
counts the bytes each rank sends, and turns a failed collective into a
:class:`CollectiveError` that says where and why.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

BLOCK_DIM = 1  # the dim a sharded tensor is split along: channels of (N, C, ...), features of (N, F)


class CollectiveError(RuntimeError):
    """A collective failed: a rank stopped, or did not arrive within the process group's timeout."""


@dataclasses.dataclass
class Traffic:
    """Collectives called and bytes sent by this rank, per kind of collective.

    Bytes are those a bandwidth-optimal (ring) algorithm sends from each rank, as NCCL's
    "bus bandwidth" counts them: all_gather of a b-byte block and reduce_scatter of a
    b-byte tensor ``(R-1)/R`` of the whole, all_reduce twice that.

    Example:
        >>> traffic = Traffic()
        >>> traffic.add("all_reduce", 1000)
        >>> traffic.bytes, traffic.calls
        (1000, 1)
    """

    calls_by_kind: Counter = dataclasses.field(default_factory=Counter)
    bytes_by_kind: Counter = dataclasses.field(default_factory=Counter)

    def add(self, kind: str, nbytes: float) -> None:
        self.calls_by_kind[kind] += 1
        self.bytes_by_kind[kind] += nbytes

    def reset(self) -> None:
        self.calls_by_kind.clear()
        self.bytes_by_kind.clear()

    @property
    def calls(self) -> int:
        return sum(self.calls_by_kind.values())

    @property
    def bytes(self) -> int:
        return round(sum(self.bytes_by_kind.values()))


class Communicator:
    """Collectives along dim 1 on a process group (default: the whole world), counted in ``traffic``.

    ``where`` in each call names the layer the collective serves, for error messages.
    With NCCL, tensors must be on the GPU; with gloo, on the CPU (or GPU).
    """

    def __init__(self, group: dist.ProcessGroup | None = None):
        if not dist.is_initialized():
            raise RuntimeError(
                "groupconv.parallel needs torch.distributed: call torch.distributed.init_process_group first "
                "(or launch with groupconv.parallel.launch.spawn, or torchrun)"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend = dist.get_backend(group)
        self.traffic = Traffic()

    @property
    def device(self) -> torch.device:
        """Where this backend's tensors live: the current GPU for NCCL, else the CPU."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def block(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's block of ``x`` along dim 1, as a tensor of its own (no communication)."""
        return x.chunk(self.world_size, BLOCK_DIM)[self.rank].clone(memory_format=torch.contiguous_format)

    def all_gather(self, x: torch.Tensor, where: str, dim: int = BLOCK_DIM) -> torch.Tensor:
        """Every rank's block, concatenated along ``dim``."""
        blocks = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(self.world_size)]
        self._run("all_gather", where, x, self.world_size * _nbytes(x), dist.all_gather, blocks, x.contiguous())
        return torch.cat(blocks, dim)

    def reduce_scatter(self, x: torch.Tensor, where: str) -> torch.Tensor:
        """This rank's block of the sum of every rank's ``x``."""
        blocks = [block.contiguous() for block in x.chunk(self.world_size, BLOCK_DIM)]
        out = torch.empty_like(blocks[self.rank])
        self._run("reduce_scatter", where, x, _nbytes(x), dist.reduce_scatter, out, blocks)
        return out

    def all_reduce(self, x: torch.Tensor, where: str) -> torch.Tensor:
        """The sum of every rank's ``x`` (a new tensor; ``x`` is left as it was)."""
        total = x.clone(memory_format=torch.contiguous_format)
        self._run("all_reduce", where, x, _nbytes(x), dist.all_reduce, total)
        return total

    def all_to_all(self, x: torch.Tensor, routes: Routes, where: str) -> torch.Tensor:
        """This rank's block of a channel permutation of the whole tensor, each channel sent
        where ``routes`` say (every rank sends every rank equally many: see :func:`balanced`)."""
        pieces = [x[:, list(channels)].contiguous() for channels in routes.send]
        received = [torch.empty_like(pieces[0]) for _ in range(self.world_size)]
        self._run("all_to_all", where, x, self.world_size * _nbytes(x), dist.all_to_all, received, pieces)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        for positions, piece in zip(routes.receive, received):
            out[:, list(positions)] = piece
        return out

    def broadcast(self, x: torch.Tensor, where: str, source: int = 0) -> torch.Tensor:
        """``x`` as rank ``source`` of the group holds it (in place)."""
        global_source = source if self.group is None else dist.get_global_rank(self.group, source)
        self._run("broadcast", where, x, _nbytes(x), dist.broadcast, x, global_source)
        return x

    def _run(self, kind: str, where: str, x: torch.Tensor, whole: int, collective, *args, **kwargs) -> None:
        """``collective(*args)`` on the group, counted as :func:`sent_bytes` of a ``whole``-byte tensor."""
        try:
            collective(*args, group=self.group, **kwargs)
        except RuntimeError as error:  # gloo and NCCL raise DistBackendError, a RuntimeError
            reason = " ".join(str(error).split())
            raise CollectiveError(
                f"{kind} of {tuple(x.shape)} {where} failed on rank {self.rank} of {self.world_size}: another "
                f"rank stopped, or did not arrive within the process group's timeout ({reason})"
            ) from error
        self.traffic.add(kind, sent_bytes(kind, whole, self.world_size))


def sent_bytes(collective: str | None, whole: float, world_size: int) -> float:
    """Bytes one rank sends in ``collective`` over a ``whole``-byte tensor (the gathered or
    reduced one), with a bandwidth-optimal ring algorithm; 0 for a local step (None, "block").

    Example:
        >>> sent_bytes("all_gather", 1000, 2), sent_bytes("all_reduce", 1000, 2), sent_bytes("block", 1000, 2)
        (500.0, 1000.0, 0.0)
    """
    share = (world_size - 1) / world_size * whole
    shares = {
        "all_gather": share,
        "reduce_scatter": share,
        "all_reduce": 2 * share,
        "broadcast": share,
        "all_to_all": share / world_size,
    }  # fmt: skip  (all_to_all: R-1 of this rank's R pieces)
    return shares.get(collective, 0.0)


@dataclasses.dataclass(frozen=True)
class Routes:
    """Where a channel permutation sends one rank's block: ``send[s]`` lists the local channels
    rank s needs, in its order; ``receive[q]`` the local positions of what rank q sends.

    Example (6 channels shuffled in 2 groups, on rank 0 of 2: output 0, 1, 2 <- input 0, 3, 1):
        >>> Routes.of([0, 3, 1, 4, 2, 5], rank=0, world_size=2)
        Routes(send=((0, 1), (2,)), receive=((0, 2), (1,)))
    """

    send: tuple[tuple[int, ...], ...]
    receive: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, permutation: Sequence[int], rank: int, world_size: int) -> Routes:
        """The routes of ``permutation`` (output channel o reads input channel ``permutation[o]``) for ``rank``."""
        block = len(permutation) // world_size
        outputs = [range(s * block, (s + 1) * block) for s in range(world_size)]  # rank s's output channels
        source = lambda o: permutation[o] // block  # the rank holding output o's input channel
        first = rank * block
        send = tuple(tuple(permutation[o] - first for o in out if source(o) == rank) for out in outputs)
        receive = tuple(tuple(o - first for o in outputs[rank] if source(o) == q) for q in range(world_size))
        return cls(send, receive)


def balanced(permutation: Sequence[int], world_size: int) -> bool:
    """Whether ``permutation`` has every rank send every rank equally many channels, as gloo's all_to_all needs.

    Example:
        >>> balanced([0, 3, 1, 4, 2, 5], 2), balanced([0, 2, 1, 3], 2)
        (False, True)
    """
    if len(permutation) % world_size:
        return False
    counts = {len(channels) for rank in range(world_size) for channels in Routes.of(permutation, rank, world_size).send}
    return len(counts) == 1


def inverse(permutation: Sequence[int]) -> list[int]:
    result = [0] * len(permutation)
    for position, channel in enumerate(permutation):
        result[channel] = position
    return result


def _nbytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()


# kind: (forward, backward), each a Communicator method name or None for identity
TRANSITIONS: dict[str, tuple[str | None, str | None]] = {
    "gather": ("all_gather", "block"),
    "split": ("block", "all_gather"),
    "gather_to_mix": ("all_gather", "reduce_scatter"),
    "copy_to_mix": (None, "all_reduce"),
    "reduce_scatter": ("reduce_scatter", "all_gather"),
    "all_reduce": ("all_reduce", None),
    "shuffle": ("all_to_all", "all_to_all"),  # a channel permutation forward, its inverse backward
}


class Transition(nn.Module):
    """One edge of the model where a tensor changes placement (see the module doc for the kinds).

    Example (on a process group of one rank, where every collective is a copy):
        >>> import torch, torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> gather = Transition("gather", Communicator(), where="before fc")
        >>> gather(torch.ones(2, 3)).shape
        torch.Size([2, 3])
        >>> gather
        Transition(gather: all_gather forward, keep own block backward, before fc)
        >>> dist.destroy_process_group()
    """

    def __init__(self, kind: str, communicator: Communicator, where: str, permutation: Sequence[int] = ()):
        super().__init__()
        if kind not in TRANSITIONS:
            raise ValueError(f"unknown transition {kind!r}; one of {', '.join(TRANSITIONS)}")
        self.kind, self.communicator, self.where = kind, communicator, where
        if kind == "shuffle":  # the permutation forward, its inverse backward
            self._forward, self._backward = (self._route(order) for order in (permutation, inverse(permutation)))
        else:
            self._forward, self._backward = (self._bind(name) for name in TRANSITIONS[kind])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Conjugate.apply(x, self._forward, self._backward)

    def _bind(self, name: str | None):
        if name is None:
            return lambda x: x
        if name == "block":
            return self.communicator.block
        method = getattr(self.communicator, name)
        return lambda x: method(x, self.where)

    def _route(self, permutation: Sequence[int]):
        routes = Routes.of(permutation, self.communicator.rank, self.communicator.world_size)
        return lambda x: self.communicator.all_to_all(x, routes, self.where)

    def extra_repr(self) -> str:
        forward, backward = (_describe(name) for name in TRANSITIONS[self.kind])
        return f"{self.kind}: {forward} forward, {backward} backward, {self.where}"


def _describe(name: str | None) -> str:
    return {None: "identity", "block": "keep own block"}.get(name, name)


class _Conjugate(torch.autograd.Function):
    """``forward(x)`` with ``backward`` applied to the gradient."""

    @staticmethod
    def forward(ctx, x, forward, backward):
        ctx.backward_op = backward
        y = forward(x)
        return y.view_as(y) if y is x else y  # identity: a new tensor object, as autograd requires

    @staticmethod
    def backward(ctx, grad):
        return ctx.backward_op(grad.contiguous()), None, None
