"""Autotuning: time each layer as autograd runs it, keep what is faster beyond the noise, remember it on disk.

A layer's candidates are whole routes (:data:`ROUTES`): PyTorch's own convolution or
groupconv's ops, each computing channels-first or channels-last (converted at the layer's
boundary when the input is in the other layout), each run forward and then backward to
what autograd will ask of the layer. Groupconv's ops pick a formulation per direction
(timed per call, :func:`tune_call`), and the whole layer is timed with whatever they picked.
PyTorch in the input's layout is the incumbent: another route replaces it only when
:func:`groupconv.timing.beats` it, so a near-tie resolves to PyTorch's own route.

The cache is one JSON file (``$GROUPCONV_CACHE``, or ``tune.json`` inside it if it ends in ``/``;
else ``$XDG_CACHE_HOME/groupconv/tune.json``, else ``~/.cache/groupconv/tune.json``; read as a call
is first routed, so set it before a process's first convolution) of sections, one per fingerprint of the machine and
versions (CPU model, groupconv, torch): every virtual environment of a user shares
the file and keeps its own section. A section maps a call's key
(:func:`groupconv.dispatch.call_key`) to a formulation's or route's name. Writers merge their
own section under an exclusive lock and replace the file atomically, keeping its permissions
(a symbolic link is written through, not replaced). A cache location that cannot be used (not a
regular file, unreadable, read-only, unwritable, not a tuning cache, too large) gives one warning,
and the process runs untuned, leaving the file as it is: choices made in it last only as long as
the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import errno
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

import torch

from . import formulations, machine, memory, timing
from .errors import GroupConvError
from .layouts import CHANNELS_LAST, memory_format
from .spec import ConvSpec
from .tables import text_table
from .timing import Timing

FORMAT = 2
LAYOUTS = ("channels_first", "channels_last")
ROUTES = tuple(f"{engine}_{layout}" for engine in ("pytorch", "groupconv") for layout in LAYOUTS)  # a layer's route
# a whole training step timed in paired rounds is steadier than a layer's call, and a few percent of every step is
# worth a conversion done once (docs/design.md, "Planner")
LAYOUT_MARGIN = 0.02
_FAULTING_STEP = 1024  # page faults per training step (4 MiB of fresh pages) worth a warning
_ROUTES_NOTED = 4096  # layers whose route :func:`note_route` keeps (ever-new shapes must not grow it forever)
_LARGEST_CACHE = 64 << 20  # bytes: ~300,000 entries; a larger file is no tuning cache, and is never read whole
_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("groupconv_tuning", default=None)
_routes_taken: dict[str, dict[str, object]] = {}
_SHORT = {"forward": "fwd", "input_grad": "dx", "weight_grad": "dw"}  # a layer's directions in the report's table


@dataclasses.dataclass(frozen=True)
class Tuned:
    """One tuned call or layer: its cache key, what it was, each candidate's timing (None: wrong), the winner."""

    key: str
    direction: str  # forward, input_grad, weight_grad, or layer: the whole layer forward and backward
    directions: tuple[str, ...]  # what it computes: the direction, or a layer's (its output's first)
    layout: str  # the input's: channels_first or channels_last
    operands: str  # "(2, 4, 9, 9) x (8, 2, 3, 3)"
    groups: int
    timings: dict[str, Timing | None]
    chosen: str

    @property
    def pytorch_best(self) -> str | None:
        """The faster of PyTorch's routes (a layer's) or formulations (a direction's), by median."""
        pytorch = {"pytorch_channels_first", "pytorch_channels_last", "native", "native_channels_last"}
        timed = {name: t.median_s for name, t in self.timings.items() if t is not None and name in pytorch}
        return min(timed, key=timed.get) if timed else None

    @property
    def speedup(self) -> float | None:
        """PyTorch's best median over the chosen one's (1.0 where PyTorch's route is chosen)."""
        best, chosen = self.pytorch_best, self.timings.get(self.chosen)
        return None if best is None or chosen is None else self.timings[best].median_s / chosen.median_s

    def to_dict(self) -> dict:
        """The JSON form (docs/cli-json.md, ``groupconv.tune/4``): timings as a list, in the order timed."""
        timings = [{"candidate": name, **_timing_dict(t)} for name, t in self.timings.items()]
        names = ("key", "direction", "layout", "operands", "groups", "chosen")
        fields = {name: getattr(self, name) for name in names}
        return {
            **fields,
            "directions": list(self.directions),
            "timings": timings,
            "pytorch_best": self.pytorch_best,
            "speedup": self.speedup,
        }


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """The layout :func:`tune` recommends for the whole model, from its training step timed both ways."""

    input_layout: str
    chosen: str
    timings: dict[str, Timing]
    applied: bool
    page_faults: float | None = None  # per training step: fresh pages the allocator mapped in (None: unknown)

    def __str__(self) -> str:
        times = ", ".join(f"{name} {_ms(t)}" for name, t in self.timings.items())
        advice = "" if self.chosen == self.input_layout else (
            " (convert the model with model.to(memory_format=torch.channels_last) and its input alike"
            if self.chosen == "channels_last" else " (give the model channels-first input and parameters"
        ) + (", done for the parameters)" if self.applied else ")")  # fmt: skip
        faults = "" if self.page_faults is None else f"; {self.page_faults:,.0f} page faults per step"
        return f"model layout: {self.chosen}{advice}; training step {times}{faults}"

    def to_dict(self) -> dict:
        timings = [{"layout": name, **_timing_dict(t)} for name, t in self.timings.items()]
        return {
            "input_layout": self.input_layout, "chosen": self.chosen, "applied": self.applied, "timings": timings,
            "page_faults_per_step": self.page_faults,
        }  # fmt: skip


@dataclasses.dataclass
class TuneReport:
    """What :func:`tune` decided: every call and layer it timed, and the model's layout."""

    calls: list[Tuned]
    layout: ModelLayout | None = None

    @property
    def layers(self) -> list[Tuned]:
        return [call for call in self.calls if call.direction == "layer"]

    def __str__(self) -> str:
        headers = ["layout", "operands", "groups", "directions", "route", "time", "PyTorch's best", "speedup"]
        rows = []
        for layer in self.layers:
            best = layer.pytorch_best
            directions = "+".join(map(_SHORT.get, layer.directions))
            rows.append([
                layer.layout, layer.operands, str(layer.groups), directions, layer.chosen,
                _ms(layer.timings[layer.chosen]), "-" if best is None else f"{_ms(layer.timings[best])} ({best})",
                "-" if layer.speedup is None else f"{layer.speedup:.2f}x",
            ])  # fmt: skip
        if rows:
            table = text_table(headers, rows, "<<><<>>>")
        else:
            table = "No convolution timed: the model has none of groupconv's, or all are cached (retune times them)."
        return table if self.layout is None else f"{self.layout}\n\n{table}"

    def to_dict(self) -> dict:
        return {
            "layout": None if self.layout is None else self.layout.to_dict(),
            "calls": [call.to_dict() for call in self.calls],
        }


@dataclasses.dataclass
class _Session:
    """One :func:`tune` run: what it timed, its choices (cached when it succeeds), and whether it times now."""

    calls: list[Tuned]
    retune: bool
    pending: dict[str, str]
    tuning: bool = True


def cached(key: str, choices: Collection[str]) -> str | None:
    """The cached choice for ``key``: the running :func:`tune`'s own first, then (unless it retunes) the cache's;
    None where the cache holds a name that is not one of ``choices`` (a hand-edited file)."""
    session = _session.get()
    if session is not None and key in session.pending:
        return session.pending[key]
    if session is not None and session.retune and session.tuning:
        return None
    name = cache().get(key)
    return name if name in choices else None


@contextlib.contextmanager
def apart() -> Iterator[None]:
    """Timing inside a model's run, leaving the run as it was: the global random state (a seeded run draws
    alike, tuned or not) and the saved-tensor hooks (torch.utils.checkpoint would take the timing's tensors for
    the layer's, and refuse the layer's recompute)."""
    with torch.random.fork_rng(), torch.autograd.graph.saved_tensors_hooks(_unchanged, _unchanged):
        yield


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def session_active() -> bool:
    """Whether a :func:`tune` is running."""
    return _session.get() is not None


def enabled() -> bool:
    """Whether a call missing from the cache is tuned now: inside :func:`tune`, or GROUPCONV_TUNE=1 (or true,
    yes, on); 0, false, no, off or unset is off, and any other value is off with a warning, once."""
    session = _session.get()
    if session is not None:
        return session.tuning
    return _switch(os.environ.get("GROUPCONV_TUNE", ""))


@functools.cache
def _switch(value: str) -> bool:
    """An environment variable's yes or no."""
    word = value.strip().lower()
    if word not in (*_ON, *_OFF):
        warnings.warn(
            f"groupconv: GROUPCONV_TUNE={value!r} is neither 1 nor 0; tuning stays off (set 1, true, yes or on "
            "to tune)",
            stacklevel=4,
        )
    return word in _ON


_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def tune(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    retune: bool = False,
    layout: bool = True,
    apply_layout: bool = False,
) -> TuneReport:
    """Time every route of every convolution ``model`` runs on ``example_input``, as autograd runs
    it, and cache the fastest beyond the noise (PyTorch's own route on a near-tie); then, unless not
    ``layout``, time the model's forward and backward channels-first against channels-last (as
    ``model.to(memory_format=torch.channels_last)`` would run it, on channels-last input) and say
    which to use. With ``apply_layout`` the model's parameters are converted to the chosen layout
    (its input is the caller's to convert).

    The model runs forward alone (inference), and forward and backward with a gradient for the input
    and without, as a training step runs it (the first layer's route can differ), in each layout: its
    layers in eval mode, its training step in the mode it is in (train: batch statistics, as training
    runs them). Its buffers (running statistics) and its parameters' ``.grad`` are left as they were.
    Calls already in the cache are not timed again, unless ``retune`` (after the machine was busy, say).

    Raises GroupConvError, caching nothing, when ``example_input`` or the model's output on it is
    not finite: timings of overflowing data judge nothing.

    Example:
        >>> import groupconv, torch
        >>> layer = groupconv.nn.Conv2d(8, 8, 3, groups=4)
        >>> report = groupconv.tune(layer, torch.randn(2, 8, 10, 10), retune=True, layout=False)
        >>> {route.chosen for route in report.layers} <= set(ROUTES)
        True
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor that model takes, got {type(example_input).__name__}")
    _warn_if_unconverted(model)
    x = example_input.detach()
    other = _other_layout(model, x) if layout else None
    twin = None if other is None else _twin(model, other)
    other = None if twin is None else other
    with torch.random.fork_rng():  # seeded runs draw alike, tuned or not
        with _eval_mode(model), _eval_mode(twin):
            _check_finite(model, x)
            session = _Session([], retune, {})
            token = _session.set(session)
            try:
                _every_way(model, x)
                if twin is not None:
                    _every_way(twin, x.contiguous(memory_format=other))
            finally:
                _session.reset(token)
        cache().put_many(session.pending)
        _warn_if_noisy(session.calls)
        decision = None if twin is None else _timed_layout(model, twin, x, other)
    if decision is not None and apply_layout:
        model.to(memory_format=other if decision.chosen != layout_name(x) else memory_format(x))
        decision = dataclasses.replace(decision, applied=True)
    return TuneReport(session.calls, decision)


_TORCH_CONVS = tuple(getattr(torch.nn, f"{kind}{dims}d") for kind in ("Conv", "ConvTranspose") for dims in (1, 2, 3))


def _warn_if_unconverted(model: torch.nn.Module) -> None:
    """Warn of torch.nn's own conv modules in ``model``: they run on PyTorch, so tuning has nothing to time there."""
    unconverted = sum(type(module) in _TORCH_CONVS for module in model.modules())
    if unconverted:
        warnings.warn(
            f"groupconv: {unconverted} conv module(s) of the model are torch.nn's, which run on PyTorch and are not "
            "tuned; convert the model first: groupconv.nn.convert(model)",
            stacklevel=3,
        )


def _twin(model: torch.nn.Module, layout: torch.memory_format) -> torch.nn.Module | None:
    """A copy of ``model`` in ``layout`` to time beside it, or None, with a warning, where it cannot be copied."""
    try:
        return copy.deepcopy(model).to(memory_format=layout)
    except Exception as error:
        warnings.warn(
            f"groupconv: cannot copy the model to time it in the other layout ({type(error).__name__}: {error}); "
            "its layout is not judged",
            stacklevel=3,
        )
        return None


def _other_layout(model: torch.nn.Module, x: torch.Tensor) -> torch.memory_format | None:
    """The memory format other than x's, where its rank has a channels-last one that ``model.to`` can give every
    weight (not a model mixing 2-D and 3-D layers, nor a 3-D one on unbatched input)."""
    channels_last = CHANNELS_LAST.get(x.dim() - 2)
    tensors = itertools.chain(model.parameters(), model.buffers())
    if channels_last is None or any(t.dim() in (4, 5) and t.dim() != x.dim() for t in tensors):
        return None
    return torch.contiguous_format if memory_format(x) is channels_last else channels_last


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module | None) -> Iterator[None]:
    modes = {} if model is None else {module: module.training for module in model.modules()}
    try:
        if model is not None:
            model.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def _buffers_kept(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model``'s buffers back afterwards: a training step in train mode updates its running statistics."""
    kept = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in kept:
                buffer.copy_(value)


def _noisy(tuned: Tuned) -> bool:
    """Whether a decision's timings stayed more spread than the timer allows, even timed again."""
    spreads = {name: t for name, t in tuned.timings.items() if t is not None}
    return timing.worst_spread(spreads) > timing.TUNING.retime_spread


def _warn_if_noisy(calls: list[Tuned]) -> None:
    noisy = sum(map(_noisy, calls))
    if noisy:
        warnings.warn(
            f"groupconv: {noisy} of {len(calls)} tuning decisions had timings spread more than "
            f"{timing.TUNING.retime_spread:.0%} (a busy machine): near-ties went to PyTorch's own route; "
            "tune again with retune=True on a quiet machine to judge them",
            stacklevel=3,
        )


def _check_finite(model: torch.nn.Module, x: torch.Tensor) -> None:
    """GroupConvError unless ``x`` and the model's outputs on it are finite (run untuned, nothing cached)."""
    limit = math.sqrt(torch.finfo(x.dtype).max) if x.is_floating_point() else math.inf
    problem = None
    if not torch.isfinite(x).all():
        problem = "example_input holds inf or NaN"
    elif _peak(x) > limit:  # products of two such values overflow: every candidate's result would be inf
        problem = f"example_input reaches {_peak(x):.3g}, beyond {limit:.3g} where a convolution's products overflow"
    if problem is None:
        token = _session.set(_Session([], False, {}, tuning=False))
        try:
            with torch.no_grad():
                outputs = _tensors(model(x))
        finally:
            _session.reset(token)
        if not all(torch.isfinite(t).all() for t in outputs if t.is_floating_point()):
            problem = f"the model's output overflows to inf or NaN on example_input (largest |value| {_peak(x):.3g})"
    if problem is not None:
        raise GroupConvError(f"cannot tune: {problem}; tune on a batch of real, normalised data (values of order 1)")


def _every_way(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Run the model as inference and as training steps with and without an input gradient: each asks its
    layers for other directions, so each is a layer route of its own."""
    with torch.no_grad():
        model(x)
    differentiable = x.is_floating_point() or x.is_complex()  # token ids, say, have no gradient
    for input_needs_grad in (True, False) if differentiable else (False,):
        _forward_backward(model, x.detach().requires_grad_(input_needs_grad))


def _forward_backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    """One forward, and a backward to every input that needs a gradient, leaving every ``.grad`` as it was.
    By ``backward``, as a training step runs, not ``autograd.grad``: a reentrant checkpoint refuses that."""
    outputs = [t for t in _tensors(model(x)) if t.requires_grad]
    if not outputs:
        return
    kept = {parameter: parameter.grad for parameter in model.parameters()}
    try:
        for parameter in kept:
            parameter.grad = None
        torch.autograd.backward(outputs, [torch.randn_like(t) for t in outputs])  # dense, like a real backward's
    finally:
        for parameter, grad in kept.items():
            parameter.grad = grad


def _timed_layout(model, twin, x: torch.Tensor, other: torch.memory_format) -> ModelLayout:
    """:func:`_model_layout` in the model's own mode, its buffers kept; in eval mode where train mode refuses the
    example (batch statistics of a single value, say)."""
    with _buffers_kept(model):
        try:
            return _model_layout(model, twin, x, other)
        except (RuntimeError, ValueError):
            if not model.training:
                raise
        with _eval_mode(model), _eval_mode(twin):
            return _model_layout(model, twin, x, other)


def _model_layout(model, twin, x: torch.Tensor, other: torch.memory_format) -> ModelLayout:
    """Time the model's forward and backward (to its parameters, as a training step) in x's layout and,
    by its ``twin``, in the ``other``."""
    x_other = x.contiguous(memory_format=other)
    other_name = "channels_first" if other is torch.contiguous_format else "channels_last"  # x_other may be both
    steps = {
        layout_name(x): functools.partial(_forward_backward, model, x),
        other_name: functools.partial(_forward_backward, twin, x_other),
    }
    runs, faults_before = [], memory.page_faults()
    timings = timing.interleaved({name: _counted(steps[name], runs) for name in sorted(steps)}, timing.TUNING)
    faults = None if faults_before is None else (memory.page_faults() - faults_before) / len(runs)
    _warn_if_faulting(faults)
    incumbent = layout_name(x)
    return ModelLayout(incumbent, decide(timings, incumbent, LAYOUT_MARGIN), timings, applied=False, page_faults=faults)


def _counted(step: Callable[[], None], runs: list) -> Callable[[], None]:
    """``step``, noting each run in ``runs``."""

    def run() -> None:
        runs.append(step)
        step()

    return run


def _warn_if_faulting(faults_per_step: float | None) -> None:
    """Say how to stop the allocator faulting fresh pages in, where a step takes more than a few MB of them."""
    if faults_per_step is None or faults_per_step < _FAULTING_STEP or memory.kept():
        return
    warnings.warn(
        f"groupconv: each training step mapped in {faults_per_step * memory.PAGE_BYTES / 2**20:,.0f} MB of fresh "
        f"pages ({faults_per_step:,.0f} page faults): the C library gives freed tensors' memory back to the OS and "
        "faults it in again, which can cost more than the convolutions; call groupconv.keep_freed_memory() once "
        "before training (see groupconv.memory)",
        stacklevel=4,
    )


def decide(timings: Mapping[str, Timing | None], incumbent: str, margin: float = timing.MARGIN) -> str:
    """``incumbent`` unless another candidate beats it beyond the measured spread and ``margin``
    (:func:`timing.beats`); candidates are tried in order, each replacing the choice only when it beats it,
    so near-ties keep the earlier one: the same choice however the noise falls, within the margin."""
    timed = {name: t for name, t in timings.items() if t is not None}
    chosen = incumbent if incumbent in timed else min(timed, key=lambda name: timed[name].median_s)
    for name, candidate in timed.items():
        if timing.beats(candidate, timed[chosen], margin):
            chosen = name
    return chosen


def tune_layer(
    key: str,
    runs: Mapping[str, Callable[[], object]],
    incumbent: str,
    directions: tuple[str, ...],
    operands: str,
    groups: int,
) -> str:
    """Time a layer's forward and backward by each route in ``runs`` (a :data:`ROUTES` name each) and
    cache the one :func:`decide` picks against ``incumbent``, PyTorch's own route. The first, untimed,
    run of each route also tunes its ops' directions."""
    timings = timing.interleaved(runs, timing.TUNING)
    chosen = decide(timings, incumbent)
    _record(Tuned(key, "layer", directions, incumbent.partition("_")[2], operands, groups, dict(timings), chosen))
    return chosen


def _record(tuned: Tuned) -> None:
    """Keep a tuned choice: for the :func:`tune` running (cached when it succeeds), else in the cache now."""
    session = _session.get()
    if session is None:
        cache().put(tuned.key, tuned.chosen)
        _warn_if_noisy([tuned])
    else:
        session.pending[tuned.key] = tuned.chosen
        session.calls.append(tuned)


def tune_call(key: str, direction: str, a: torch.Tensor, b: torch.Tensor, spec: ConvSpec, *rest) -> str | None:
    """Time each formulation that supports this call, check it against the reference, cache the
    fastest beyond the noise (``native``, PyTorch's kernel, on a near-tie). None, caching nothing,
    when the reference's result is not finite (inside :func:`tune`: GroupConvError)."""
    expected = getattr(formulations.load(formulations.REFERENCE), direction)(a, b, spec, *rest)
    if not _judgeable(expected, key):
        return None
    runs: dict[str, Callable[[], object] | None] = {}
    for name in formulations.NAMES:
        module = formulations.load(name)
        if module.supports(spec, a):
            run = functools.partial(_as_the_op_answers, getattr(module, direction), direction, a, b, spec, *rest)
            agrees = _close(run(), expected)  # also a first warm-up: compiles, allocates
            runs[name] = run if agrees else None
            if not agrees:
                message = f"groupconv: formulation {name!r} disagrees with the reference on {key}; not used"
                warnings.warn(message, stacklevel=2)
    timed = timing.interleaved({name: run for name, run in runs.items() if run is not None}, timing.TUNING)
    timings = {name: timed.get(name) for name in runs}  # None: wrong
    chosen = decide(timings, "native")
    operands = f"{tuple(a.shape)} x {tuple(b.shape)}"
    _record(Tuned(key, direction, (direction,), layout_name(a), operands, spec.groups, timings, chosen))
    return chosen


def _judgeable(expected: torch.Tensor, key: str) -> bool:
    """Whether a call's reference result is finite; inside :func:`tune` a non-finite one is an error."""
    if torch.isfinite(expected).all():
        return True
    message = f"cannot tune {key}: its result overflows to inf or NaN"
    if session_active():
        raise GroupConvError(f"{message}; tune on a batch of real, normalised data (values of order 1)")
    warnings.warn(f"groupconv: {message}; left untuned", stacklevel=3)
    return False


def layout_name(t: torch.Tensor) -> str:
    """ "channels_last" for a channels-last tensor (and its 3-D twin), else "channels_first"."""
    return "channels_first" if memory_format(t) is torch.contiguous_format else "channels_last"


def _as_the_op_answers(compute: Callable, direction: str, a: torch.Tensor, *operands) -> torch.Tensor:
    """A formulation's result in the layout groupconv's op returns it (see groupconv.ops), so that a
    formulation computing in another layout is timed with its conversion back."""
    layout = torch.contiguous_format if direction == "weight_grad" else memory_format(a)
    return compute(a, *operands).contiguous(memory_format=layout)


def note_route(key: str, route: str, tuned: bool) -> None:
    """Remember the route a layer took in this process, outside :func:`tune` (see :func:`decisions_summary`)."""
    if len(_routes_taken) < _ROUTES_NOTED and not session_active():
        _routes_taken[key] = {"layer": key, "route": route, "tuned": tuned}


def decisions_summary() -> dict[str, object]:
    """The routes this process's layers took (tuned: from the cache or tuned now; else the untuned
    default), and the cache they came from: what a run's metrics record so two runs can be compared."""
    routes = sorted(_routes_taken.values(), key=lambda route: str(route["layer"]))
    return {"cache": str(cache_path()), "tuned": sum(bool(route["tuned"]) for route in routes), "routes": routes}


class _Unusable(Exception):
    """The cache location cannot be used; the message says why."""


class Cache:
    """The on-disk tuning cache of one file: this environment's section of it, in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.problem: str | None = None  # why the file cannot be used (warned once); then nothing touches it
        self.entries: dict[str, str] = {}
        self._unsaved: dict[str, str] = {}  # what this process chose since it last wrote: all it may overwrite
        self._writing = threading.Lock()  # the file's lock is per process: threads tuning at once take turns here
        self._attempt(self._load)

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, name: str) -> None:
        self.put_many({key: name})

    def put_many(self, entries: Mapping[str, str]) -> None:
        """Record ``entries`` (in memory always; on disk unless the location is unusable), merged under the lock
        with whatever other processes wrote meanwhile; other environments' sections are kept as they are."""
        if entries:
            with self._writing:
                self.entries = {**self.entries, **entries}
                self._unsaved = {**self._unsaved, **entries}
                remembered.clear()
                self._attempt(self._write)

    def _load(self) -> None:
        self.entries = self._own_entries(self._read(), warn=True)

    def _write(self) -> None:
        target = Path(os.path.realpath(self.path))  # a symbolic link is written through, never replaced
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.with_name(target.name + ".lock")):
            document = self._read() or {"sections": {}}
            on_disk = document["sections"].get(_section_id(), {}).get("entries", {})  # as written, unknown ones too
            self.entries = {**self._own_entries(document, warn=False), **self._unsaved}
            own = {"fingerprint": fingerprint(), "entries": {**on_disk, **self._unsaved}}
            _replace(target, {**document, "format": FORMAT, "sections": {**document["sections"], _section_id(): own}})
        self._unsaved = {}

    def _attempt(self, action: Callable[[], None]) -> None:
        """Run ``action`` unless the location is known unusable; an OSError in it makes it so, with one warning."""
        if self.problem is not None:
            return
        try:
            action()
        except (OSError, _Unusable) as error:
            self.problem = str(error) if isinstance(error, _Unusable) else _os_problem(error, self.path)
            warnings.warn(
                f"groupconv: the tuning cache {self.path} cannot be used ({self.problem}); running untuned. "
                "Move it away, or set GROUPCONV_CACHE to a regular file in a writable directory",
                stacklevel=4,
            )

    def _read(self) -> dict | None:
        """The file's document with its sections (a format-1 file: one section); None when there is no file.
        Raises _Unusable when the path is no regular file or holds something else: never rebuilt over."""
        content = _read_regular(self.path)
        if content is None:
            return None
        if not content.strip():
            return None  # an empty file (touched, say): no entries yet
        try:
            document = json.loads(content)
            if document.get("format", 1) > FORMAT:
                raise _Unusable(f"a newer groupconv wrote it (format {document['format']}, this one reads {FORMAT})")
            if "sections" not in document:  # format 1: one environment's entries
                document = {"sections": {_section_id(document["fingerprint"]): document}}
            for section in document["sections"].values():
                if not (isinstance(section["fingerprint"], dict) and isinstance(section["entries"], dict)):
                    raise TypeError("a section's fingerprint and entries must be objects")
            return document
        except json.JSONDecodeError as error:
            raise _Unusable(f"it is not JSON: {error.msg}, line {error.lineno}") from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise _Unusable("it is not a tuning cache: no sections of fingerprints and entries") from None

    def _own_entries(self, document: dict | None, *, warn: bool) -> dict[str, str]:
        """This environment's entries in ``document``; none (with a warning) if some are unknown."""
        if document is None:
            return {}
        entries = document["sections"].get(_section_id(), {}).get("entries", {})
        if all(isinstance(k, str) and v in (*formulations.NAMES, *ROUTES) for k, v in entries.items()):
            return entries
        if warn:
            warnings.warn(f"groupconv: ignoring the tuning cache {self.path}: it holds unknown entries", stacklevel=5)
        return {}


def _os_problem(error: OSError, path: Path) -> str:
    """An OSError in words, naming the path it concerns where that is not the cache file (its lock, its folder)."""
    where = "" if error.filename in (None, os.fspath(path)) else f": {error.filename}"
    return f"{error.strerror or error}{where}"


def _replace(path: Path, document: dict) -> None:
    """Write ``document`` to a temporary file beside ``path`` and rename it over ``path``, with its permissions."""
    mode = _permissions(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tune-", delete=False) as temp:
        try:
            os.fchmod(temp.fileno(), mode)
            json.dump(document, temp, indent=1, sort_keys=True)
            temp.flush()
            os.fsync(temp.fileno())
        except BaseException:
            os.unlink(temp.name)
            raise
    os.replace(temp.name, path)


def _permissions(path: Path) -> int:
    """The permissions the file at ``path`` keeps when replaced (rw-r--r-- for a new one). Raises _Unusable for
    a file this process may not write: renaming over it would succeed, and drop what its mode says."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o644
    if not os.access(path, os.W_OK):
        raise _Unusable("it is read-only")
    return mode


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file; None when there is nothing there. Raises _Unusable
    for anything else: a FIFO is never opened (no hang), a device never read nor replaced."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise _Unusable("it is not a regular file")
    if status.st_size > _LARGEST_CACHE:
        raise _Unusable(f"it holds {status.st_size >> 20} MiB, more than any tuning cache")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # NONBLOCK: a FIFO swapped in since
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise _Unusable("it is not a regular file")
        return handle.read()


remembered: dict = {}
"""What callers derived from the current cache's entries, per call (:mod:`groupconv.functional`'s
routes): a remembered call skips the cache, and the environment, altogether. Cleared whenever the
entries change or another cache becomes the current one."""


_current: Cache | None = None


def cache() -> Cache:
    """The cache at the current path (``GROUPCONV_CACHE`` and ``XDG_CACHE_HOME`` are read on every call of
    this function: when a call is routed or tuned, not when a remembered call runs again)."""
    global _current
    found = _cache_at(os.environ.get("GROUPCONV_CACHE"), os.environ.get("XDG_CACHE_HOME"))
    if found is not _current:
        remembered.clear()
        _current = found
    return found


def cache_path() -> Path:
    return cache().path


@contextlib.contextmanager
def scratch_cache() -> Iterator[Path]:
    """Tune into a fresh, empty cache file for the block, then delete it: each benchmark run decides
    afresh, and the user's cache is left as it was."""
    previous = os.environ.get("GROUPCONV_CACHE")
    with tempfile.TemporaryDirectory(prefix="groupconv-tune-") as folder:
        os.environ["GROUPCONV_CACHE"] = os.path.join(folder, "tune.json")
        try:
            yield cache_path()
        finally:
            if previous is None:
                del os.environ["GROUPCONV_CACHE"]
            else:
                os.environ["GROUPCONV_CACHE"] = previous
            cache()  # the user's cache is the current one again, before any remembered call runs


@functools.cache
def _cache_at(explicit: str | None, cache_home: str | None) -> Cache:
    if explicit:  # a trailing separator names a folder: the file goes inside it, not in its place
        path = Path(explicit).expanduser()  # as a shell would, had the ~ not been quoted
        return Cache(path / "tune.json" if explicit.endswith(os.sep) else path)
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return Cache(base / "groupconv" / "tune.json")


@functools.cache
def fingerprint() -> dict[str, str]:
    """What a tuned choice depends on beyond the call itself."""
    versions = {name: machine.version(name) for name in ("groupconv", "torch")}
    return {"format": str(FORMAT), "cpu": machine.cpu_model(), **versions}


def _section_id(of: dict[str, str] | None = None) -> str:
    """The key of a fingerprint's section in the file (this environment's by default)."""
    text = json.dumps(fingerprint() if of is None else of, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, never through a symbolic link planted there, nor on anything but a file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Unusable(f"its lock {path} is a symbolic link") from error
        raise
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _Unusable(f"its lock {path} is not a regular file")
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _close(result: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal to rounding: relative to the reference's largest magnitude (half precision: a few of its ulps,
    each side having rounded once)."""
    tolerance = {torch.float64: 1e-10, torch.float32: 1e-4}.get(expected.dtype, 4 * torch.finfo(expected.dtype).eps)
    scale = expected.abs().max().item() if expected.numel() else 0.0
    atol = tolerance * scale + torch.finfo(expected.dtype).tiny
    return result.shape == expected.shape and torch.allclose(result, expected, rtol=0, atol=atol)


def _tensors(output: object) -> list[torch.Tensor]:
    """The tensors in a model's output (a tensor, or nested tuples/lists/dicts of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _peak(x: torch.Tensor) -> float:
    return x.abs().max().item() if x.numel() else 0.0


def _ms(t: Timing | None) -> str:
    return "wrong" if t is None else f"{t.median_s * 1e3:.3f} ms ±{t.spread:.0%}"


def _timing_dict(t: Timing | None) -> dict[str, float | None]:
    fields = ("median_s", "q25_s", "q75_s")
    return {name: None if t is None else getattr(t, name) for name in fields}
