"""A grouped layer drawn: channel blocks, filter groups and the connectivity matrix.

:func:`diagram` draws a :class:`~groupconv.ConvSpec` the way the figures of
*A Deeper Understanding of Grouped Convolution* do: input channels on the left, the
filters in the middle (each as deep as the input channels it reads), output channels on
the right, every group in its own colour, with the (out x in) connectivity matrix beside
it, block-diagonal when groups > 1.

Wide layers stay readable: a column shows at most ``max_rows`` rows, and beyond that
each row stands for a run of channels (never straddling two groups) or, when there are
more groups than rows, a run of whole groups. matplotlib is imported only when a
figure is drawn, and only its Agg (PNG) and SVG backends are used: no display needed.
"""

from __future__ import annotations

import bisect
import colorsys
import dataclasses
import itertools
import os
from pathlib import Path
from typing import ClassVar

from ..errors import GroupConvError
from ..spec import ConvSpec, Shape, check_int
from . import formats as fmt
from .explain import check_spec, describe

FORMATS = ("png", "svg")
FIGURE_INCHES = (14.0, 6.5)
_SMALL_PALETTE = (  # distinct colours for the first groups; red and green, as in the Grouped Convolution post
    "#d62728",
    "#2ca02c",
    "#1f77b4",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
_DENSE = "#1f77b4"  # groups=1: one colour, and not the red of "group 0"
_MAX_DPI = 1200  # the 14 x 6.5 inch figure is then 16800 x 7800 pixels, half a gigabyte to render
_GOLDEN = 0.618033988749895  # hue step that keeps neighbouring groups apart, for any number of groups


@dataclasses.dataclass(frozen=True)
class Block:
    """One drawn row: channels ``[start, stop)``, inside groups ``[groups[0], groups[1])``."""

    start: int
    stop: int
    groups: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Diagram(fmt.JsonReport):
    """What :func:`diagram` wrote: the file, its size, and the rows each column was drawn with.

    ``width_px`` and ``height_px`` are the PNG's pixels; for an SVG, its size at the same dpi.
    """

    schema: ClassVar[str] = "groupconv.diagram/1"

    path: str
    format: str
    width_px: int
    height_px: int
    layer: str
    spec: ConvSpec
    input_blocks: tuple[Block, ...]
    output_blocks: tuple[Block, ...]


def diagram(
    spec: ConvSpec, path: str | os.PathLike, input_shape: Shape | None = None, max_rows: int = 32, dpi: int = 120
) -> Diagram:
    """Draw ``spec`` to ``path`` (``.png`` or ``.svg``); ``input_shape`` adds the output shape to the title.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "grouped.svg")
        >>> drawn = diagram(ConvSpec(4, 8, 3, groups=2), path)
        >>> drawn.format, len(drawn.input_blocks), len(drawn.output_blocks)
        ('svg', 4, 8)
    """
    check_spec(spec)
    dpi = _checked_dpi(dpi)
    file_format = Path(path).suffix.lower().lstrip(".")
    if file_format not in FORMATS:
        raise GroupConvError(f"cannot draw to {os.fspath(path)!r}: the file name must end in .png or .svg")
    title = _title(spec, input_shape)  # validates input_shape before anything is drawn
    inputs = channel_blocks(spec.in_channels, spec.groups, max_rows)
    outputs = channel_blocks(spec.out_channels, spec.groups, max_rows)
    figure = _figure(spec, inputs, outputs, title)
    try:
        _save(figure, path, file_format, dpi)
    except OSError as error:
        raise GroupConvError(f"cannot write {os.fspath(path)!r}: {error.strerror or error}") from None
    width, height = (round(inches * dpi) for inches in FIGURE_INCHES)
    return Diagram(os.fspath(path), file_format, width, height, describe(spec), spec, inputs, outputs)


def channel_blocks(channels: int, groups: int, max_rows: int = 32) -> tuple[Block, ...]:
    """``channels`` cut into at most ``max_rows`` runs that respect the group boundaries.

    With no more groups than rows, each group gets the same number of rows, each row
    a run of that group's channels; with more groups, each row is a run of whole groups.

    Example:
        >>> [(b.start, b.stop, b.groups) for b in channel_blocks(4, 2)]
        [(0, 1, (0, 1)), (1, 2, (0, 1)), (2, 3, (1, 2)), (3, 4, (1, 2))]
        >>> [(b.start, b.stop) for b in channel_blocks(512, 1)][:2]  # 32 rows of 16 channels
        [(0, 16), (16, 32)]
        >>> channel_blocks(512, 512)[0]  # 32 rows of 16 depthwise groups
        Block(start=0, stop=16, groups=(0, 16))
    """
    max_rows = check_int("max_rows", max_rows, minimum=1)
    per_group = channels // groups
    if groups <= max_rows:
        rows_per_group = min(per_group, max_rows // groups)
        return tuple(
            Block(start, stop, (g, g + 1))
            for g in range(groups)
            for start, stop in _runs(g * per_group, (g + 1) * per_group, rows_per_group)
        )
    return tuple(Block(g0 * per_group, g1 * per_group, (g0, g1)) for g0, g1 in _runs(0, groups, max_rows))


def _runs(start: int, stop: int, count: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into ``count`` consecutive runs whose lengths differ by at most one."""
    edges = [start + (stop - start) * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def _checked_dpi(dpi: object) -> int:
    dpi = check_int("dpi", dpi, minimum=1)
    if dpi > _MAX_DPI:
        width, height = (round(inches * dpi) for inches in FIGURE_INCHES)
        raise GroupConvError(
            f"dpi={dpi} is too large: the figure would be {width:,} x {height:,} pixels; use dpi <= {_MAX_DPI}"
        )
    return dpi


def _title(spec: ConvSpec, input_shape: Shape | None) -> str:
    weights = spec.num_params - (spec.out_channels if spec.bias else 0)
    bias = f" + {spec.out_channels:,} bias" if spec.bias else ""
    title = f"{describe(spec)}\nweight {list(spec.weight_shape)}: {weights:,} weights{bias}"
    if input_shape is not None:
        title += f";  input {fmt.shape(input_shape)} -> output {fmt.shape(spec.output_shape(input_shape))}"
    return title


def _save(figure, path: str | os.PathLike, file_format: str, dpi: int) -> None:
    """Write ``figure`` reproducibly: the same layer gives the same bytes (no date, version or random ids)."""
    from matplotlib import rc_context

    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}[file_format]
    with rc_context({"svg.hashsalt": "groupconv"}):
        figure.savefig(path, format=file_format, dpi=dpi, metadata=metadata)


def connectivity(spec: ConvSpec):
    """The (O, C) boolean matrix of which input channels each output channel reads.

    Example:
        >>> connectivity(ConvSpec(4, 2, 1, groups=2)).astype(int)
        array([[1, 1, 0, 0],
               [0, 0, 1, 1]])
    """
    import numpy as np

    return _connected(spec, np.arange(spec.out_channels), np.arange(spec.in_channels))


def _connected(spec: ConvSpec, out_channels, in_channels):
    """Whether each of ``out_channels`` (an int array) reads each of ``in_channels``: the same group."""
    return (out_channels // spec.out_per_group)[:, None] == (in_channels // spec.in_per_group)[None, :]


# Drawing -------------------------------------------------------------------------------------------------------
# The flow panel works in data units: y runs from 0 (top) to 1, and every row has the same pitch in all three
# columns, so channel counts compare at a glance. A filter is _FILTER_WIDTH wide at groups=1, and narrower (as
# deep as the channels it reads) at more groups.

_INPUT_X, _FILTER_X, _OUTPUT_X = 0.0, 2.4, 5.6
_COLUMN_WIDTH, _FILTER_WIDTH = 0.8, 1.8
_MIN_DEPTH = 0.06  # a filter one channel deep out of hundreds is still drawn wide enough to see


def _figure(spec: ConvSpec, inputs: tuple[Block, ...], outputs: tuple[Block, ...], title: str):
    from matplotlib.figure import Figure  # lazily: `import groupconv` stays fast

    figure = Figure(figsize=FIGURE_INCHES, layout="constrained")
    flow, matrix = figure.subplots(1, 2, width_ratios=(1.6, 1))
    figure.suptitle(title, fontsize=11, family="monospace")
    colours = _group_colours(inputs)
    _draw_flow(flow, spec, inputs, outputs, colours)
    _draw_matrix(matrix, spec, colours)
    return figure


@dataclasses.dataclass(frozen=True)
class _GroupColours:
    """The RGB colour of each group, stored once per run of groups that one row stands for: a list with one
    entry per group would not fit in memory at 2**40 groups."""

    firsts: tuple[int, ...]  # each run's first group, ascending
    rgb: tuple[tuple[float, float, float], ...]  # each run's colour

    def __getitem__(self, group: int) -> tuple[float, float, float]:
        return self.rgb[bisect.bisect_right(self.firsts, group) - 1]

    def of(self, groups):
        """The colours of an int array of groups, as an array of RGB rows."""
        import numpy as np

        return np.asarray(self.rgb)[np.searchsorted(self.firsts, groups, side="right") - 1]


def _group_colours(blocks: tuple[Block, ...]) -> _GroupColours:
    """One colour per run of groups that a row stands for; the groups in a run share it."""
    from matplotlib.colors import to_rgb

    runs = list(dict.fromkeys(block.groups for block in blocks))
    if len(runs) == 1:
        palette = [_DENSE]
    elif len(runs) <= len(_SMALL_PALETTE):
        palette = _SMALL_PALETTE
    else:
        palette = [colorsys.hsv_to_rgb((index * _GOLDEN) % 1.0, 0.6, 0.85) for index in range(len(runs))]
    return _GroupColours(tuple(first for first, _ in runs), tuple(to_rgb(colour) for colour in palette[: len(runs)]))


def _draw_flow(ax, spec: ConvSpec, inputs, outputs, colours) -> None:
    """Input rows, filter rows (as deep as they read), output rows, and a band per group between them."""
    pitch = 1 / max(len(inputs), len(outputs), 4)
    in_rows, out_rows = _rows(len(inputs), pitch), _rows(len(outputs), pitch)
    depth = max(_FILTER_WIDTH * spec.in_per_group / spec.in_channels, _MIN_DEPTH)
    font = 9 if pitch >= 1 / 16 else 7
    for block, (top, bottom) in zip(inputs, in_rows):
        _box(ax, _INPUT_X, top, _COLUMN_WIDTH, bottom, colours[block.groups[0]])
        _text(ax, _INPUT_X - 0.08, (top + bottom) / 2, fmt.span(block.start, block.stop), font, ha="right")
    for block, (top, bottom) in zip(outputs, out_rows):
        _box(ax, _FILTER_X, top, _FILTER_WIDTH, bottom, "#ececec", edge="none")  # the depth at groups=1
        _box(ax, _FILTER_X, top, depth, bottom, colours[block.groups[0]])
        _slices(ax, block.groups[0] * spec.in_per_group, spec.in_per_group, depth, top, bottom)
        _box(ax, _OUTPUT_X, top, _COLUMN_WIDTH, bottom, colours[block.groups[0]])
        _text(ax, _OUTPUT_X + _COLUMN_WIDTH + 0.08, (top + bottom) / 2, fmt.span(block.start, block.stop), font)
    _bands(ax, _spans(inputs, in_rows), _spans(outputs, out_rows), colours)
    _flow_labels(ax, spec, inputs, outputs)
    ax.set_xlim(_INPUT_X - 0.75, _OUTPUT_X + _COLUMN_WIDTH + 0.75)
    ax.set_ylim(1.1, -0.16)
    ax.axis("off")


def _rows(count: int, pitch: float) -> list[tuple[float, float]]:
    """(top, bottom) of ``count`` rows of height ``pitch``, centred in [0, 1], with a gap between rows."""
    offset = (1 - count * pitch) / 2
    gap = pitch * 0.18
    return [(offset + i * pitch + gap / 2, offset + (i + 1) * pitch - gap / 2) for i in range(count)]


def _box(ax, x: float, top: float, width: float, bottom: float, colour, edge: str = "white") -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, top), width, bottom - top, facecolor=colour, edgecolor=edge, linewidth=0.6))


def _text(ax, x: float, y: float, text: object, fontsize: float, ha: str = "left", **style) -> None:
    ax.text(x, y, str(text), ha=ha, va="center", fontsize=fontsize, **style)


def _slices(ax, first_input: int, depth_channels: int, depth: float, top: float, bottom: float) -> None:
    """Cut a filter into its channel slices where they are wide enough to see, and where they are
    wide enough to read, name the input channel each slice meets."""
    width = depth / depth_channels
    for k in range(depth_channels if width >= 0.06 else 0):
        x = _FILTER_X + width * k
        if k:
            ax.plot([x, x], [top, bottom], color="white", linewidth=0.6)
        if width >= 0.18 and bottom - top >= 0.03:
            _text(ax, x + width / 2, (top + bottom) / 2, first_input + k, 7, ha="center", color="white")


def _spans(blocks, rows) -> dict[tuple[int, int], tuple[float, float]]:
    """(top, bottom) of the rows of each run of groups."""
    spans: dict[tuple[int, int], tuple[float, float]] = {}
    for block, (top, bottom) in zip(blocks, rows):
        first_top, _ = spans.get(block.groups, (top, bottom))
        spans[block.groups] = (first_top, bottom)
    return spans


def _bands(ax, in_spans, out_spans, colours) -> None:
    """Translucent bands from each group's input rows to its filters, and from its filters to its outputs."""
    for run, in_span in in_spans.items():
        colour, out_span = colours[run[0]], out_spans[run]
        _band(ax, _INPUT_X + _COLUMN_WIDTH, in_span, _FILTER_X, out_span, colour, alpha=0.28)
        _band(ax, _FILTER_X + _FILTER_WIDTH, out_span, _OUTPUT_X, out_span, colour, alpha=0.14)
        if 1 < len(in_spans) <= 16:
            label = f"group {run[0]}" if run[1] - run[0] == 1 else f"groups {fmt.span(*run)}"
            frame = {"facecolor": "white", "edgecolor": colour, "boxstyle": "round,pad=0.2", "linewidth": 0.8}
            x, y = (_INPUT_X + _COLUMN_WIDTH + _FILTER_X) / 2, (sum(in_span) + sum(out_span)) / 4
            _text(ax, x, y, label, 8, ha="center", bbox=frame)


def _band(ax, left: float, left_span, right: float, right_span, colour, alpha: float) -> None:
    from matplotlib.patches import Polygon

    (left_top, left_bottom), (right_top, right_bottom) = left_span, right_span
    corners = [(left, left_top), (right, right_top), (right, right_bottom), (left, left_bottom)]
    ax.add_patch(Polygon(corners, facecolor=colour, alpha=alpha, edgecolor="none"))


def _flow_labels(ax, spec: ConvSpec, inputs, outputs) -> None:
    depth = fmt.plural(spec.in_per_group, "channel")
    if spec.transposed:  # the weight is (C, Og, *K), but each output channel still sums over Cg inputs
        middle = f"kernels: weight {list(spec.weight_shape)}\neach output channel reads {depth}"
    else:
        middle = (
            f"filters: weight {list(spec.weight_shape)}\n{fmt.plural(spec.out_channels, 'filter')}, each {depth} deep"
        )
    headings = [
        (_INPUT_X + _COLUMN_WIDTH / 2, f"input\n{fmt.plural(spec.in_channels, 'channel')}"),
        (_FILTER_X + _FILTER_WIDTH / 2, middle),
        (_OUTPUT_X + _COLUMN_WIDTH / 2, f"output\n{fmt.plural(spec.out_channels, 'channel')}"),
    ]
    for x, heading in headings:
        ax.text(x, -0.04, heading, ha="center", va="bottom", fontsize=10)
    caption = f"each input row: {_row_size(inputs)}; each output row: {_row_size(outputs)}"
    if spec.groups > 1:
        caption += f"; grey: the depth a filter would have at groups=1 ({spec.in_channels})"
    ax.text(
        (_INPUT_X + _OUTPUT_X + _COLUMN_WIDTH) / 2, 1.04, caption, ha="center", va="top", fontsize=8, color="#555555"
    )


def _row_size(blocks) -> str:
    """How many channels (and groups) one row stands for, e.g. ``16 channels in 16 groups``."""
    sizes = sorted({block.stop - block.start for block in blocks})
    channels = fmt.plural(sizes[0], "channel") if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]} channels"
    groups = sorted({block.groups[1] - block.groups[0] for block in blocks})
    if groups == [1]:
        return channels
    many = f"{groups[0]}" if len(groups) == 1 else f"{groups[0]}-{groups[-1]}"
    return f"{channels} in {many} groups"


def _draw_matrix(ax, spec: ConvSpec, colours) -> None:
    """Which input channels each output channel reads, coloured by group: block-diagonal when groups > 1."""
    import numpy as np

    out_index, in_index = _sampled(spec.out_channels), _sampled(spec.in_channels)
    connected = _connected(spec, out_index, in_index)  # (O, C), or evenly sampled rows and columns of it
    out_colours = colours.of(out_index // spec.out_per_group)
    image = np.ones((len(out_index), len(in_index), 3))  # white where a pair is not connected
    image[connected] = np.broadcast_to(out_colours[:, None, :], image.shape)[connected]
    widest, narrowest = max(spec.in_channels, spec.out_channels), min(spec.in_channels, spec.out_channels)
    aspect = "equal" if widest <= 4 * narrowest else "auto"
    ax.imshow(image, extent=(0, spec.in_channels, spec.out_channels, 0), interpolation="nearest", aspect=aspect)
    _matrix_grid(ax, spec, cells=widest <= 32)
    ax.set_xlabel("input channel")
    ax.set_ylabel("output channel")
    pairs = f"{spec.out_channels * spec.in_per_group:,} of {spec.out_channels * spec.in_channels:,} pairs connected"
    blocks = f"{spec.groups} diagonal blocks of {spec.out_per_group} x {spec.in_per_group}"
    ax.set_title(f"connectivity (out x in): {pairs}\n{'dense' if spec.groups == 1 else blocks}", fontsize=10)


def _sampled(channels: int, most: int = 1024):
    """Every channel index, or ``most`` evenly spaced ones: a matrix beyond that is more than the pixels."""
    import numpy as np

    count = min(channels, most)
    return np.arange(count) * channels // count


def _matrix_grid(ax, spec: ConvSpec, cells: bool) -> None:
    """Channel ticks and cell lines when ``cells``; group boundaries for up to 16 groups."""
    from matplotlib.ticker import MaxNLocator

    if cells:
        ax.set_xticks([c + 0.5 for c in range(spec.in_channels)], range(spec.in_channels), fontsize=7)
        ax.set_yticks([c + 0.5 for c in range(spec.out_channels)], range(spec.out_channels), fontsize=7)
        for c in range(1, spec.in_channels):
            ax.axvline(c, color="white", linewidth=0.8)
        for c in range(1, spec.out_channels):
            ax.axhline(c, color="white", linewidth=0.8)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(8, integer=True))
    if 1 < spec.groups <= 16:
        for g in range(1, spec.groups):
            ax.axvline(g * spec.in_per_group, color="#999999", linewidth=0.6)
            ax.axhline(g * spec.out_per_group, color="#999999", linewidth=0.6)
    ax.tick_params(length=2)
