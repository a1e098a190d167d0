"""The whole benchmark: floors, sweep, zoo and end-to-end steps, measured under one progress bar.

Each contender's result is checked against PyTorch channels-first once before it is
timed; a contender that disagrees is reported as a mismatch and not timed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import torch
from tqdm import tqdm

from .. import machine, tuning
from ..timing import FULL, QUICK, TimerSettings, Timing, interleaved, median_of
from . import endtoend, first_call, floors, layers
from .contenders import NAMES, Contender, build
from .floors import Floors
from .layers import Layer

T = TypeVar("T")
MISMATCH_TOLERANCE = 1e-4  # max |error| / max |reference|: float32 sums of thousands of terms stay well under


@dataclasses.dataclass
class LayerResult:
    """One layer's timings per mode (``forward``, ``forward_backward``) and contender, its floors
    and which of compute or memory sets them."""

    name: str
    source: str
    spec: str
    groups: int
    input_shape: tuple[int, ...]
    flops: int
    timings: dict[str, dict[str, Timing]]
    mismatches: dict[str, str] = dataclasses.field(default_factory=dict)
    planner_runs: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)  # per mode, every run's
    floors_s: dict[str, float] = dataclasses.field(default_factory=dict)  # set by at_floors once the run is over
    bound: str = ""


PYTORCH = ("torch_cf", "torch_cl")
GROUPCONV = ("groupconv", "groupconv_cl")
PLANNED = ("groupconv",)  # the planner's target: tuned groupconv on channels-first input


def fastest_s(result: LayerResult, mode: str, names: tuple[str, ...], best: bool = False) -> float | None:
    """The least median time (``best``: fastest round) of the contenders ``names`` timed on this layer in
    ``mode``; None if none was."""
    timings = result.timings[mode]
    return min((timings[name].best_s if best else timings[name].median_s for name in names if name in timings),
               default=None)  # fmt: skip


def speedup(
    result: LayerResult, mode: str, pytorch: tuple[str, ...] = PYTORCH, groupconv: tuple[str, ...] = GROUPCONV
) -> float | None:
    """The fastest of the PyTorch contenders ``pytorch``'s time over the fastest of the groupconv
    contenders ``groupconv``'s; None when either side was not timed. The defaults compare best with
    best; ``pytorch=("torch_cl",), groupconv=("groupconv_cl",)`` compares channels-last alone."""
    theirs, ours = fastest_s(result, mode, pytorch), fastest_s(result, mode, groupconv)
    return None if theirs is None or ours is None else theirs / ours


def median_run(runs: list[LayerResult]) -> LayerResult:
    """The run whose planner speedup (forward+backward) is the median of ``runs`` (the lower one of an even
    count), with every run's planner speedups per mode in ``planner_runs``."""
    ratios = {mode: [speedup(run, mode, PYTORCH, PLANNED) for run in runs] for mode in floors.MODES}
    median = median_of(runs, key=lambda run: speedup(run, "forward_backward", PYTORCH, PLANNED) or 0.0)
    return dataclasses.replace(median, planner_runs=ratios)


@dataclasses.dataclass
class Results:
    """Everything one run measured, with the machine and the command that ran it."""

    machine: dict[str, object]
    command: str
    floors: Floors
    sweep: list[LayerResult]
    zoo: list[LayerResult]
    end_to_end: list[endtoend.StepResult]
    first_calls: list[first_call.FirstCall]
    tuned: bool
    wall_s: float = 0.0
    runs: int = 1  # of the zoo and the training steps, each tuned afresh

    def to_dict(self) -> dict:
        """Plain JSON types (schema ``groupconv.bench/6`` in docs/cli-json.md): every contender is
        listed per layer and mode, None where it was not timed or did not mismatch."""
        document = {"schema": "groupconv.bench/6", **dataclasses.asdict(self)}
        for result in document["sweep"] + document["zoo"]:
            result["timings"] = {
                mode: {name: got.get(name) for name in NAMES} for mode, got in result["timings"].items()
            }
            result["mismatches"] = {name: result["mismatches"].get(name) for name in NAMES}
        return document


def run(quick: bool = False, command: str = "groupconv bench", progress: bool = True, runs: int = 1) -> Results:
    """Measure everything; ``quick`` uses tiny layers and few repeats, and skips tuning (seconds, for tests).
    The zoo and the training steps are measured ``runs`` times, each tuned afresh (see :func:`median_run`)."""
    started = time.perf_counter()
    tuned = not quick
    settings = QUICK if quick else FULL
    sweep, zoo, networks = layers.sweep(quick), layers.zoo(quick), endtoend.networks(quick)
    steps = 4 + len(sweep) + runs * (len(zoo) + len(networks))
    with tqdm(total=steps, desc="groupconv bench", unit="step", disable=not progress, file=sys.stderr) as bar:
        # a shared host's rates swing by 2x: measured at the start, after the sweep and at the end, each at its best
        measure_floors = partial(_step, bar, "machine floors", partial(floors.measure, settings, quick))
        machine_floors = measure_floors()
        measure = partial(measure_afresh, settings=settings, tuned=tuned)

        def measure_step(network: endtoend.Network) -> endtoend.StepResult:
            with tuning.scratch_cache():
                return endtoend.measure(network, settings, tuned)

        def each_run(label: str, measure_once: Callable[[], T]) -> list[T]:
            return [_step(bar, f"{label}, run {r + 1} of {runs}", measure_once) for r in range(runs)]

        sweep_results = [_step(bar, layer.name, partial(measure, layer)) for layer in sweep]
        machine_floors = machine_floors.at_best(measure_floors())
        zoo_results = [median_run(each_run(layer.name, partial(measure, layer))) for layer in zoo]
        end_to_end = [
            endtoend.median_run(each_run(f"training step: {network.name}", partial(measure_step, network)))
            for network in networks
        ]
        first_calls = _step(bar, "first call, fresh process", partial(first_call.measure, quick))
        machine_floors = machine_floors.at_best(measure_floors())
    sweep_results = [at_floors(result, layer, machine_floors) for result, layer in zip(sweep_results, sweep)]
    zoo_results = [at_floors(result, layer, machine_floors) for result, layer in zip(zoo_results, zoo)]
    wall_s = time.perf_counter() - started
    return Results(
        machine.describe(), command, machine_floors, sweep_results, zoo_results, end_to_end, first_calls, tuned, wall_s,
        runs,
    )  # fmt: skip


def _step(bar: tqdm, label: str, measure: Callable[[], T]) -> T:
    """Run one measurement under the progress bar, showing its label."""
    bar.set_postfix_str(label)
    result = measure()
    bar.update()
    return result


def measure_afresh(layer: Layer, settings: TimerSettings, tuned: bool = True) -> LayerResult:
    """:func:`measure_layer` on ``layer``'s contenders, tuned (unless not ``tuned``) into a fresh cache."""
    with tuning.scratch_cache():
        return measure_layer(layer, build(layer, tuned), settings)


def at_floors(result: LayerResult, layer: Layer, machine_floors: Floors) -> LayerResult:
    """``result`` with ``layer``'s floors on the machine's rates, and which of compute or memory sets them."""
    floors_s = {mode: floors.roofline_s(layer.spec, layer.input_shape, mode, machine_floors) for mode in floors.MODES}
    return dataclasses.replace(
        result, floors_s=floors_s, bound=floors.bound(layer.spec, layer.input_shape, machine_floors)
    )


def measure_layer(layer: Layer, contenders: list[Contender], settings: TimerSettings) -> LayerResult:
    """Check each contender against the first (the reference) once, then time those that agree."""
    reference, *others = contenders
    mismatches = {}
    timings = {}
    for mode in floors.MODES:
        expected = _call(reference, mode)
        agreeing = {reference.name: _mode_call(reference, mode)}
        for contender in others:
            call = _mode_call(contender, mode)
            if call is None or contender.name in mismatches:
                continue
            error = mismatch(expected, _call(contender, mode))
            if error is None:
                agreeing[contender.name] = call
            else:
                mismatches[contender.name] = f"{mode}: {error}"
                print(f"groupconv bench: MISMATCH {layer.name}, {contender.name} {mode}: {error}", file=sys.stderr)
        timings[mode] = interleaved(agreeing, settings)
    return LayerResult(
        layer.name,
        layer.source,
        layers.describe(layer.spec),
        layer.spec.groups,
        layer.input_shape,
        layer.spec.flops(layer.input_shape),
        timings,
        mismatches,
    )


def mismatch(expected: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...]) -> str | None:
    """None when every tensor matches its expected one (relative to its largest entry), else why not.

    Example:
        >>> mismatch((torch.ones(2),), (torch.tensor([1.0, 1.5]),))
        'result 0: max |error| 0.5 is 0.5 of max |expected| 1 (tolerance 0.0001)'
    """
    for index, (want, have) in enumerate(zip(expected, got)):
        if have.shape != want.shape:
            return f"result {index}: shape {tuple(have.shape)}, expected {tuple(want.shape)}"
        scale = want.abs().max().item() or 1.0
        error = (have.double() - want.double()).abs().max().item()
        if not error <= MISMATCH_TOLERANCE * scale:  # also catches NaN
            return (
                f"result {index}: max |error| {error:.3g} is {error / scale:.3g} of max |expected| {scale:.3g} "
                f"(tolerance {MISMATCH_TOLERANCE})"
            )
    return None


def _mode_call(contender: Contender, mode: str) -> Callable[[], object] | None:
    return contender.forward if mode == "forward" else contender.forward_backward


def _call(contender: Contender, mode: str) -> tuple[torch.Tensor, ...]:
    """The contender's results in ``mode``, as a tuple of tensors copied out of its buffers."""
    result = _mode_call(contender, mode)()
    results = result if isinstance(result, tuple) else (result,)
    return tuple(tensor.detach().clone() for tensor in results)
