"""``groupconv demo``: the worked example of *A Deeper Understanding of Grouped Convolution*."""

from __future__ import annotations

import argparse

from .common import add_command


def register(commands) -> None:
    """Add ``demo`` to ``commands`` (argparse subparsers)."""
    demo = add_command(
        commands,
        "demo",
        "the worked example of A Deeper Understanding of Grouped Convolution, at every valid group count",
        "One grouped 2-D layer at every valid group count: weight shape, parameters (no bias), MACs, and "
        "groupconv's output against PyTorch's.",
        """examples:
  groupconv demo                                       # the post's 4 -> 8 channels, 3x3
  groupconv demo --in-channels 12 --out-channels 24    # six valid group counts
  groupconv demo --json""",
        json=True,
    )
    demo.add_argument("--in-channels", type=int, default=4, metavar="C", help="input channels (default: 4)")
    demo.add_argument("--out-channels", type=int, default=8, metavar="O", help="output channels (default: 8)")
    demo.add_argument("--kernel", type=int, default=3, metavar="K", help="kernel size K for KxK (default: 3)")
    demo.add_argument("--size", type=int, default=32, metavar="S", help="input height and width (default: 32)")
    demo.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> None:
    from ..reports.demo import worked_example

    _check_fits(args)
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


_MAX_BYTES = 2**29  # 512 MiB per tensor: a worked example, not a benchmark


def _check_fits(args: argparse.Namespace) -> None:
    """Refuse, before allocating, an invalid layer, or an example whose input, weight (at groups=1) or output
    would not be small."""
    from ..spec import ConvSpec
    from ..training.train import check_memory

    ConvSpec(args.in_channels, args.out_channels, args.kernel, bias=False)  # its message before any size's
    sizes = {
        "input": args.in_channels * args.size**2,
        "weight": args.out_channels * args.in_channels * args.kernel**2,
        "output": args.out_channels * args.size**2,
    }
    for name, numbers in sizes.items():
        check_memory(f"the example's {name}", 4 * numbers, "use fewer channels or a smaller --size", _MAX_BYTES)


def _demo_json(args: argparse.Namespace, rows: list) -> None:
    import dataclasses

    from ..reports.formats import to_json

    example = {
        "schema": "groupconv.demo/1",
        "in_channels": args.in_channels,
        "out_channels": args.out_channels,
        "kernel_size": args.kernel,
        "input_shape": (1, args.in_channels, args.size, args.size),
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    print(to_json(example))
