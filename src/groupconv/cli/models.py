"""``groupconv summary`` and ``groupconv tune``: any PyTorch model, built in or imported."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from ..errors import GroupConvError
from .common import add_command, check_model_fits, shape

_TEXTS = {  # name: (one-line help, description, examples)
    "summary": (
        "a per-layer table of any PyTorch model, with totals",
        "A per-layer table of a model: type, channels, groups, kernel, parameters, MACs and output shape, with "
        "totals, from one forward pass on zeros; then every convolution whose channel counts would allow more "
        "groups, with what that would save.",
        """examples:
  groupconv summary alexnet-g2
  groupconv summary mobilenet --input 8,1,28,28 --json
  groupconv summary torchvision.models:resnext50_32x4d --input 1,3,224,224""",
    ),
    "tune": (
        "time every route of a model's convolutions and cache the fastest; choose the model's layout",
        "Run the model forward and backward on random input of the given shape (with and without a gradient for "
        "the input), its torch.nn convolutions replaced by groupconv's, channels-first and channels-last. Each "
        "convolution is timed whole as autograd runs it, by every route: PyTorch's own convolution or groupconv's "
        "ops (their formulation per direction timed and checked against the reference), channels-first or "
        "channels-last. A route replaces PyTorch's own only when faster beyond the timings' spread; the choices are "
        "cached on disk ($GROUPCONV_CACHE, else $XDG_CACHE_HOME/groupconv/tune.json, by default under ~/.cache) for "
        "every later run on this machine. "
        "Then the model's forward and backward is timed channels-first against channels-last, and the faster "
        "layout recommended. Prints per layer its route and time against PyTorch's faster layout.",
        """examples:
  groupconv tune resnext
  groupconv tune shufflenet --input 64,1,28,28 --json
  groupconv tune mypackage.models:build --input 8,3,224,224 --retune""",
    ),
}


def register(commands) -> None:
    """Add ``summary`` and ``tune`` to ``commands`` (argparse subparsers)."""
    summary = _add_model_arguments(add_command(commands, "summary", *_TEXTS["summary"], json=True))
    summary.set_defaults(run=_summary)
    tune = _add_model_arguments(add_command(commands, "tune", *_TEXTS["tune"], json=True))
    tune.add_argument("--retune", action="store_true", help="time calls already in the cache again")
    tune.set_defaults(run=_tune)


def _add_model_arguments(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ..models import BUILTIN, DEFAULT_INPUT

    sub.add_argument(
        "model",
        metavar="MODEL",
        help=f"a built-in model ({', '.join(BUILTIN)}) or package.module:callable, a function "
        "that returns a torch.nn.Module (or the module itself); the current directory is searched for "
        "package.module after the installed packages, so a local file cannot stand in for one of them",
    )
    sub.add_argument(
        "--width",
        metavar="W",
        help="a built-in model's channel multiplier (default: the model's own, 0.5 for AlexNet; "
        "groupconv train's AlexNet uses 0.125)",
    )
    sub.add_argument(
        "--input",
        type=shape,
        metavar="N,C,H,W",
        help=f"the input shape (default for built-in models: {_defaults(DEFAULT_INPUT)})",
    )
    return sub


def _defaults(shapes: dict[str, tuple[int, ...]]) -> str:
    """``1,1,28,28`` when every built-in model takes that, else ``name 1,3,32,32, ...``."""
    texts = {name: ",".join(map(str, shape)) for name, shape in shapes.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return ", ".join(f"{name} {text}" for name, text in texts.items())


def _summary(args: argparse.Namespace) -> None:
    from ..reports.summary import summary

    with _prints_aside(args):
        model, input_shape = _model(args, training=False)
        result = summary(model, input_shape, name=args.model)
    print(result.to_json() if args.json else result)


def _tune(args: argparse.Namespace) -> None:
    import torch

    from .. import nn, tuning
    from ..reports.summary import model_failures_in_one_line

    with _prints_aside(args):
        model, input_shape = _model(args, training=True)
        with model_failures_in_one_line(input_shape):
            report = tuning.tune(nn.convert(model), torch.randn(input_shape), retune=args.retune)
    cache = tuning.cache()
    if args.json:
        document = {"schema": "groupconv.tune/4", "model": args.model, "input_shape": list(input_shape)}
        where = {"cache": str(cache.path), "cached": cache.problem is None}
        print(json.dumps({**document, **where, **report.to_dict()}, indent=2))
    else:
        counts = f"{len(report.calls)} calls tuned ({len(report.layers)} layers)"
        where = (
            f"cached in {cache.path}"
            if cache.problem is None
            else f"not cached: {cache.path} cannot be used ({cache.problem})"
        )
        print(f"{report}\n\n{counts}; {where}")


def _prints_aside(args: argparse.Namespace):
    """With --json, what the user's model prints goes to stderr: stdout holds the one JSON document."""
    return contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()


def _model(args: argparse.Namespace, training: bool):
    """The model MODEL names and the input shape to run it on, refused if its activations (kept for the backward
    pass when ``training``) would not fit in memory."""
    from ..reports.summary import load_model

    model, default_input = load_model(args.model, args.width)
    input_shape = args.input or default_input
    if input_shape is None:
        raise GroupConvError(f"model {args.model!r} has no default input shape; give --input N,C,H,W")
    what = f"--input {','.join(map(str, input_shape))} (with {args.model}'s activations)"
    check_model_fits(model, input_shape, what, "use a smaller batch N or image", training)
    return model, input_shape
