"""One grouped layer explained: its grouping, shapes and costs, and every group count it allows.

:func:`explain` turns a :class:`~groupconv.ConvSpec` (and optionally an input shape)
into an :class:`Explanation`, whose ``str()`` is the report ``groupconv explain``
prints and whose :meth:`Explanation.to_dict` is the JSON it prints with ``--json``
(schema: ``docs/cli-json.md``). Framework-free, like ``spec.py``.

Legend as in ``spec.py``: C input channels, O output channels, G groups,
Cg = C / G and Og = O / G, K kernel size.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Iterator, Sequence
from typing import ClassVar

from ..errors import GroupConvError
from ..spec import ConvSpec, Shape, check_int, groups_error, valid_groups
from ..tables import text_table
from . import formats as fmt

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
_LISTED_GROUPS = 8  # the report lists at most this many groups' slices, then elides the middle
JSON_GROUPS = 1 << 16  # the JSON lists every group's slice, ~100 bytes each: up to ~6 MB


@dataclasses.dataclass(frozen=True)
class GroupSlice:
    """One filter group: the channels ``[start, stop)`` it reads and writes, and its part of the weight.

    ``weight_rows`` index the weight's first dim: output channels for a convolution,
    input channels for a transposed one.
    """

    group: int
    input_channels: tuple[int, int]
    output_channels: tuple[int, int]
    weight_rows: tuple[int, int]
    weight_shape: tuple[int, ...]


class GroupSlices(Sequence[GroupSlice]):
    """Every group's :class:`GroupSlice` in order, each built when read: a layer may have 2**40 groups,
    and the report shows four of them.

    Example:
        >>> slices = GroupSlices(ConvSpec(10**6, 10**6, 1, groups=10**6))
        >>> len(slices), slices[-1].input_channels
        (1000000, (999999, 1000000))
    """

    def __init__(self, spec: ConvSpec) -> None:
        self._spec = spec

    def __len__(self) -> int:
        return self._spec.groups

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(_group_slice(self._spec, group) for group in range(len(self))[index])
        return _group_slice(self._spec, range(len(self))[index])  # range: negative and out-of-range as a tuple's

    def __iter__(self) -> Iterator[GroupSlice]:
        return (_group_slice(self._spec, group) for group in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupSlices) and self._spec == other._spec

    def __hash__(self) -> int:
        return hash(self._spec)

    def __repr__(self) -> str:
        return f"GroupSlices({self._spec!r})"


@dataclasses.dataclass(frozen=True)
class GroupsOption:
    """The layer at one valid group count, and what it saves against a baseline group count
    (``groups=1`` in an :class:`Explanation`, the layer's own in a summary).

    ``macs`` and ``macs_saved`` are ``None`` without an input shape.
    """

    groups: int
    weight_shape: tuple[int, ...]
    params: int
    macs: int | None
    params_saved: int
    macs_saved: int | None


@dataclasses.dataclass(frozen=True)
class Cost:
    """One forward pass on one input: counts, and bytes if each tensor crosses memory once.

    ``weight_bytes`` includes the bias; ``intensity`` is FLOPs per byte of
    input + weight + output.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    flops: int
    dtype: str
    input_bytes: int
    weight_bytes: int
    output_bytes: int
    total_bytes: int
    intensity: float


@dataclasses.dataclass(frozen=True)
class Explanation(fmt.JsonReport):
    """What :func:`explain` finds. ``str()`` is the human report, :meth:`to_dict` the JSON."""

    schema: ClassVar[str] = "groupconv.explain/1"

    spec: ConvSpec
    layer: str
    group_slices: GroupSlices
    weight_shape: tuple[int, ...]
    params: int
    params_without_bias: int
    max_groups: int
    valid_groups: tuple[int, ...]
    options: tuple[GroupsOption, ...]
    cost: Cost | None

    def __str__(self) -> str:
        return _report(self)

    def to_dict(self) -> dict:
        if self.spec.groups > JSON_GROUPS:
            raise GroupConvError(
                f"groups={self.spec.groups} are too many to list one by one in JSON (at most {JSON_GROUPS}); "
                "the text report elides them"
            )
        data = super().to_dict()
        data["group_slices"] = tuple(dataclasses.asdict(piece) for piece in self.group_slices)  # as schema /1
        return data


def explain(spec: ConvSpec, input_shape: Shape | None = None, dtype: str = "float32") -> Explanation:
    """Explain ``spec``: which channels each group connects, its weight, parameters and, with an
    input shape, its output shape, MACs, FLOPs, bytes (of ``dtype``) and arithmetic intensity;
    and the same layer at every valid group count.

    Example (*A Deeper Understanding of Grouped Convolution*'s: 4 -> 8 channels, 3x3, two groups):
        >>> report = explain(ConvSpec(4, 8, 3, groups=2, bias=False), (1, 4, 32, 32))
        >>> report.weight_shape, report.params, report.valid_groups
        ((8, 2, 3, 3), 144, (1, 2, 4))
        >>> [(s.input_channels, s.output_channels) for s in report.group_slices]
        [((0, 2), (0, 4)), ((2, 4), (4, 8))]
        >>> [(o.groups, o.params) for o in report.options]
        [(1, 288), (2, 144), (4, 72)]
        >>> report.cost.macs, report.cost.output_shape
        (129600, (1, 8, 30, 30))
    """
    check_spec(spec)
    if dtype not in DTYPE_BYTES:
        raise GroupConvError(f"dtype={dtype!r} is not supported; use one of {', '.join(map(repr, DTYPE_BYTES))}")
    bias = spec.out_channels if spec.bias else 0
    valid = tuple(valid_groups(spec.in_channels, spec.out_channels))
    return Explanation(
        spec=spec,
        layer=describe(spec),
        group_slices=GroupSlices(spec),
        weight_shape=spec.weight_shape,
        params=spec.num_params,
        params_without_bias=spec.num_params - bias,
        max_groups=valid[-1],
        valid_groups=valid,
        options=group_options(spec, [] if input_shape is None else [input_shape]),
        cost=None if input_shape is None else _cost(spec, input_shape, dtype),
    )


def group_options(spec: ConvSpec, input_shapes: Sequence[Shape] = (), against: int = 1) -> tuple[GroupsOption, ...]:
    """``spec`` at every valid group count, with savings against ``groups=against``; MACs summed
    over ``input_shapes`` (one shape per call of the layer).

    Example:
        >>> [(o.groups, o.weight_shape, o.params_saved) for o in group_options(ConvSpec(3, 9, 3, bias=False))]
        [(1, (9, 3, 3, 3), 0), (3, (9, 1, 3, 3), 162)]
    """
    count = lambda layer: sum(layer.macs(shape) for shape in input_shapes) if input_shapes else None
    baseline = dataclasses.replace(spec, groups=against)
    baseline_macs = count(baseline)
    options = []
    for groups in valid_groups(spec.in_channels, spec.out_channels):
        layer = dataclasses.replace(spec, groups=groups)
        macs = count(layer)
        options.append(
            GroupsOption(
                groups=groups,
                weight_shape=layer.weight_shape,
                params=layer.num_params,
                macs=macs,
                params_saved=baseline.num_params - layer.num_params,
                macs_saved=None if macs is None else baseline_macs - macs,
            )
        )
    return tuple(options)


def check_spec(spec: object) -> None:
    """A TypeError naming ``spec`` unless it is a :class:`~groupconv.ConvSpec`: a tuple of channels is not one.

    Example:
        >>> check_spec((4, 8, 3))
        Traceback (most recent call last):
        ...
        TypeError: spec must be a groupconv.ConvSpec, e.g. ConvSpec(4, 8, 3); got tuple (4, 8, 3)
    """
    if not isinstance(spec, ConvSpec):
        raise TypeError(
            f"spec must be a groupconv.ConvSpec, e.g. ConvSpec(4, 8, 3); got {type(spec).__name__} {reprlib.repr(spec)}"
        )


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """Raise a :class:`~groupconv.GroupConvError` saying why ``groups`` is invalid and which
    valid counts are nearest; do nothing when it is valid.

    Example:
        >>> check_groups(4, 8, 3)
        Traceback (most recent call last):
        ...
        groupconv.errors.GroupConvError: groups=3 is invalid: in_channels=4 and out_channels=8 are not \
divisible by 3; nearest valid: 2 or 4 (valid groups: 1, 2, 4; the largest is gcd(4, 8) = 4)
    """
    in_channels = check_int("in_channels", in_channels, minimum=1)
    out_channels = check_int("out_channels", out_channels, minimum=1)
    groups = check_int("groups", groups, minimum=1)
    if in_channels % groups or out_channels % groups:
        raise groups_error(in_channels, out_channels, groups)


def describe(spec: ConvSpec) -> str:
    """The layer as a PyTorch constructor call, with only its non-default arguments.

    Example:
        >>> describe(ConvSpec(4, 8, 3, groups=2, bias=False))
        'Conv2d(4, 8, kernel_size=3, groups=2, bias=False)'
        >>> describe(ConvSpec(6, 4, (3, 1), stride=2, transposed=True, dims=2))
        'ConvTranspose2d(6, 4, kernel_size=(3, 1), stride=2)'
    """
    name = f"{'ConvTranspose' if spec.transposed else 'Conv'}{spec.dims}d"
    arguments = [str(spec.in_channels), str(spec.out_channels), f"kernel_size={_compact(spec.kernel_size)}"]
    defaults = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1}
    for field, default in defaults.items():
        value = _compact(getattr(spec, field))
        if value != default:
            arguments.append(f"{field}={value!r}")
    if not spec.bias:
        arguments.append("bias=False")
    if spec.padding_mode != "zeros":
        arguments.append(f"padding_mode={spec.padding_mode!r}")
    return f"{name}({', '.join(arguments)})"


def _compact(value):
    """A tuple of equal entries as the one entry, as a user would write it."""
    return value[0] if isinstance(value, tuple) and len(set(value)) == 1 else value


def _group_slice(spec: ConvSpec, group: int) -> GroupSlice:
    cg, og = spec.in_per_group, spec.out_per_group
    inputs, outputs = (group * cg, (group + 1) * cg), (group * og, (group + 1) * og)
    rows = inputs if spec.transposed else outputs  # the weight's first dim: C when transposed, else O
    return GroupSlice(group, inputs, outputs, rows, (rows[1] - rows[0], *spec.weight_shape[1:]))


def _cost(spec: ConvSpec, input_shape: Shape, dtype: str) -> Cost:
    output_shape = spec.output_shape(input_shape)
    itemsize = DTYPE_BYTES[dtype]
    numel = lambda shape: math.prod(shape) * itemsize
    input_bytes, output_bytes, weight_bytes = numel(input_shape), numel(output_shape), spec.num_params * itemsize
    total = input_bytes + weight_bytes + output_bytes
    flops = spec.flops(input_shape)
    return Cost(
        input_shape=tuple(input_shape),
        output_shape=output_shape,
        macs=spec.macs(input_shape),
        flops=flops,
        dtype=dtype,
        input_bytes=input_bytes,
        weight_bytes=weight_bytes,
        output_bytes=output_bytes,
        total_bytes=total,
        intensity=flops / total,
    )


# The human report ------------------------------------------------------------------------------------------------


def _report(report: Explanation) -> str:
    on_input = "" if report.cost is None else f" on input {fmt.shape(report.cost.input_shape)}"
    sections = [
        report.layer + on_input,
        _grouping_section(report),
        _facts_section(report),
        _options_section(report),
    ]
    return "\n\n".join(sections)


def _grouping_section(report: Explanation) -> str:
    spec = report.spec
    if spec.groups == 1:
        heading = f"1 group: every output channel reads all {spec.in_channels} input channels"
    else:
        heading = (
            f"{spec.groups} groups, each reading {spec.in_per_group} of the {spec.in_channels} input channels "
            f"and writing {spec.out_per_group} of the {spec.out_channels} output channels"
        )
    slices = report.group_slices
    elided = len(slices) > _LISTED_GROUPS
    rows = [_slice_row(piece) for piece in ([*slices[:3], slices[-1]] if elided else slices)]
    if elided:
        rows.insert(3, ["..."] * 4)
    table = _table(["group", "reads input", "writes output", "its weight"], rows, "><<<")
    return f"{heading}:\n{table}"


def _slice_row(piece: GroupSlice) -> list:
    start, stop = piece.weight_rows
    weight = f"weight[{start}:{stop}], {list(piece.weight_shape)}"
    return [piece.group, fmt.span(*piece.input_channels), fmt.span(*piece.output_channels), weight]


def _facts_section(report: Explanation) -> str:
    spec, cost = report.spec, report.cost
    bias = report.params - report.params_without_bias
    params = (
        f"{report.params:,} = {report.params_without_bias:,} weights + {bias:,} bias "
        f"({report.params_without_bias:,} without bias)"
        if bias
        else f"{report.params:,} (no bias)"
    )
    facts = [("weight", f"{list(report.weight_shape)}: {_weight_words(spec)}"), ("parameters", params)]
    if cost is None:
        facts.append(("costs", "give an input shape (--input N,C,H,W) for output shape, MACs, FLOPs and bytes"))
    else:
        facts += _cost_facts(cost, spec)
    width = max(len(name) for name, _ in facts)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in facts)


def _weight_words(spec: ConvSpec) -> str:
    kernel = fmt.kernel(spec.kernel_size)
    if spec.transposed:
        kernels = fmt.plural(spec.out_per_group, f"{kernel} kernel")
        return (
            f"each of the {spec.in_channels} input channels has {kernels}, one per "
            f"output channel of its group ({spec.out_channels} outputs / {fmt.plural(spec.groups, 'group')})"
        )
    return (
        f"{fmt.plural(spec.out_channels, 'filter')} of {kernel}, each {fmt.plural(spec.in_per_group, 'channel')} deep "
        f"({spec.in_channels} inputs / {fmt.plural(spec.groups, 'group')})"
    )


def _cost_facts(cost: Cost, spec: ConvSpec) -> list[tuple[str, str]]:
    bias_adds = cost.flops - 2 * cost.macs
    flops = f"{cost.flops:,} = 2 x {cost.macs:,} MACs" + (f" + {bias_adds:,} bias adds" if bias_adds else "")
    weight = "weight and bias" if spec.bias else "weight"
    return [
        ("output", fmt.shape(cost.output_shape)),
        ("MACs", f"{cost.macs:,}"),
        ("FLOPs", flops),
        (
            "bytes",
            f"{cost.total_bytes:,} in {cost.dtype}: input {cost.input_bytes:,}, {weight} {cost.weight_bytes:,}, "
            f"output {cost.output_bytes:,}",
        ),
        ("intensity", f"{cost.intensity:.2f} FLOPs per byte, if each tensor crosses memory once"),
    ]


def _options_section(report: Explanation) -> str:
    spec, dense = report.spec, report.options[0]
    heading = (
        f"Valid groups for {spec.in_channels} -> {spec.out_channels} channels: "
        f"{', '.join(map(str, report.valid_groups))}; the largest is "
        f"gcd({spec.in_channels}, {spec.out_channels}) = {report.max_groups}"
    )
    saved = lambda option, part, whole: "-" if option.groups == 1 else fmt.percent(part, whole)
    weights = [("weights", ">", lambda o: f"{math.prod(o.weight_shape):,}")] if spec.bias else []
    macs = [
        ("MACs", ">", lambda o: f"{o.macs:,}"),
        ("saved", ">", lambda o: saved(o, o.macs_saved, dense.macs)),
    ]
    columns = [  # (header, alignment, cell)
        ("groups", ">", lambda o: o.groups),
        ("per group", "<", lambda o: f"{spec.in_channels // o.groups} -> {spec.out_channels // o.groups}"),
        ("weight shape", "<", lambda o: list(o.weight_shape)),
        *weights,
        ("parameters", ">", lambda o: f"{o.params:,}"),
        ("saved", ">", lambda o: saved(o, o.params_saved, dense.params)),
        *(macs if report.cost is not None else []),
        ("note", "<", lambda o: _note(spec, o.groups)),
    ]
    rows = [[cell(option) for _, _, cell in columns] for option in report.options]
    table = _table([header for header, _, _ in columns], rows, "".join(align for _, align, _ in columns))
    return f"{heading}:\n{table}"


def _note(spec: ConvSpec, groups: int) -> str:
    notes = ["this layer"] * (groups == spec.groups) + ["depthwise"] * (groups == spec.in_channels)
    return ", ".join(notes)


def _table(headers: list[str], rows: list[list], align: str) -> str:
    return text_table(headers, rows, align, indent="  ")
