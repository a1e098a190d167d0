"""The ``groupconv`` command: every subcommand, each registered by its own module of this package.

Each subcommand has ``--help``; the reports have ``--json`` (schemas in ``docs/cli-json.md``).
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import GroupConvError
from . import bench, demo, layers, models, parallel, training


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
    for module in (demo, layers, models, training, bench, parallel):
        module.register(commands)
    return parser
