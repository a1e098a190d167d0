"""What every subcommand shares: how one is added, ``--json``, and the parsers of sizes and shapes."""

from __future__ import annotations

import argparse
import textwrap

JSON_HELP = "print JSON (schema: docs/cli-json.md) instead of text"


def add_command(
    commands, name: str, help: str, description: str, examples: str | None = None, *, json: bool = False, parents=()
) -> argparse.ArgumentParser:
    """A subcommand with its description wrapped, its examples kept line by line, and ``--json`` if asked."""
    sub = commands.add_parser(
        name,
        parents=list(parents),
        help=help,
        description=textwrap.fill(description, 79),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if json:
        sub.add_argument("--json", action="store_true", help=JSON_HELP)
    return sub


def ints(text: str) -> int | tuple[int, ...]:
    """``3`` -> 3, ``3,5`` -> (3, 5)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def shape(text: str) -> tuple[int, ...]:
    """``1,4,32,32`` or ``1x4x32x32`` -> (1, 4, 32, 32)."""
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape such as 1,4,32,32, got {text!r}") from None
