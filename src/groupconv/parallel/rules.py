"""How each kind of layer is split across R ranks, and the layer each rank keeps.

A layer's :class:`Decision` says which placement it reads and writes (see
:mod:`~groupconv.parallel.collectives`) and how its weights are split:

    grouped      a conv whose groups divide among the ranks: rank r keeps groups
                 r*G/R ... (r+1)*G/R - 1, which read input block r and write output block r
    by outputs   a layer that mixes channels (dense conv, Linear) reading the whole input:
                 rank r keeps output channels block r (AlexNet's conv3 and fc layers)
    by inputs    a layer that mixes channels reading input block r: rank r keeps the
                 weights of its input channels and writes a partial sum, which a
                 reduce_scatter or all_reduce completes; rank 0 keeps the bias
    per channel  a layer without weights that treats channels alike (ReLU, pooling, flatten)
    sliced       BatchNorm on a sharded input: each rank keeps its channels' statistics
    shuffled     ChannelShuffle on a sharded input: an all_to_all sends each channel to the
                 rank whose block it lands in (where every rank sends every rank equally many)
    dropout      Dropout on a sharded input: draws the whole mask, keeps its block, so the
                 random stream matches the unsplit model's
    replicated   every rank keeps and runs the whole layer on the whole input

:func:`local_layer` builds rank r's layer (the same class, at its local size) and
:class:`Placement` records where each of its tensors sits in the whole model.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import GroupConvError
from ..nn import TWINS, module_of, spec_of
from .collectives import balanced

REPLICATED, SHARDED, MIX = "replicated", "sharded", "mix"  # MIX: replicated, read by a layer split by outputs

ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
)  # fmt: skip
SPATIAL = (  # per channel on a batch (N, C, *spatial); on (N, C) alone they would read C as a spatial dim
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
)  # fmt: skip


class ShardingError(GroupConvError):
    """A model that cannot be split as asked; the message names the layer and the fix. ``api_fix``, a fix only
    the Python API offers (``replicate=[...]``), ends the message but not ``cli_message``, what the command
    line prints."""

    def __init__(self, message: str, api_fix: str = ""):
        super().__init__(message + api_fix)
        self.cli_message = message


@dataclasses.dataclass(frozen=True)
class Decision:
    """How one layer runs: the placement it reads, how it is split, and the placement it writes.

    ``after`` is the transition that completes the output: "reduce_scatter" or "all_reduce"
    for a layer split by inputs, "shuffle" (by ``permutation``) for a channel shuffle.
    """

    how: str
    reads: str
    writes: str
    after: str | None = None
    permutation: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one tensor of a local layer sits in the whole one.

    ``dim``: split into R blocks along it (rank r holds block r); ``owner``: only that
    rank holds it; neither: every rank holds all of it. ``shape`` is the whole tensor's;
    ``parameter``: a parameter, not a buffer.
    """

    shape: torch.Size
    dtype: torch.dtype
    dim: int | None = None
    owner: int | None = None
    parameter: bool = False

    @property
    def whole(self) -> bool:
        """Whether every rank holds all of it."""
        return self.dim is None and self.owner is None

    def local(self, whole: torch.Tensor, rank: int, world_size: int) -> torch.Tensor | None:
        """Rank ``rank``'s part of ``whole`` (None where it holds none)."""
        if self.dim is not None:
            return whole.chunk(world_size, self.dim)[rank].clone()
        return whole.clone() if self.owner in (None, rank) else None


@dataclasses.dataclass(frozen=True)
class Site:
    """What a layer's decision depends on besides the layer: its name; its input's placement,
    number of dims and channels; its input's and output's elements per sample (``sizes``);
    whether only the model's output reads it; whether the caller asked to replicate it;
    whether its input is gathered for another layer already (so gathering is free)."""

    name: str
    reads: str
    dims: int
    sizes: tuple[int, int]
    channels: int = 0
    feeds_output: bool = False
    replicate: bool = False
    gathered: bool = False


def decide(layer: nn.Module, site: Site, world_size: int) -> Decision:
    """The decision for ``layer`` at ``site``, or a :class:`ShardingError` naming it."""
    if site.replicate:
        return Decision("replicated", REPLICATED, REPLICATED)
    if isinstance(layer, _ConvNd) and layer.groups > 1:
        return _grouped(site.name, layer, world_size)
    if isinstance(layer, _ConvNd) or (isinstance(layer, nn.Linear) and site.dims == 2):
        return _mixing(_channels(layer)[1], site, world_size)
    if isinstance(layer, ELEMENTWISE) or (isinstance(layer, SPATIAL) and site.dims >= 3) or _flattens_channels(layer):
        return Decision("per channel", site.reads, site.reads)
    if isinstance(layer, _BatchNorm):
        return Decision("sliced" if site.reads == SHARDED else "replicated", site.reads, site.reads)
    if type(layer) is nn.Dropout:
        return Decision("dropout" if site.reads == SHARDED else "per channel", site.reads, site.reads)
    if isinstance(layer, nn.ChannelShuffle) and site.reads == SHARDED:
        permutation = F.channel_shuffle(torch.arange(site.channels).view(1, -1, 1), layer.groups).flatten().tolist()
        if balanced(permutation, world_size):
            return Decision("shuffled", SHARDED, SHARDED, after="shuffle", permutation=tuple(permutation))
    if any(True for _ in layer.parameters()):
        raise ShardingError(
            f"cannot split {site.name} ({type(layer).__name__}) across {world_size} ranks: groupconv.parallel does "
            "not know which of its weights belong to which channels",
            f". Pass replicate=[{site.name!r}] to keep a whole copy on every rank (it then reads the gathered "
            "activation), or use layers it splits (convolutions, Linear on (N, features), BatchNorm)",
        )
    return Decision("replicated", REPLICATED, REPLICATED)


def _grouped(name: str, conv: _ConvNd, world_size: int) -> Decision:
    if conv.groups % world_size:
        fits = [r for r in range(1, conv.groups + 1) if conv.groups % r == 0]
        raise ShardingError(
            f"cannot split {name} ({_describe(conv)}) across {world_size} ranks: each rank keeps whole groups, "
            f"and {conv.groups} groups do not divide among {world_size}. Use a multiple of {world_size} groups, or "
            f"{' or '.join(map(str, fits))} ranks",
            f", or pass replicate=[{name!r}] to keep a whole copy on every rank",
        )
    return Decision("grouped", SHARDED, SHARDED)


def _mixing(out_channels: int, site: Site, world_size: int) -> Decision:
    """Split a channel-mixing layer by outputs or by inputs, whichever communicates less.

    By outputs, it gathers its input (forward) and reduce-scatters the input's gradient
    (backward); by inputs, it reduce-scatters its output and all-gathers that gradient.
    """
    splits_outputs = out_channels % world_size == 0
    if site.reads == REPLICATED:  # the input is whole already: splitting by outputs is free
        return Decision("by outputs", MIX, SHARDED) if splits_outputs else Decision("replicated", *[REPLICATED] * 2)
    input_size, output_size = site.sizes
    gather_input = 2 * input_size + (output_size if site.feeds_output else 0)  # + the gather at the model's output
    if splits_outputs and (site.gathered or gather_input <= 2 * output_size):
        return Decision("by outputs", MIX, SHARDED)
    if splits_outputs and not site.feeds_output:
        return Decision("by inputs", SHARDED, SHARDED, after="reduce_scatter")
    return Decision("by inputs", SHARDED, REPLICATED, after="all_reduce")


def local_layer(
    layer: nn.Module, how: str, state: dict[str, torch.Tensor], rank: int, world_size: int
) -> tuple[nn.Module, dict[str, Placement]]:
    """Rank ``rank``'s layer for ``how``, holding its part of ``state`` (``layer``'s whole
    state), and the placement of each tensor of ``state``."""
    placements = _placements(layer, how, world_size)
    parts = {key: placements[key].local(tensor, rank, world_size) for key, tensor in state.items()}
    local = _build(layer, how, rank, world_size)
    local.load_state_dict({key: part for key, part in parts.items() if part is not None}, assign=True)
    return local.train(layer.training), placements


def _placements(layer: nn.Module, how: str, world_size: int) -> dict[str, Placement]:
    dims = _split_dims(layer, how)
    parameters = dict(layer.named_parameters())
    placements = {}
    for key, tensor in layer.state_dict().items():
        dim = dims.get(key) if tensor.dim() else None  # num_batches_tracked is one count for all channels
        owner = 0 if (how, key) == ("by inputs", "bias") else None
        placements[key] = Placement(tensor.shape, tensor.dtype, dim, owner, key in parameters)
    return placements


def _split_dims(layer: nn.Module, how: str) -> dict[str, int]:
    """The dim each tensor is split along: a conv's weight is (O, C/G, *K), a transposed
    conv's (C, O/G, *K), a Linear's (O, C); biases and BatchNorm's tensors are (O,)."""
    transposed = getattr(layer, "transposed", False)
    output_dim, input_dim = (1, 0) if transposed else (0, 1)
    if how == "grouped":
        return {"weight": 0, "bias": 0}  # dim 0 counts groups in both: outputs (conv) or inputs (transposed)
    if how == "by outputs":
        return {"weight": output_dim, "bias": 0}
    if how == "by inputs":
        return {"weight": input_dim}
    if how == "sliced":
        return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), 0)
    return {}


def _build(layer: nn.Module, how: str, rank: int, world_size: int) -> nn.Module:
    """A layer of ``layer``'s class at rank ``rank``'s size (on the meta device, for its state to be assigned)."""
    if how in ("per channel", "replicated"):
        return copy.deepcopy(layer)
    if how == "shuffled":
        return nn.Identity()  # the shuffle is the all_to_all after it
    if how == "dropout":
        return ShardedDropout(layer.p, rank, world_size)
    if how == "sliced":
        return type(layer)(layer.num_features // world_size, layer.eps, layer.momentum, layer.affine,
                           layer.track_running_stats, device="meta")  # fmt: skip
    in_channels, out_channels = _channels(layer)
    bias = layer.bias is not None
    if how == "grouped":
        return _resized(layer, in_channels // world_size, out_channels // world_size, layer.groups // world_size, bias)
    if how == "by outputs":
        return _resized(layer, in_channels, out_channels // world_size, 1, bias)
    return _resized(layer, in_channels // world_size, out_channels, 1, bias and rank == 0)  # by inputs


def _resized(layer: nn.Module, in_channels: int, out_channels: int, groups: int, bias: bool) -> nn.Module:
    """A layer of ``layer``'s class and hyper-parameters with other sizes, on the meta device."""
    if isinstance(layer, nn.Linear):
        return type(layer)(in_channels, out_channels, bias, device="meta")
    spec = spec_of(layer)
    resized = dataclasses.replace(spec, in_channels=in_channels, out_channels=out_channels, groups=groups, bias=bias)
    return module_of(resized, groupconv=isinstance(layer, tuple(TWINS.values())), device="meta")


def _flattens_channels(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) == (1, -1)


def _channels(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


def _describe(conv: _ConvNd) -> str:
    return f"{type(conv).__name__} {conv.in_channels}->{conv.out_channels}, groups={conv.groups}"


class ShardedDropout(nn.Module):
    """Dropout on rank ``rank``'s channel block: draws the whole tensor's mask and keeps its
    block, so every rank, and the unsplit model, consume the random stream alike.

    On the CPU the masks equal ``torch.nn.Dropout``'s bit for bit; on a GPU, PyTorch's fused
    dropout draws differently, so masks are equally random but not the unsplit model's.
    """

    def __init__(self, p: float, rank: int, world_size: int):
        super().__init__()
        self.p, self.rank, self.world_size = p, rank, world_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        whole = list(x.shape)
        whole[1] *= self.world_size
        keep = torch.empty(whole, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)  # as ATen's dropout draws
        return x * keep.chunk(self.world_size, 1)[self.rank].div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, rank={self.rank} of {self.world_size}"
