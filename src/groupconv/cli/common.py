"""What every subcommand shares: how one is added, ``--json``, and the parsers of sizes and shapes."""

from __future__ import annotations

import argparse
import math
import pathlib
import tempfile
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
        sizes = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape such as 1,4,32,32, got {text!r}") from None
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes >= 1, such as 1,4,32,32, got {text!r}")
    return sizes


MAX_WIDTH = 4.0  # AlexNet at width 4 holds ~16x the parameters of the full-width network: a sane ceiling


def positive_int(text: str) -> int:
    """A count: an int >= 1."""
    return _bounded(text, int, "an int >= 1", lambda value: value >= 1)


def nonnegative_int(text: str) -> int:
    """An int >= 0."""
    return _bounded(text, int, "an int >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    """A rate: a finite number > 0."""
    return _bounded(text, float, "a number > 0", lambda value: 0 < value < math.inf)


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    return _bounded(text, float, "a number >= 0", lambda value: 0 <= value < math.inf)


def width(text: str) -> float:
    """A channel multiplier: a number in (0, MAX_WIDTH]."""
    return _bounded(text, float, f"a number > 0 and <= {MAX_WIDTH:g}", lambda value: 0 < value <= MAX_WIDTH)


def _bounded(text: str, kind: type, expected: str, valid) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def writable_dir(text: str) -> str:
    """A folder that exists and is writable, or can be created."""
    path = pathlib.Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder; name a folder to write into")
    _check_writable(path if path.exists() else _existing_parent(path), text)
    return text


def writable_file(text: str) -> str:
    """A file path whose folder exists and is writable (or can be created), and that is not a folder."""
    path = pathlib.Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; name a file to write")
    _check_writable(_existing_parent(path), text)
    return text


def _existing_parent(path: pathlib.Path) -> pathlib.Path:
    """The nearest existing folder above ``path``: where making it would start."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def _check_writable(folder: pathlib.Path, text: str) -> None:
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(folder)!r} is not a folder")
    try:  # a real file, not os.access: root passes os.access on read-only mounts and /proc
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {error.strerror} in {str(folder)!r}") from None


# Every subcommand's arguments are checked by name (argparse's type=), here in one table, before any work starts;
# an argument with a type of its own keeps it. Channels, groups and kernels are left to ConvSpec, whose messages
# name the valid choices.
_COUNTS = ("epochs", "batch_size", "train_subset", "test_subset", "jobs", "ranks", "steps", "permutations", "procs")
CHECKS = {
    **dict.fromkeys((*_COUNTS, "size"), positive_int),
    **dict.fromkeys(("seeds", "warmup", "validation"), nonnegative_int),  # seeds are values, 0 among them
    "lr": positive_float,
    "weight_decay": nonnegative_float,
    "width": width,
    "widths": width,
    "out": writable_dir,
    "output": writable_file,
}


def check_arguments(parser: argparse.ArgumentParser) -> None:
    """Give every untyped or plain int/float argument of ``parser`` and its subcommands its check from CHECKS."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                check_arguments(sub)
        elif action.dest in CHECKS and action.type in (None, int, float) and action.nargs != 0:
            action.type = CHECKS[action.dest]
