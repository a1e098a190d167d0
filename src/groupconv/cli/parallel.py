"""``groupconv parallel plan|bytes|measure``: how a model splits by groups across processes, and what it costs."""

from __future__ import annotations

import argparse

from ..parallel.measure import Setup
from .common import add_command, check_training_fits

_COMMANDS = {  # name: (one-line help, example)
    "plan": (
        "print how each layer is split and what it communicates",
        "groupconv parallel plan --model alexnet --groups 2 --ranks 2",
    ),
    "bytes": (
        "bytes sent per step, group-parallel against data-parallel, at several widths (nothing run)",
        "groupconv parallel bytes --model alexnet --groups 2 --ranks 2 --widths 0.125 0.5 1",
    ),
    "measure": (
        "bytes sent and step time: group-parallel, data-parallel, one process",
        "groupconv parallel measure --model alexnet --groups 2 --ranks 2 --steps 20",
    ),
}
_EXAMPLES = "examples:\n" + "\n".join(f"  {example}" for _, example in _COMMANDS.values())


def register(commands) -> None:
    """Add ``parallel plan|bytes|measure`` to ``commands`` (argparse subparsers)."""
    parallel = add_command(
        commands,
        "parallel",
        "split a model by its groups across processes: the plan, its bytes, its speed",
        "Group-parallel training (docs/parallel.md): how each layer of a model is split across R processes and "
        "what they exchange, the bytes each rank sends per step against data-parallel, and measured step times.",
        _EXAMPLES,
    )
    actions = parallel.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (help, example) in _COMMANDS.items():
        action = add_command(actions, name, help, help[0].upper() + help[1:] + ".", f"examples:\n  {example}")
        _setup_arguments(action, timing=name == "measure")
        if name == "bytes":
            action.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0], metavar="W",
                                help="AlexNet's widths, one row each (default: 0.125 0.25 0.5 1)")  # fmt: skip
        action.set_defaults(run=_RUNS[name])


def _setup(args: argparse.Namespace) -> Setup:
    return Setup(**{field: value for field, value in vars(args).items() if field in Setup.__dataclass_fields__})


def _setup_arguments(parser: argparse.ArgumentParser, timing: bool) -> None:
    defaults = Setup()
    parser.add_argument("--model", default=defaults.model, choices=("alexnet", "resnext", "shufflenet", "mobilenet"),
                        help="the model groupconv train builds (default: %(default)s)")  # fmt: skip
    parser.add_argument("--groups", type=int, default=defaults.groups, metavar="G",
                        help="the model's groups (ResNeXt's cardinality) (default: %(default)s)")  # fmt: skip
    parser.add_argument("--width", type=float, default=defaults.width, metavar="W",
                        help="AlexNet's width (default: %(default)s)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, metavar="N",
                        help="images per training step (default: %(default)s)")  # fmt: skip
    parser.add_argument("--ranks", type=int, default=defaults.ranks, metavar="R",
                        help="processes (default: %(default)s)")  # fmt: skip
    if timing:
        parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed steps (default: %(default)s)")
        parser.add_argument("--steps", type=int, default=defaults.steps,
                            help="timed steps, at least 2 (default: %(default)s)")  # fmt: skip


def _print_plan(args: argparse.Namespace) -> None:
    setup = _setup(args)
    from ..parallel.planner import plan
    from ..parallel.training import example_input
    from ..training.train import build_model

    config = setup.config()
    steps = plan(build_model(config), example_input(config), setup.ranks)
    print(steps)
    print(f"at batch size {setup.batch_size}: {steps.bytes_per_step(setup.batch_size):,} bytes per rank per step")


def _print_bytes(args: argparse.Namespace) -> None:
    setup = _setup(args)
    import dataclasses

    from ..parallel.measure import predicted_bytes
    from ..tables import markdown_table

    rows = []
    for width in args.widths:
        group, data = predicted_bytes(dataclasses.replace(setup, width=width))
        rows.append([f"{width:g}", f"{group:,}", f"{data:,}", f"{group / data:.2f}"])
    print(f"{setup.model} groups={setup.groups}, batch {setup.batch_size}, {setup.ranks} ranks: bytes each rank sends "
          "per training step\n")  # fmt: skip
    print(markdown_table(["width", "group-parallel", "data-parallel", "group / data"], rows, ">>>>"))


def _print_measurements(args: argparse.Namespace) -> None:
    setup = _setup(args)
    from ..parallel.measure import measure, table

    what = f"--batch-size {setup.batch_size} (with {setup.model}'s activations)"
    check_training_fits(setup.config(), what, "use a smaller --batch-size")
    print(f"{setup}\n")
    print(table(setup, measure(setup)))


_RUNS = {"plan": _print_plan, "bytes": _print_bytes, "measure": _print_measurements}
