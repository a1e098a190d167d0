"""``python -m groupconv.parallel plan|bytes|measure``: how a model splits, and what it costs.

python -m groupconv.parallel plan --model alexnet --groups 2 --ranks 2
python -m groupconv.parallel bytes --model alexnet --groups 2 --ranks 2 --widths 0.125 0.5 1
python -m groupconv.parallel measure --model alexnet --groups 2 --ranks 2 --steps 20
"""

from __future__ import annotations

import argparse
import sys

from .measure import Setup

_COMMANDS = {
    "plan": "print how each layer is split and what it communicates",
    "bytes": "bytes sent per step, group-parallel against data-parallel, at several widths (nothing run)",
    "measure": "bytes sent and step time: group-parallel, data-parallel, one process",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m groupconv.parallel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help in _COMMANDS.items():
        command = commands.add_parser(name, help=help, description=help)
        _setup_arguments(command, timing=name == "measure")
        if name == "bytes":
            command.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    args = parser.parse_args(argv)
    options = {field: value for field, value in vars(args).items() if field not in ("command", "widths")}
    {"plan": _print_plan, "bytes": _print_bytes, "measure": _print_measurements}[args.command](Setup(**options), args)
    return 0


def _setup_arguments(parser: argparse.ArgumentParser, timing: bool) -> None:
    defaults = Setup()
    parser.add_argument("--model", default=defaults.model, choices=("alexnet", "resnext", "shufflenet", "mobilenet"))
    parser.add_argument("--groups", type=int, default=defaults.groups, help="(default: %(default)s)")
    parser.add_argument("--width", type=float, default=defaults.width, help="AlexNet's width (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=defaults.ranks, help="processes R (default: %(default)s)")
    if timing:
        parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed steps (default: %(default)s)")
        parser.add_argument("--steps", type=int, default=defaults.steps, help="timed steps (default: %(default)s)")


def _print_plan(setup: Setup, args) -> None:
    import torch

    from ..data import DATASETS
    from ..train import build_model
    from .planner import plan

    config = setup.config()
    example = torch.zeros(1, *DATASETS[config.dataset].image_shape)
    steps = plan(build_model(config), example, setup.ranks)
    print(steps)
    print(f"at batch size {setup.batch_size}: {steps.bytes_per_step(setup.batch_size):,} bytes per rank per step")


def _print_bytes(setup: Setup, args) -> None:
    import dataclasses

    from .measure import predicted_bytes

    print(f"{setup.model} groups={setup.groups}, batch {setup.batch_size}, {setup.ranks} ranks: bytes each rank sends "
          "per training step\n")  # fmt: skip
    print("| width | group-parallel | data-parallel | group / data |\n|---:|---:|---:|---:|")
    for width in args.widths:
        group, data = predicted_bytes(dataclasses.replace(setup, width=width))
        print(f"| {width:g} | {group:,} | {data:,} | {group / data:.2f} |")


def _print_measurements(setup: Setup, args) -> None:
    from .measure import measure, table

    print(f"{setup}\n")
    print(table(setup, measure(setup)))


if __name__ == "__main__":
    sys.exit(main())
