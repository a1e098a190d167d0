"""The ``groupconv`` command."""

from __future__ import annotations

import argparse
import sys

from .errors import GroupConvError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="groupconv", description="Grouped convolution with PyTorch's conventions: correct, fast, explained."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (GroupConvError, TypeError) as error:
        parser.exit(2, f"groupconv {args.command}: error: {error}\n")
    return 0


def _demo(args: argparse.Namespace) -> None:
    from .demo import worked_example

    rows = worked_example(args.in_channels, args.out_channels, args.kernel, args.size)
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


if __name__ == "__main__":
    sys.exit(main())
