"""``groupconv explain`` and ``groupconv diagram``: one layer, given by PyTorch's conv arguments."""

from __future__ import annotations

import argparse

from ..errors import GroupConvError
from .common import add_command, ints, shape

_TEXTS = {  # name: (one-line help, description, examples)
    "explain": (
        "one layer's grouping, shapes, counts and valid groups",
        "Explain one grouped convolution layer: which input and output channels each group connects, its weight "
        "shape, parameters (with and without bias), and with --input its output shape, MACs, FLOPs, bytes and "
        "arithmetic intensity; then the same layer at every valid group count, with what each saves against "
        "groups=1.",
        """examples:
  groupconv explain --in 4 --out 8 --kernel 3 --groups 2 --input 1,4,32,32
  groupconv explain --in 64 --out 64 --kernel 3 --groups 64 --padding 1 --input 8,64,56,56 --json
  groupconv explain --in 6 --out 12 --kernel 4 --stride 2 --transposed --groups 3 --input 1,6,16,16""",
    ),
    "diagram": (
        "draw one layer's groups and connectivity to PNG or SVG",
        "Draw one grouped layer: input channels, filters (as deep as the channels they read) and output channels, "
        "coloured per group, beside the (out x in) connectivity matrix. Wide layers are drawn in at most 32 rows "
        "per column, each row a run of channels.",
        """examples:
  groupconv diagram --in 4 --out 8 --kernel 3 --groups 2 -o grouped.png
  groupconv diagram --in 512 --out 512 --kernel 3 --groups 32 -o resnext-3x3.svg""",
    ),
}


def register(commands) -> None:
    """Add ``explain`` and ``diagram`` to ``commands`` (argparse subparsers)."""
    layer = _layer_arguments()
    explain = add_command(commands, "explain", *_TEXTS["explain"], json=True, parents=[layer])
    dtypes = ("float32", "float64", "float16", "bfloat16")
    explain.add_argument("--dtype", default="float32", choices=dtypes, help="for the byte counts (default: float32)")
    explain.set_defaults(run=_explain)
    diagram = add_command(commands, "diagram", *_TEXTS["diagram"], json=True, parents=[layer])
    diagram.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write: .png or .svg")
    diagram.set_defaults(run=_diagram)


def _layer_arguments() -> argparse.ArgumentParser:
    """The layer's arguments, shared by ``explain`` and ``diagram``: PyTorch's conv arguments."""
    layer = argparse.ArgumentParser(add_help=False)
    group = layer.add_argument_group("the layer (PyTorch's conv arguments; K, S, P, D: an int or one per dim)")
    group.add_argument(
        "--in", "--in-channels", dest="in_channels", type=int, required=True, metavar="C_IN", help="input channels"
    )
    group.add_argument(
        "--out", "--out-channels", dest="out_channels", type=int, required=True, metavar="C_OUT", help="output channels"
    )
    group.add_argument(
        "--kernel",
        "--kernel-size",
        dest="kernel_size",
        type=ints,
        required=True,
        metavar="K",
        help="kernel size, e.g. 3 or 3,5",
    )
    group.add_argument("--groups", type=int, default=1, metavar="G", help="groups (default: 1)")
    group.add_argument(
        "--input",
        type=shape,
        metavar="N,C,H,W",
        help="input shape, for output shape, MACs, FLOPs and bytes (N,C,L in 1-D; N,C,D,H,W in 3-D)",
    )
    group.add_argument("--stride", type=ints, default=1, metavar="S", help="stride (default: 1)")
    group.add_argument(
        "--padding", type=_padding, default=0, metavar="P", help="padding: int(s), 'same' or 'valid' (default: 0)"
    )
    group.add_argument("--dilation", type=ints, default=1, metavar="D", help="dilation (default: 1)")
    group.add_argument("--transposed", action="store_true", help="a transposed convolution (ConvTranspose)")
    group.add_argument(
        "--output-padding", type=ints, default=0, metavar="OP", help="transposed only: extra output size (default: 0)"
    )
    group.add_argument("--no-bias", dest="bias", action="store_false", help="no bias (PyTorch's bias=False)")
    group.add_argument(
        "--padding-mode",
        default="zeros",
        choices=("zeros", "reflect", "replicate", "circular"),
        help="(default: zeros)",
    )
    group.add_argument(
        "--dims",
        type=int,
        choices=(1, 2, 3),
        help="spatial dims (default: from --kernel if it has several ints, else from --input, else 2)",
    )
    return layer


def _padding(text: str) -> int | tuple[int, ...] | str:
    return text if text in ("same", "valid") else ints(text)


def _spec(args: argparse.Namespace):
    """The ConvSpec the layer arguments describe; an invalid --groups says why and what is near."""
    from ..reports.explain import check_groups
    from ..spec import ConvSpec

    check_groups(args.in_channels, args.out_channels, args.groups)
    dims = _dims(args)
    if args.input is not None:
        _check_input(args, dims)
    return ConvSpec(
        args.in_channels,
        args.out_channels,
        args.kernel_size,
        args.stride,
        args.padding,
        args.dilation,
        args.groups,
        args.bias,
        args.padding_mode,
        args.transposed,
        args.output_padding,
        dims=dims,
    )


def _check_input(args: argparse.Namespace, dims: int) -> None:
    """--input must be the layer's N,C,<spatial> or unbatched C,<spatial>, with C its input channels."""
    sizes, text = args.input, ",".join(map(str, args.input))
    if len(sizes) not in (dims + 1, dims + 2):
        raise GroupConvError(f"--input {text} has {len(sizes)} sizes; a {dims}-D layer takes {_forms(dims)}")
    channels = sizes[-dims - 1]
    if channels != args.in_channels:
        raise GroupConvError(
            f"--input {text} gives C = {channels} input channels, but --in is {args.in_channels}: a {dims}-D layer "
            f"takes {_forms(dims)}, with C = {args.in_channels}{_batch_forgotten(args, dims)}"
        )


def _batch_forgotten(args: argparse.Namespace, dims: int) -> str:
    """Where --input's sizes set the dims and it fits a layer of one more dim unbatched, that reading's fix."""
    given = args.dims is not None or isinstance(args.kernel_size, tuple)
    if given or dims == 3 or args.input[0] != args.in_channels:
        return ""
    batched = ",".join(map(str, (1, *args.input)))
    return (f" ({len(args.input)} sizes made the layer {dims}-D; a {dims + 1}-D layer takes {_forms(dims + 1)}: "
            f"give {batched}, or add --dims {dims + 1})")  # fmt: skip


def _forms(dims: int) -> str:
    """``N,C,H,W or unbatched C,H,W``: the input shapes a layer of ``dims`` spatial dims takes."""
    from ..spec import SPATIAL_NAMES

    spatial = ",".join(SPATIAL_NAMES[dims])
    return f"N,C,{spatial} or unbatched C,{spatial}"


def _dims(args: argparse.Namespace) -> int:
    if args.dims is not None:
        return args.dims
    if isinstance(args.kernel_size, tuple):
        if not 1 <= len(args.kernel_size) <= 3:
            raise GroupConvError(
                f"--kernel {','.join(map(str, args.kernel_size))} has {len(args.kernel_size)} sizes; groupconv "
                "supports 1-, 2- and 3-D convolution: give 1 to 3 sizes"
            )
        return len(args.kernel_size)
    if args.input is not None and 3 <= len(args.input) <= 5:  # N,C and 1 to 3 spatial sizes
        return len(args.input) - 2
    return 2


def _explain(args: argparse.Namespace) -> None:
    from ..reports.explain import explain

    report = explain(_spec(args), args.input, args.dtype)
    print(report.to_json() if args.json else report)


def _diagram(args: argparse.Namespace) -> None:
    from ..reports.diagram import diagram

    drawn = diagram(_spec(args), args.output, args.input)
    if args.json:
        print(drawn.to_json())
    else:
        print(f"wrote {drawn.path} ({drawn.width_px}x{drawn.height_px} px {drawn.format.upper()}): {drawn.layer}")
