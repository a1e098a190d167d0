"""The ``groupconv`` command: every subcommand, each registered by its own module of this package.

Each subcommand has ``--help``; the reports have ``--json`` (schemas in ``docs/cli-json.md``).
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import re
import sys
import warnings
from collections.abc import Iterator

import torch

from ..errors import GroupConvError
from ..memory import keep_freed_memory
from . import bench, demo, layers, models, parallel, training
from .common import check_arguments


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not the whole usage, and names the help of
    the subcommand it is about."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse reports these from the top-level parser: report them from the subcommand's
            _subcommand(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _subcommand(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that ``args`` chose (``groupconv parallel plan``'s)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _subcommand(action.choices[getattr(args, action.dest)], args)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """groupconv's own warnings as the line they are, without the source file and line behind them."""
    if str(message).startswith("groupconv"):
        return f"{message}\n"
    return _python_warning_line(message, category, filename, lineno, line)


_python_warning_line = warnings.formatwarning


@contextlib.contextmanager
def _terminal_output() -> Iterator[None]:
    """While a command runs: groupconv's warnings as their line, and what the terminal cannot encode escaped (a
    file name, say), not fatal; the process's settings as they were afterwards (main may be called in-process)."""
    streams = [stream for stream in (sys.stdout, sys.stderr) if isinstance(stream, io.TextIOWrapper)]
    errors, formatwarning = [stream.errors for stream in streams], warnings.formatwarning
    warnings.formatwarning = _warning_line
    for stream in streams:
        stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        warnings.formatwarning = formatwarning
        for stream, original in zip(streams, errors):
            stream.reconfigure(errors=original)


def main(argv: list[str] | None = None) -> int:
    """Run ``groupconv *argv``; the exit status (bad input exits 2, Ctrl-C 130, before returning)."""
    with _terminal_output():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = args = None
    try:
        parser = _build_parser()  # in the try: Ctrl-C while it imports the subcommands is one line too
        args = parser.parse_args(argv)
        keep_freed_memory()  # fresh tensors reuse freed memory rather than fault pages in (groupconv.memory)
        args.run(args)
    except KeyboardInterrupt:
        _exit(130, "groupconv: interrupted")
    except BrokenPipeError:  # the reader stopped early (`| head`): silence the flush at exit, as Python's docs do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (GroupConvError, TypeError, ValueError, OSError, MemoryError) as error:  # the user's input or files
        reason = " ".join(str(getattr(error, "cli_message", error)).split()) or type(error).__name__
        prog = _subcommand(parser, args).prog if args is not None else "groupconv"
        _exit(2, f"{prog}: error: {reason}")
    except RuntimeError as error:  # PyTorch's allocators raise these when memory runs out
        reason = _out_of_memory(error)
        if reason is None:
            raise
        prog = _subcommand(parser, args).prog if args is not None else "groupconv"
        _exit(2, f"{prog}: error: {reason}")
    return 0


def _out_of_memory(error: RuntimeError) -> str | None:
    """One line for an allocation that failed (a CPU or CUDA allocator's message), else None."""
    message = str(error)
    if not isinstance(error, torch.OutOfMemoryError) and "can't allocate memory" not in message:
        return None
    tried = re.search(r"allocate (\d+) bytes", message)
    size = f" of {int(tried.group(1)) / 2**30:,.1f} GiB" if tried else ""
    return f"out of memory: an allocation{size} failed; use a smaller batch, input or model"


def _exit(status: int, message: str):
    sys.stderr.write(message + "\n")
    sys.exit(status)


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
