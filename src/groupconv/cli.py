"""The ``groupconv`` command: ``demo``, ``explain``, ``diagram``, ``summary`` and ``tune``; ``train``,
``experiment`` and ``filters`` (without ``--json``) come from ``training_cli``, ``bench`` from ``bench.command``.

Each subcommand has ``--help`` and ``--json`` (schemas in ``docs/cli-json.md``).
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from .bench.command import register as register_bench
from .errors import GroupConvError
from .training_cli import register as register_training

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
    "summary": (
        "a per-layer table of any PyTorch model, with totals",
        "A per-layer table of a model: type, channels, groups, kernel, parameters, MACs and output shape, with "
        "totals, from one forward pass on zeros; then every convolution whose channel counts would allow more "
        "groups, with what that would save.",
        """examples:
  groupconv summary alexnet-g2
  groupconv summary mobilenet --input 8,1,28,28 --json
  groupconv summary torchvision.models:resnext50_32x4d --input 1,3,224,224""",
    ),
    "tune": (
        "time every formulation of a model's convolutions and cache the fastest",
        "Run the model forward and backward on random input of the given shape (with and without a gradient for "
        "the input), its torch.nn convolutions replaced by groupconv's; time every formulation (PyTorch's "
        "channels-first and channels-last, groupconv's Numba kernels, im2col, per-group split) of every "
        "convolution direction on its real shape, check each against the reference, and cache the fastest on "
        "disk ($GROUPCONV_CACHE, else ~/.cache/groupconv/tune.json), where every later run on this machine finds "
        "it. A layer whose directions go to different formulations is also timed whole, by PyTorch's convolution "
        "and by groupconv's, and the faster route cached.",
        """examples:
  groupconv tune resnext
  groupconv tune shufflenet --input 64,1,28,28 --json
  groupconv tune mypackage.models:build --input 8,3,224,224 --retune""",
    ),
}


_JSON_HELP = "print JSON (schema: docs/cli-json.md) instead of text"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run ``groupconv *argv``; the exit status (bad input exits 2 before returning)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (GroupConvError, TypeError) as error:
        reason = " ".join(str(error).split())
        parser.exit(2, f"groupconv {args.command}: error: {reason}\n")
    except BrokenPipeError:  # the reader stopped early (`| head`): silence the flush at exit, as Python's docs do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="groupconv", description="Grouped convolution with PyTorch's conventions: correct, fast, explained."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(commands)
    layer = _layer_arguments()
    _add_explain(commands, layer)
    _add_diagram(commands, layer)
    _add_summary(commands)
    _add_tune(commands)
    register_training(commands)
    register_bench(commands)
    return parser


def _subcommand(commands, name: str, parents: list) -> argparse.ArgumentParser:
    """A subcommand with ``--json``, its description wrapped and its examples kept line by line."""
    help, description, examples = _TEXTS[name]
    sub = commands.add_parser(
        name,
        parents=parents,
        help=help,
        description=textwrap.fill(description, 79),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--json", action="store_true", help=_JSON_HELP)
    return sub


def _add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="the document's worked example at every valid group count",
        description="One grouped 2-D layer at every valid group count: weight shape, parameters (no bias), "
        "MACs, and groupconv's output against PyTorch's.",
    )
    demo.add_argument("--in-channels", type=int, default=4, metavar="C", help="input channels (default: 4)")
    demo.add_argument("--out-channels", type=int, default=8, metavar="O", help="output channels (default: 8)")
    demo.add_argument("--kernel", type=int, default=3, metavar="K", help="kernel size K for KxK (default: 3)")
    demo.add_argument("--size", type=int, default=32, metavar="S", help="input height and width (default: 32)")
    demo.add_argument("--json", action="store_true", help=_JSON_HELP)
    demo.set_defaults(run=_demo)


def _add_explain(commands, layer: argparse.ArgumentParser) -> None:
    explain = _subcommand(commands, "explain", [layer])
    dtypes = ("float32", "float64", "float16", "bfloat16")
    explain.add_argument("--dtype", default="float32", choices=dtypes, help="for the byte counts (default: float32)")
    explain.set_defaults(run=_explain)


def _add_diagram(commands, layer: argparse.ArgumentParser) -> None:
    diagram = _subcommand(commands, "diagram", [layer])
    diagram.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write: .png or .svg")
    diagram.set_defaults(run=_diagram)


def _add_summary(commands) -> None:
    _add_model_arguments(_subcommand(commands, "summary", [])).set_defaults(run=_summary)


def _add_tune(commands) -> None:
    tune = _add_model_arguments(_subcommand(commands, "tune", []))
    tune.add_argument("--retune", action="store_true", help="time calls already in the cache again")
    tune.set_defaults(run=_tune)


def _add_model_arguments(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .models import BUILTIN, DEFAULT_INPUT

    sub.add_argument(
        "model",
        metavar="MODEL",
        help=f"a built-in model ({', '.join(BUILTIN)}) or package.module:callable, a function "
        "that returns a torch.nn.Module (or the module itself)",
    )
    sub.add_argument(
        "--input",
        type=_shape,
        metavar="N,C,H,W",
        help=f"the input shape (default for built-in models: {_defaults(DEFAULT_INPUT)})",
    )
    return sub


def _defaults(shapes: dict[str, tuple[int, ...]]) -> str:
    """``1,1,28,28`` when every built-in model takes that, else ``name 1,3,32,32, ...``."""
    texts = {name: ",".join(map(str, shape)) for name, shape in shapes.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return ", ".join(f"{name} {text}" for name, text in texts.items())


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
        type=_ints,
        required=True,
        metavar="K",
        help="kernel size, e.g. 3 or 3,5",
    )
    group.add_argument("--groups", type=int, default=1, metavar="G", help="groups (default: 1)")
    group.add_argument(
        "--input",
        type=_shape,
        metavar="N,C,H,W",
        help="input shape, for output shape, MACs, FLOPs and bytes (N,C,L in 1-D; N,C,D,H,W in 3-D)",
    )
    group.add_argument("--stride", type=_ints, default=1, metavar="S", help="stride (default: 1)")
    group.add_argument(
        "--padding", type=_padding, default=0, metavar="P", help="padding: int(s), 'same' or 'valid' (default: 0)"
    )
    group.add_argument("--dilation", type=_ints, default=1, metavar="D", help="dilation (default: 1)")
    group.add_argument("--transposed", action="store_true", help="a transposed convolution (ConvTranspose)")
    group.add_argument(
        "--output-padding", type=_ints, default=0, metavar="OP", help="transposed only: extra output size (default: 0)"
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


def _ints(text: str) -> int | tuple[int, ...]:
    """``3`` -> 3, ``3,5`` -> (3, 5)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _padding(text: str) -> int | tuple[int, ...] | str:
    return text if text in ("same", "valid") else _ints(text)


def _shape(text: str) -> tuple[int, ...]:
    """``1,4,32,32`` or ``1x4x32x32`` -> (1, 4, 32, 32)."""
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape such as 1,4,32,32, got {text!r}") from None


def _spec(args: argparse.Namespace):
    """The ConvSpec the layer arguments describe; an invalid --groups says why and what is near."""
    from .explanation import check_groups
    from .spec import SPATIAL_NAMES, ConvSpec

    check_groups(args.in_channels, args.out_channels, args.groups)
    dims = _dims(args)
    if args.input is not None and len(args.input) != dims + 2:
        spatial = ",".join(SPATIAL_NAMES[dims])
        raise GroupConvError(
            f"--input {','.join(map(str, args.input))} has {len(args.input)} sizes; a {dims}-D convolution "
            f"takes N,C,{spatial} ({dims + 2} sizes)"
        )
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


def _dims(args: argparse.Namespace) -> int:
    if args.dims is not None:
        return args.dims
    if isinstance(args.kernel_size, tuple):
        return len(args.kernel_size)
    if args.input is not None and len(args.input) >= 3:
        return len(args.input) - 2
    return 2


def _explain(args: argparse.Namespace) -> None:
    from .explanation import explain

    report = explain(_spec(args), args.input, args.dtype)
    print(report.to_json() if args.json else report)


def _diagram(args: argparse.Namespace) -> None:
    from .drawing import diagram

    drawn = diagram(_spec(args), args.output, args.input)
    if args.json:
        print(drawn.to_json())
    else:
        print(f"wrote {drawn.path} ({drawn.width_px}x{drawn.height_px} px {drawn.format.upper()}): {drawn.layer}")


def _summary(args: argparse.Namespace) -> None:
    from .model_summary import summary

    model, input_shape = _model(args)
    result = summary(model, input_shape, name=args.model)
    print(result.to_json() if args.json else result)


def _tune(args: argparse.Namespace) -> None:
    import torch

    from . import nn, tuning
    from .model_summary import model_failures_in_one_line

    model, input_shape = _model(args)
    with model_failures_in_one_line(input_shape):
        report = tuning.tune(nn.convert(model), torch.randn(input_shape), retune=args.retune)
    if args.json:
        calls = [call.to_dict() for call in report.calls]
        document = {"schema": "groupconv.tune/1", "model": args.model, "input_shape": list(input_shape)}
        print(json.dumps({**document, "cache": str(tuning.cache_path()), "calls": calls}, indent=2))
    else:
        print(f"{report}\n\n{len(report.calls)} calls tuned; cached in {tuning.cache_path()}")


def _model(args: argparse.Namespace):
    """The model MODEL names and the input shape to run it on."""
    from .model_summary import load_model

    model, default_input = load_model(args.model)
    input_shape = args.input or default_input
    if input_shape is None:
        raise GroupConvError(f"model {args.model!r} has no default input shape; give --input N,C,H,W")
    return model, input_shape


def _demo(args: argparse.Namespace) -> None:
    from .demo import worked_example

    rows = worked_example(args.in_channels, args.out_channels, args.kernel, args.size)
    if args.json:
        _demo_json(args, rows)
        return
    print(
        f"Conv2d(in_channels={args.in_channels}, out_channels={args.out_channels}, kernel_size={args.kernel}, "
        f"bias=False) on an input of shape (1, {args.in_channels}, {args.size}, {args.size})\n"
    )
    header = (
        f"{'groups':>6}  {'weight shape':<16}{'parameters':>10}  {'MACs':>10}  "
        f"{'output shape':<18}{'max |groupconv - PyTorch|':>26}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.groups:>6}  {list(row.weight_shape)!s:<16}{row.parameters:>10,}  {row.macs:>10,}  "
            f"{row.output_shape!s:<18}{row.max_difference:>26.2e}"
        )
    print(
        f"\nEach of the g groups convolves {args.in_channels}/g input channels with its own "
        f"{args.out_channels}/g filters: parameters and MACs fall as 1/g. Valid g: the divisors of "
        f"gcd({args.in_channels}, {args.out_channels})."
    )


def _demo_json(args: argparse.Namespace, rows: list) -> None:
    import dataclasses

    from .formatting import to_json

    example = {
        "schema": "groupconv.demo/1",
        "in_channels": args.in_channels,
        "out_channels": args.out_channels,
        "kernel_size": args.kernel,
        "input_shape": (1, args.in_channels, args.size, args.size),
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    print(to_json(example))


if __name__ == "__main__":
    sys.exit(main())
