"""The ``groupconv`` command: every subcommand, each registered by its own module of this package.

Each subcommand has ``--help``; the reports have ``--json`` (schemas in ``docs/cli-json.md``).
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

from ..errors import GroupConvError
from ..memory import keep_freed_memory
from . import bench, demo, layers, models, parallel, training
from .common import check_arguments


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run ``groupconv *argv``; the exit status (bad input exits 2, Ctrl-C 130, before returning)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        keep_freed_memory()  # fresh tensors reuse freed memory rather than fault pages in (groupconv.memory)
        args.run(args)
    except KeyboardInterrupt:
        parser.exit(130, "groupconv: interrupted\n")
    except BrokenPipeError:  # the reader stopped early (`| head`): silence the flush at exit, as Python's docs do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (GroupConvError, TypeError, ValueError, OSError, MemoryError) as error:  # the user's input or files
        reason = " ".join(str(error).split()) or type(error).__name__
        parser.exit(2, f"groupconv {args.command}: error: {reason}\n")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="groupconv", description="Grouped convolution with PyTorch's conventions: correct, fast, explained."
    )
    parser.add_argument("--version", action="version", version=f"groupconv {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, layers, models, training, bench, parallel):
        module.register(commands)
    check_arguments(parser)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("groupconv")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"
