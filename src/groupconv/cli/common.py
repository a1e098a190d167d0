"""What every subcommand shares: how one is added, ``--json``, and the parsers of sizes and shapes."""

from __future__ import annotations

import argparse
import functools
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
MAX_INT = 2**63 - 1  # torch's int64: a larger count overflows in its C++ ("Overflow when unpacking long long")
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed takes
MAX_BATCH = 2**20  # more images than any of the data sets holds


def positive_int(text: str, maximum: int = MAX_INT, minimum: int = 1) -> int:
    """A count: an int from ``minimum`` (1) to ``maximum``."""
    value = _bounded(text, int, f"an int >= {minimum}", lambda value: value >= minimum)
    if value > maximum:
        raise argparse.ArgumentTypeError(f"expected an int >= {minimum} and <= {maximum:,}, got {text}")
    return value


def nonnegative_int(text: str, maximum: int = MAX_INT) -> int:
    """An int from 0 to ``maximum``."""
    return positive_int(text, maximum, minimum=0)


def seed(text: str) -> int:
    """A seed: an int that torch.manual_seed takes, 0 and up (0 is the experiments' first seed)."""
    return nonnegative_int(text, MAX_SEED)


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


def check_model_fits(model, input_shape: tuple[int, ...], what: str, fix: str, training: bool = False) -> None:
    """Refuse an input whose activations would not fit: the input and, one forward pass without gradients, the
    largest layer output twice (read and written); training, every output kept for backward and its gradient."""
    from ..reports.summary import activation_bytes
    from ..training.train import check_memory

    outputs = activation_bytes(model, input_shape) or [0]
    itemsize = next((p.element_size() for p in model.parameters() if p.is_floating_point()), 4)
    activations = 2 * (sum(outputs) if training else max(outputs))
    check_memory(what, math.prod(input_shape) * itemsize + activations, fix)


def check_training_fits(config, what: str, fix: str) -> None:
    """Refuse, before any step, a :class:`~groupconv.training.train.TrainConfig` whose training step at its
    batch size (no more than its training subset) would not fit in memory."""
    from ..training.data import DATASETS
    from ..training.train import build_model

    batch = min(config.batch_size, config.train_subset or config.batch_size)
    shape = (batch, *DATASETS[config.dataset].image_shape)
    check_model_fits(build_model(config), shape, what, fix, training=True)


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
_COUNTS = ("epochs", "train_subset", "test_subset", "jobs", "ranks", "permutations", "procs")
CHECKS = {
    **dict.fromkeys((*_COUNTS, "size"), positive_int),
    "batch_size": functools.partial(positive_int, maximum=MAX_BATCH),
    "steps": functools.partial(positive_int, minimum=2),  # the step times' quartiles need two
    **dict.fromkeys(("warmup", "validation"), nonnegative_int),
    **dict.fromkeys(("seed", "seeds"), seed),
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
