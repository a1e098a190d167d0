"""Plan a group-parallel model: trace it, measure its activations, and decide every step.

:func:`plan` needs no process group: it says, for R ranks, how each layer is split and
where the model communicates, or raises a :class:`~groupconv.parallel.rules.ShardingError`
naming the layer it cannot split. :func:`~groupconv.parallel.shard` runs the same plan.

The model is traced with ``torch.fx`` (layers are leaves; the code between them, such as
a residual sum, becomes graph nodes), run once on the example input to learn each
activation's shape, and walked in order, carrying each activation's placement.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterable

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import _extract_tensor_metadata
from torch.nn import functional as F

from ..tables import text_table
from .collectives import TRANSITIONS, sent_bytes
from .rules import MIX, REPLICATED, SHARDED, Decision, ShardingError, Site, decide

# (placement an input has, placement its reader wants): the transition between them
_TRANSITION = {(SHARDED, REPLICATED): "gather", (SHARDED, MIX): "gather_to_mix", (REPLICATED, MIX): "copy_to_mix",
               (REPLICATED, SHARDED): "split"}  # fmt: skip
_ELEMENTWISE = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, operator.neg,
    torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh,
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish, F.sigmoid, F.tanh,
    "add", "add_", "sub", "mul", "mul_", "div", "neg", "relu", "relu_", "sigmoid", "tanh",
}  # fmt: skip
_FLATTEN = {torch.flatten, "flatten"}


@dataclasses.dataclass(frozen=True)
class Edge:
    """A transition of the activation ``source`` (a node name). ``backward``: a gradient flows
    back through it; ``sent``: bytes one rank sends per sample for it, forward and backward;
    ``shared``: the layer whose identical transition this one reuses (sending nothing more);
    ``permutation``: a shuffle's."""

    source: str
    kind: str
    backward: bool
    sent: float
    shared: str | None = None
    permutation: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.shared:
            return f"(shares {self.shared}'s)"
        forward, backward = TRANSITIONS[self.kind]
        local = {None: "-", "block": "-"}
        return f"{local.get(forward, forward)} / {local.get(backward, backward) if self.backward else '-'}"


@dataclasses.dataclass(frozen=True)
class Step:
    """One node of the traced model: what it is, how it runs, and what it communicates.

    ``before``: transitions of its inputs; ``after``: the one that completes its output;
    ``sent``: bytes one rank sends per sample for them, forward and backward.
    """

    node: str
    name: str
    what: str
    decision: Decision
    before: tuple[Edge, ...] = ()
    after: Edge | None = None
    weights: bool = False
    sent: float = 0.0

    @property
    def edges(self) -> list[Edge]:
        return [*self.before, *([self.after] if self.after else [])]


@dataclasses.dataclass
class Plan:
    """How a model runs on ``world_size`` ranks: a :class:`Step` per node of ``graph_module``.

    ``str(plan)`` is a table of the layers with weights and every step that communicates.
    """

    world_size: int
    graph_module: fx.GraphModule
    steps: dict[str, Step]

    def bytes_per_step(self, batch_size: int) -> int:
        """Bytes one rank sends in a training step (forward and backward) on ``batch_size`` samples."""
        return round(batch_size * sum(step.sent for step in self.steps.values()))

    def __str__(self) -> str:
        headers = ("layer", "module", "split", "reads", "writes", "communicates (forward / backward)")
        rows = [_row(step) for step in self.steps.values() if step.edges or step.weights]
        per_sample = sum(step.sent for step in self.steps.values())
        summary = f"{self.world_size} ranks; each sends {per_sample:,.0f} bytes per sample per training step"
        return f"{text_table(headers, rows)}\n\n{summary}"


def plan(model: nn.Module, example_input: torch.Tensor, world_size: int, replicate: Iterable[str] = ()) -> Plan:
    """How ``model`` would run split across ``world_size`` ranks (no process group needed).

    Args:
        model: the whole model, as one process would train it.
        example_input: a batch (one sample is enough) of the model's input, to trace it
            and measure its activations.
        world_size: the number of ranks R.
        replicate: names of layers to keep whole on every rank instead of splitting.

    Raises:
        ShardingError: a layer cannot be split (groups not divisible by R, a layer with
            weights of a kind it does not know, a layer called twice and split unlike, a
            model torch.fx cannot trace, an example input the model cannot take); the
            message names the layer and the fix.

    Example:
        >>> from groupconv.models import alexnet
        >>> steps = plan(alexnet(groups=2), torch.zeros(1, 1, 28, 28), world_size=2).steps
        >>> steps["features_conv2"].decision.how, [edge.kind for edge in steps["features_conv3"].before]
        ('grouped', ['gather_to_mix'])
    """
    replicate = _check_names(model, replicate)
    graph_module = _trace(model)
    _measure(graph_module, model, example_input)
    return Plan(world_size, graph_module, _walk(graph_module, world_size, replicate))


def _walk(graph_module: fx.GraphModule, world_size: int, replicate: set[str]) -> dict[str, Step]:
    """Decide each node in order, carrying each activation's placement and whether it needs a gradient."""
    placements: dict[fx.Node, str] = {}
    needs_grad: dict[fx.Node, bool] = {}
    made: dict[tuple[str, str], fx.Node] = {}  # (activation, transition): the node it was made for
    splits: dict[str, str] = {}  # layer: how its first call splits it
    steps = {}
    for node in graph_module.graph.nodes:
        inputs = _tensor_inputs(node)
        layer = graph_module.get_submodule(node.target) if node.op == "call_module" else None
        gathered = bool(inputs) and (inputs[0].name, "gather_to_mix") in made
        decision = _decide(node, layer, inputs, placements, world_size, replicate, gathered)
        _check_split_alike(node, decision, splits)
        before = tuple(_edge(arg, _TRANSITION[placements[arg], decision.reads], needs_grad[arg], world_size)
                       for arg in inputs if (placements[arg], decision.reads) in _TRANSITION)  # fmt: skip
        before = tuple(_share(edge, made, node) for edge in before)
        weights = list(layer.parameters()) if layer is not None else []
        needs_grad[node] = (
            node.op == "get_attr" or any(p.requires_grad for p in weights) or any(needs_grad[arg] for arg in inputs)
        )
        after = (
            _edge(node, decision.after, needs_grad[node], world_size, decision.permutation) if decision.after else None
        )
        placements[node] = decision.writes
        sent = sum(edge.sent for edge in (*before, *([after] if after else [])))
        steps[node.name] = Step(node.name, _name(node), _what(layer), decision, before, after, bool(weights), sent)
    return steps


def _decide(node: fx.Node, layer: nn.Module | None, inputs: list[fx.Node], placements, world_size: int,
            replicate: set[str], gathered: bool) -> Decision:  # fmt: skip
    reads = SHARDED if any(placements[arg] == SHARDED for arg in inputs) else REPLICATED
    if layer is not None:
        channels = _shape(inputs[0])[1] if _dims(inputs) >= 2 else 0
        site = Site(node.target, reads, _dims(inputs), _sizes(node, inputs), channels, _feeds_output(node),
                    node.target in replicate, gathered)  # fmt: skip
        return decide(layer, site, world_size)
    if node.op in ("call_function", "call_method") and reads == SHARDED:
        return _function(node, inputs)
    return Decision("replicated", REPLICATED, REPLICATED)  # placeholders, get_attr, output, whole inputs


def _function(node: fx.Node, inputs: list[fx.Node]) -> Decision:
    """A function of sharded activations: elementwise and flatten(x, 1) keep them sharded; any
    other reads them gathered (always right; costs communication)."""
    if node.target in _FLATTEN and _flattens_channels(node):
        return Decision("per channel", SHARDED, SHARDED)
    if node.target in _ELEMENTWISE and all(_splittable(arg, inputs[0]) for arg in inputs):
        return Decision("per channel", SHARDED, SHARDED)
    return Decision("replicated", REPLICATED, REPLICATED)


def _splittable(arg: fx.Node, like: fx.Node) -> bool:
    """Whether ``arg`` can be cut into channel blocks like ``like`` (same dims, same channel count)."""
    shape, reference = _shape(arg), _shape(like)
    return len(shape) == len(reference) >= 2 and shape[1] == reference[1]


def _flattens_channels(node: fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start == 1 and end in (-1, len(_shape(node.args[0])) - 1)


def _share(edge: Edge, made: dict[tuple[str, str], fx.Node], reader: fx.Node) -> Edge:
    """``edge``, or, where an earlier reader made the same transition, a free reuse of it."""
    first = made.setdefault((edge.source, edge.kind), reader)  # by node: a layer called twice is two readers
    return edge if first is reader else dataclasses.replace(edge, sent=0.0, shared=_name(first))


def _check_split_alike(node: fx.Node, decision: Decision, splits: dict[str, str]) -> None:
    """A layer called more than once keeps one set of weights on each rank, so every call must split it alike."""
    if node.op != "call_module":
        return
    first = splits.setdefault(node.target, decision.how)
    if first != decision.how:
        raise ShardingError(
            f"cannot split {node.target}: it is called more than once, and one call would split it {first} and "
            f"another {decision.how}, but a layer's weights are split one way. Give each call a layer of its own",
            f", or pass replicate=[{node.target!r}] to keep a whole copy on every rank",
        )


def _edge(source: fx.Node, kind: str, backward: bool, world_size: int, permutation=()) -> Edge:
    meta = source.meta["tensor_meta"]
    whole = math.prod(meta.shape[1:]) * meta.dtype.itemsize  # bytes per sample of the whole activation
    forward_op, backward_op = TRANSITIONS[kind]
    sent = sent_bytes(forward_op, whole, world_size) + (sent_bytes(backward_op, whole, world_size) if backward else 0)
    return Edge(source.name, kind, backward, sent, permutation=tuple(permutation))


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _LayerTracer().trace(model))
    except Exception as error:  # fx raises TraceError, TypeError, ... from the model's own code
        reason = " ".join(str(error).split())
        raise ShardingError(
            f"cannot split {type(model).__name__}: torch.fx could not trace it ({type(error).__name__}: {reason}). "
            "groupconv.parallel follows the model's dataflow, so its forward must not branch on tensor values"
        ) from error


class _LayerTracer(fx.Tracer):
    """Keeps every convolution (groupconv's and torch's) and ChannelShuffle whole, as torch.nn layers are."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, (nn.modules.conv._ConvNd, nn.ChannelShuffle)) or super().is_leaf_module(module, name)


def _measure(graph_module: fx.GraphModule, model: nn.Module, example_input: torch.Tensor) -> None:
    """Record every node's output shape, from one forward pass in eval mode (no statistics updated)."""
    modes = {module: module.training for module in model.modules()}
    try:
        with torch.no_grad():
            _ShapeRecorder(graph_module.eval()).run(example_input)
    except _NodeFailed as failure:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        reason = " ".join(str(failure.error).split())
        raise ShardingError(
            f"cannot split {type(model).__name__}: it fails on the example input of shape {shape}, at "
            f"{_name(failure.node)} ({type(failure.error).__name__}: {reason}). Pass an example_input the model "
            "takes: a batch of its input (one sample is enough)"
        ) from failure.error
    finally:
        for module, training in modes.items():
            module.train(training)
        graph_module.train(model.training)


class _NodeFailed(Exception):
    """``node`` raised ``error`` while the example input ran through the traced model."""

    def __init__(self, node: fx.Node, error: Exception):
        super().__init__(node.name)
        self.node, self.error = node, error


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced model, recording each node's output in ``meta["tensor_meta"]`` as torch.fx's ShapeProp
    does; a failing node raises :class:`_NodeFailed` with its own error, where ShapeProp prints a traceback."""

    def run_node(self, node: fx.Node):
        try:
            result = super().run_node(node)
        except Exception as error:
            raise _NodeFailed(node, error) from error
        tensors = []
        meta = map_aggregate(result, lambda value: _tensor_meta(value, tensors))
        if tensors:  # as ShapeProp: only nodes that give tensors have tensor_meta
            node.meta["tensor_meta"] = meta
        return result


def _tensor_meta(value, tensors: list[torch.Tensor]):
    """``value``'s metadata where it is a tensor (noted in ``tensors``), else ``value``."""
    if not isinstance(value, torch.Tensor):
        return value
    tensors.append(value)
    return _extract_tensor_metadata(value)


def _check_names(model: nn.Module, names: Iterable[str]) -> set[str]:
    names = set([names] if isinstance(names, str) else names)
    known = dict(model.named_modules())
    unknown = sorted(names - known.keys())
    if unknown:
        raise ShardingError(f"replicate names no layer of the model: {', '.join(unknown)}; layers: {', '.join(known)}")
    return names


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    inputs = []
    fx.node.map_arg((node.args, node.kwargs), lambda arg: inputs.append(arg) if "tensor_meta" in arg.meta else None)
    return list(dict.fromkeys(inputs))


def _feeds_output(node: fx.Node) -> bool:
    return all(user.op == "output" for user in node.users)


def _shape(node: fx.Node) -> torch.Size:
    return node.meta["tensor_meta"].shape


def _dims(inputs: list[fx.Node]) -> int:
    return len(_shape(inputs[0])) if inputs else 0


def _sizes(node: fx.Node, inputs: list[fx.Node]) -> tuple[int, int]:
    """Elements per sample of the first input and of the output."""
    per_sample = lambda shape: math.prod(shape[1:])
    output = node.meta.get("tensor_meta")
    return (per_sample(_shape(inputs[0])) if inputs else 0, per_sample(output.shape) if output else 0)


def _name(node: fx.Node) -> str:
    if node.op in ("call_module", "get_attr"):
        return node.target
    return node.op if node.op in ("placeholder", "output") else getattr(node.target, "__name__", str(node.target))


def _what(layer: nn.Module | None) -> str:
    if layer is None:
        return ""
    if isinstance(layer, nn.modules.conv._ConvNd):
        groups = f" g={layer.groups}" if layer.groups > 1 else ""
        return f"{type(layer).__name__} {layer.in_channels}->{layer.out_channels}{groups}"
    if isinstance(layer, nn.Linear):
        return f"Linear {layer.in_features}->{layer.out_features}"
    return type(layer).__name__


def _row(step: Step) -> tuple[str, ...]:
    communicates = ", ".join(text for text in map(str, step.edges) if text != "- / -") or "-"
    reads = step.decision.reads if step.decision.reads != MIX else "whole"
    return (step.name, step.what, step.decision.how, reads, step.decision.writes, communicates)
