"""Autotuning: time every formulation on the real call, keep the fastest, remember it on disk.

The cache is one JSON file (``$GROUPCONV_CACHE``, else ``$XDG_CACHE_HOME/groupconv/tune.json``,
else ``~/.cache/groupconv/tune.json``) mapping a call's key (direction, shapes, geometry,
dtype, layout, device, threads: :func:`groupconv.dispatch.call_key`) to a formulation's
name, under a fingerprint of the machine and versions (CPU model, groupconv, torch, numba).
A file that is corrupt or carries another fingerprint is ignored with a warning and
rebuilt. Writers merge their entries under an exclusive lock and replace the file
atomically, so processes tuning at once lose nothing and never leave half a file.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import formulations
from .layouts import memory_format
from .spec import ConvSpec

FORMAT = 1
ROUTES = ("pytorch", "groupconv")  # a layer's tuned route (groupconv.dispatch): PyTorch whole, or groupconv's ops
# Another formulation must beat PyTorch's own kernel (``native``) by 5% to be chosen over it: a smaller
# difference is within timing noise, and a layer that PyTorch runs in every direction runs without
# groupconv's custom-op overhead and with PyTorch's fused backward (see groupconv.dispatch).
PYTORCH_MARGIN = 0.95
_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("groupconv_tuning", default=None)


@dataclasses.dataclass(frozen=True)
class Tuned:
    """One tuned call: its cache key, what it was, each candidate's median seconds (None: wrong), the winner."""

    key: str
    direction: str
    operands: str  # "(2, 4, 9, 9) x (8, 2, 3, 3)"
    groups: int
    seconds: dict[str, float | None]
    chosen: str

    def to_dict(self) -> dict:
        """The JSON form (docs/cli-json.md, ``groupconv.tune/1``): timings as a list, in dispatch order."""
        timings = [{"formulation": name, "seconds": seconds} for name, seconds in self.seconds.items()]
        fields = dataclasses.asdict(self)
        del fields["seconds"]
        return {**fields, "timings": timings}


@dataclasses.dataclass
class TuneReport:
    """What :func:`tune` decided, one row per distinct call of the model."""

    calls: list[Tuned]

    def __str__(self) -> str:
        names = [name for name in (*formulations.NAMES, *ROUTES) if any(name in call.seconds for call in self.calls)]
        rows = [["direction", "operands", "groups", *(f"{name} ms" for name in names), "chosen"]]
        for call in self.calls:
            times = [_milliseconds(call, name) for name in names]
            rows.append([call.direction, call.operands, str(call.groups), *times, call.chosen])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


@dataclasses.dataclass
class _Session:
    """One :func:`tune` run: the calls it timed, and whether it times cached calls again."""

    calls: list[Tuned]
    retune: bool

    def timed(self, key: str) -> bool:
        return any(call.key == key for call in self.calls)


def cached(key: str) -> str | None:
    """The cached choice for ``key``; None inside a ``retune`` session until it has timed ``key`` itself."""
    session = _session.get()
    if session is not None and session.retune and not session.timed(key):
        return None
    return cache().get(key)


def session_active() -> bool:
    """Whether a :func:`tune` is running."""
    return _session.get() is not None


def enabled() -> bool:
    """Whether a call missing from the cache is tuned now: inside :func:`tune`, or GROUPCONV_TUNE=1."""
    return session_active() or os.environ.get("GROUPCONV_TUNE", "") not in ("", "0")


def tune(model: torch.nn.Module, example_input: torch.Tensor, *, retune: bool = False) -> TuneReport:
    """Time every formulation of every convolution ``model`` runs on ``example_input`` —
    forward, input gradient and weight gradient — and cache the fastest for each; where a
    layer's directions are split between formulations, time the layer whole too (see
    :mod:`groupconv.dispatch`).

    The model runs forward and backward twice: with a gradient for the input, and without,
    as a training step runs it (the first layer's route can differ). It runs in eval mode
    (running statistics untouched) and its parameters' ``.grad`` are left as they were.
    Calls already in the cache are not timed again, unless ``retune`` (after the machine was
    busy, say): then each is timed anew.

    Example:
        >>> import groupconv, torch
        >>> layer = groupconv.nn.Conv2d(8, 8, 3, groups=4)
        >>> report = groupconv.tune(layer, torch.randn(2, 8, 10, 10), retune=True)
        >>> {"forward", "input_grad", "weight_grad"} <= {call.direction for call in report.calls}
        True
    """
    session = _Session([], retune)
    token = _session.set(session)
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for input_needs_grad in (True, False):
            _forward_backward(model, example_input.detach().requires_grad_(input_needs_grad))
    finally:
        _session.reset(token)
        for module, training in modes.items():
            module.training = training
    return TuneReport(session.calls)


def _forward_backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    """One forward, and a backward to every input that needs a gradient, leaving no ``.grad``."""
    outputs = [t for t in _tensors(model(x)) if t.requires_grad]
    wrt = [t for t in (x, *model.parameters()) if t.requires_grad]
    if outputs and wrt:
        cotangents = [torch.randn_like(t) for t in outputs]  # dense, like a real backward's
        torch.autograd.grad(outputs, wrt, cotangents, allow_unused=True)


def tune_layer(key: str, runs: dict[str, Callable[[], object]], operands: str, groups: int, device) -> str:
    """Time a layer's forward and backward each way in ``runs`` (a :data:`ROUTES` name each), cache the fastest."""
    for run in runs.values():
        run()  # the warm-up: compiles, allocates
    seconds = _interleaved_medians(runs, device)
    chosen = min(seconds, key=seconds.get)
    _record(Tuned(key, "layer", operands, groups, seconds, chosen))
    return chosen


def tune_call(key: str, direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> str:
    """Time each formulation that supports this call, check it against the reference, cache the fastest."""
    expected = getattr(formulations.load(formulations.REFERENCE), direction)(a, b, spec, *rest)
    runs: dict[str, Callable[[], object] | None] = {}
    for name in formulations.NAMES:
        module = formulations.load(name)
        if module.supports(spec, a):
            run = functools.partial(_as_the_op_answers, getattr(module, direction), direction, a, b, spec, *rest)
            agrees = _close(run(), expected)  # also the warm-up: compiles, allocates
            runs[name] = run if agrees else None
            if not agrees:
                message = f"groupconv: formulation {name!r} disagrees with the reference on {key}; not used"
                warnings.warn(message, stacklevel=2)
    timed = _interleaved_medians({name: run for name, run in runs.items() if run is not None}, a.device)
    seconds = {name: timed.get(name) for name in runs}  # None: wrong
    chosen = min(timed, key=timed.get)
    if "native" in timed and timed[chosen] > PYTORCH_MARGIN * timed["native"]:
        chosen = "native"
    _record(Tuned(key, direction, f"{tuple(a.shape)} x {tuple(b.shape)}", spec.groups, seconds, chosen))
    return chosen


def _as_the_op_answers(compute: Callable, direction: str, a: torch.Tensor, *operands) -> torch.Tensor:
    """A formulation's result in the layout groupconv's op returns it (see groupconv.ops), so that a
    formulation computing in another layout is timed with its conversion back."""
    layout = torch.contiguous_format if direction == "weight_grad" else memory_format(a)
    return compute(a, *operands).contiguous(memory_format=layout)


def _record(tuned: Tuned) -> None:
    """Cache a tuned choice, and report it to the :func:`tune` running, if any."""
    cache().put(tuned.key, tuned.chosen)
    session = _session.get()
    if session is not None:
        session.calls.append(tuned)


class Cache:
    """The on-disk tuning cache of one file, with an in-memory copy."""

    def __init__(self, path: Path):
        self.path = path
        self.entries = self._read(warn=True)
        self.decisions: dict = {}  # what callers derived from the entries (groupconv.dispatch), dropped as they change

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, name: str) -> None:
        """Record ``key -> name``, merged with whatever other processes wrote meanwhile."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_name(self.path.name + ".lock")):
            self.entries = {**self._read(warn=False), key: name}
            self.decisions.clear()
            document = {"fingerprint": fingerprint(), "entries": self.entries}
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".tune-", delete=False) as temp:
                json.dump(document, temp, indent=1, sort_keys=True)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp.name, self.path)

    def _read(self, *, warn: bool) -> dict[str, str]:
        """The file's entries; empty (with a warning) when it is corrupt or another machine's or version's."""
        try:
            document = json.loads(self.path.read_text())
            problem = None if document["fingerprint"] == fingerprint() else "it was made by another machine or version"
            entries = document["entries"]
            if not all(isinstance(k, str) and v in (*formulations.NAMES, *ROUTES) for k, v in entries.items()):
                problem = "it holds unknown entries"
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"it is not a tuning cache ({type(error).__name__}: {error})"
        if problem is None:
            return entries
        if warn:
            message = f"groupconv: ignoring the tuning cache {self.path}: {problem}; it will be rebuilt"
            warnings.warn(message, stacklevel=2)
        return {}


def cache() -> Cache:
    """The cache at the current path (``GROUPCONV_CACHE`` and ``XDG_CACHE_HOME`` are read on every call)."""
    return _cache_at(os.environ.get("GROUPCONV_CACHE"), os.environ.get("XDG_CACHE_HOME"))


def cache_path() -> Path:
    return cache().path


@functools.cache
def _cache_at(explicit: str | None, cache_home: str | None) -> Cache:
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return Cache(Path(explicit) if explicit else base / "groupconv" / "tune.json")


@functools.cache
def fingerprint() -> dict[str, str]:
    """What a tuned choice depends on beyond the call itself."""
    versions = {name: _version(name) for name in ("groupconv", "torch", "numba")}
    return {"format": str(FORMAT), "cpu": _cpu_model(), **versions}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _interleaved_medians(
    runs: dict[str, Callable[[], object]], device: torch.device, budget: float = 0.25
) -> dict[str, float]:
    """Each run's median wall time, the runs taken in turn, round after round: at least 3 rounds, more
    while they fit in ``budget`` seconds per run (up to 25). Timed in turn, all meet the same state of
    the machine: alone in a loop, a call that allocates a large output page-faults afresh on every
    repeat on some machines (the allocator hands the memory back each time) and on others never."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    rounds, spent = 0, 0.0
    while rounds < 3 or (spent < budget * len(runs) and rounds < 25):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        rounds += 1
    return {name: statistics.median(values) for name, values in times.items()}


def _close(result: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal to rounding: relative to the reference's largest magnitude, NaN where it has NaN."""
    tolerance = 1e-4 if expected.dtype == torch.float32 else 1e-10
    scale = expected.abs().nan_to_num(0, 0, 0).max().item() if expected.numel() else 0.0
    atol = tolerance * scale + torch.finfo(expected.dtype).tiny
    return result.shape == expected.shape and torch.allclose(result, expected, rtol=0, atol=atol, equal_nan=True)


def _tensors(output: object) -> list[torch.Tensor]:
    """The tensors in a model's output (a tensor, or nested tuples/lists/dicts of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _milliseconds(call: Tuned, name: str) -> str:
    if name not in call.seconds:
        return "-"  # does not support the call
    seconds = call.seconds[name]
    return "wrong" if seconds is None else f"{seconds * 1e3:.3f}"
