"""``docs/benchmarks.md`` and its plot, from one run's :class:`~groupconv.bench.suite.Results`.

Times are in milliseconds, each the median of interleaved rounds with its spread (the
interquartile range over the median). Both libraries run in both memory layouts; a
speedup is PyTorch's time over groupconv's (above 1: groupconv is faster), layout
against the same layout, or best against best (each library's faster layout); "/ floor"
is groupconv's faster layout's time over the roofline floor (1 would be perfect).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..tables import markdown_table
from ..timing import FULL, Timing
from . import layers
from .contenders import NAMES
from .suite import GROUPCONV, PLANNED, PYTORCH, LayerResult, Results, fastest_s, speedup

PLOT_NAME = "images/bench-groups.png"
PLANNER_FLOOR = 0.95  # zoo: tuned groupconv on channels-first input >= 0.95 x PyTorch's faster layout's speed
FLOOR_FACTOR = {"forward": 2.0, "forward_backward": 3.0}  # sweep, groupconv within this factor of its floor
PEERS_FROM_GROUPS = 16  # sweep: from this many groups on, groupconv beats every peer
OVERHEAD_FACTOR = 1.2  # the tiny layer: groupconv's call within this factor of PyTorch's
NOISY = 0.10  # a median spread above this: timings too noisy for ~10% differences to mean something
LAYOUTS = {"CF": ("torch_cf", "groupconv"), "CL": ("torch_cl", "groupconv_cl")}  # PyTorch's, groupconv's contender
_MODE_TITLES = {"forward": "forward", "forward_backward": "forward+backward"}


def write(results: Results, out: str | Path) -> tuple[Path, Path]:
    """Write the Markdown report to ``out`` and the plot beside it (``images/bench-groups.png``)."""
    out = Path(out)
    plot_path = out.parent / PLOT_NAME
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plot_path)
    out.write_text(markdown(results))
    return out, plot_path


def markdown(results: Results) -> str:
    """The whole report as Markdown."""
    sections = [
        _header(results),
        _floors_section(results),
        _mismatches_section(results),
        _sweep_section(results),
        _zoo_section(results),
        _end_to_end_section(results),
        _first_call_section(results),
        _targets_section(results),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def over_floor(result: LayerResult, mode: str, names: tuple[str, ...] = GROUPCONV, best: bool = True) -> float | None:
    """The fastest of the contenders ``names``' time over the roofline floor (default: groupconv's faster layout).
    The floor is the machine at its best, so it is compared with their fastest rounds (``best=False``: medians)."""
    ours = fastest_s(result, mode, names, best)
    return None if ours is None else ours / result.floors_s[mode]


def faster_layout(result: LayerResult, mode: str, names: tuple[str, str]) -> str:
    """Which of a library's two contenders (channels-first, channels-last) was faster: "CF", "CL" or "—"."""
    timings = result.timings[mode]
    timed = {layout: timings[name].median_s for layout, name in zip(LAYOUTS, names) if name in timings}
    return min(timed, key=timed.get) if timed else "—"


def _header(results: Results) -> str:
    machine = results.machine
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return f"""# Benchmarks

Written by `{results.command}` on {machine["date"]} in {results.wall_s / 60:.1f} minutes; `make bench` runs the full
set. Times are milliseconds per call: the median of rounds in which every contender ran once, in turn, in one
process (so load drifts hit all alike), after warm-up, with the spread (interquartile range / median) after ±;
rounds end at a time budget, or once {FULL.steady_repeats} have every spread within {FULL.steady_spread:.0%}.
Each contender's output and gradients were checked once against PyTorch channels-first before timing. PyTorch
and groupconv each run in channels-first (CF) and channels-last (CL, 2-D and 3-D layers), each given its input
already in that layout. A speedup is PyTorch's time over groupconv's (above 1: groupconv is faster): CF against
CF, CL against CL, and best against best (each library's faster layout, which "faster" names); "/ floor" is
the faster groupconv layout's fastest round over the layer's roofline floor (the floor is the machine at its
best, so it is compared with groupconv at its best; the targets give the medians' ratio too). All layers are
float32, bias-free unless named;
{_tuning_text(results)}

## Machine

| | |
|---|---|
| CPU | {machine["cpu"]} |
| cores | {machine["cores"]} |
| `torch.get_num_threads()` (ONNX Runtime's intra-op threads too) | {machine["torch_threads"]} |
| allocator | {machine["allocator"]} |
| Python | {machine["python"]} |
| versions | {versions} |
| command | `{results.command}` |

{_noise_text(results)}"""


def _noise_text(results: Results) -> str:
    """The median spread of every timing, and what differences it leaves meaningful."""
    spreads = [
        timing.spread
        for result in results.sweep + results.zoo
        for timings in result.timings.values()
        for timing in timings.values()
    ]
    spread = statistics.median(spreads) if spreads else 0.0
    verdict = (
        "the machine was quiet enough for differences of ~10% to mean something"
        if spread <= NOISY
        else "**the timings were noisy** (a busy machine, or a virtual one's neighbours): differences smaller "
        "than the spreads are noise"
    )
    return f"Median spread of all layer timings: {spread:.0%}; {verdict}."


def _tuning_text(results: Results) -> str:
    if results.tuned:
        return "groupconv ran after `groupconv.tune(layer, example_input)` on each exact shape and layout."
    return "groupconv ran **untuned** (its heuristic choices), as `--quick` does."


def _floors_section(results: Results) -> str:
    floors = results.floors
    return f"""## Floors

- SGEMM ({floors.gemm_size} x {floors.gemm_size}, `torch.matmul`): **{floors.gemm_gflops:.1f} GFLOP/s**
- copy ({floors.copy_bytes / 2**21:.0f} MiB read + written, `Tensor.copy_`): **{floors.copy_gbps:.1f} GB/s**

Each is the fastest of its rounds, measured at the start, after the sweep and at the end, the best of the three
kept (a floor is what the machine can do at best, and a shared machine's rates swing), not the median: a layer's
time is compared with it at its own fastest round. On a machine shared with others the median can be far from
it (the same kernel's median at 1.6-2x its fastest round, which also misses the page faults of a fresh output).

A layer's floor, per direction, is max(FLOPs / SGEMM rate, bytes / copy rate), where the bytes are the
direction's input, weight and output, each touched once; forward+backward is three such directions (forward,
input gradient, weight gradient). "bound" says which term sets it."""


def _mismatches_section(results: Results) -> str:
    lines = [
        f"- **{result.name}**, {NAMES[name]}: {why}"
        for result in results.sweep + results.zoo
        for name, why in result.mismatches.items()
    ]
    if not lines:
        return ""
    return "## MISMATCHES (these contenders were not timed)\n\n" + "\n".join(lines)


def _sweep_section(results: Results) -> str:
    if not results.sweep:
        return ""
    first = results.sweep[0]
    parts = [
        f"## Group sweep\n\n`{first.spec}` on input {_shape(first.input_shape)}, "
        f"groups 1 to {results.sweep[-1].groups}.\n\n![time against groups]({PLOT_NAME})"
    ]
    for mode in _MODE_TITLES:
        parts.append(f"### {_MODE_TITLES[mode]}\n\n" + _tables(results.sweep, mode, "groups", flag=False))
    return "\n\n".join(parts)


def _zoo_section(results: Results) -> str:
    parts = [
        f"## Zoo of real layers\n\nA speedup in **bold** is below {PLANNER_FLOOR}: groupconv ran at less than "
        f"{PLANNER_FLOOR}× PyTorch's speed, missing the never-slower target. Each layer was measured in "
        f"{_runs(results)}; the tables show the run with the median forward+backward \"groupconv CF vs PyTorch's "
        "best\", whose column gives that median and, in brackets, every run's."
    ]
    for mode in _MODE_TITLES:
        parts.append(f"### {_MODE_TITLES[mode]}\n\n" + _tables(results.zoo, mode, "layer", flag=True))
    sources = "\n".join(
        f"- **{result.name}**: `{result.spec}`, input {_shape(result.input_shape)}; {result.source}"
        for result in results.zoo
    )
    parts.append("### The layers\n\n" + sources)
    return "\n\n".join(parts)


def _tables(layer_results: list[LayerResult], mode: str, first: str, flag: bool) -> str:
    """A table of times and one of ratios; ``flag`` marks speedups that miss the never-slower target."""
    return _times_table(layer_results, mode, first) + "\n\n" + _ratios_table(layer_results, mode, first, flag)


def _times_table(layer_results: list[LayerResult], mode: str, first: str) -> str:
    contenders = [
        name
        for name in NAMES
        if any(name in result.timings[mode] or name in result.mismatches for result in layer_results)
    ]
    headers = [first, "GFLOP", "floor ms", "bound", *(f"{NAMES[name]} ms" for name in contenders)]
    rows = [
        [
            _label(result, first),
            f"{result.flops * (3 if mode != 'forward' else 1) / 1e9:.3g}",
            _ms(result.floors_s[mode]),
            result.bound,
            *(_timing(result, mode, contender) for contender in contenders),
        ]
        for result in layer_results
    ]
    return markdown_table(headers, rows)


def _ratios_table(layer_results: list[LayerResult], mode: str, first: str, flag: bool) -> str:
    headers = [
        first,
        "CF speedup",
        "CL speedup",
        "best speedup",
        "groupconv CF vs PyTorch's best",
        "faster: PyTorch, groupconv",
        "best groupconv / floor",
    ]
    rows = []
    for result in layer_results:
        speedups = [speedup(result, mode, (pytorch,), (ours,)) for pytorch, ours in LAYOUTS.values()]
        cells = [_ratio(value) for value in (*speedups, speedup(result, mode))]
        cells.append(_planner_cell(result, mode, flag))
        layouts = f"{faster_layout(result, mode, PYTORCH)}, {faster_layout(result, mode, GROUPCONV)}"
        rows.append([_label(result, first), *cells, layouts, _ratio(over_floor(result, mode))])
    return markdown_table(headers, rows)


def _planner_cell(result: LayerResult, mode: str, flag: bool) -> str:
    """The planner's speedup: this run's, or with several runs their median and each run's."""
    runs = result.planner_runs.get(mode, [])
    if len(runs) < 2:
        return _speedup(speedup(result, mode, PYTORCH, PLANNED), flag)
    return f"{_speedup(_median(runs), flag)} ({', '.join(map(_ratio, runs))})"


def _median(values: list[float | None]) -> float | None:
    """The median of the values, None when any is None (a run that timed nothing)."""
    return None if any(value is None for value in values) else statistics.median(values)


def _label(result: LayerResult, first: str) -> str:
    return str(result.groups) if first == "groups" else result.name


def _end_to_end_section(results: Results) -> str:
    lines = [
        "## End to end: one training step",
        "",
        "Forward, backward and an SGD step (momentum 0.9) of cross-entropy on random data: plain PyTorch in "
        "each layout (the model and its input channels-first, or both channels-last) against the same network "
        "and weights after `groupconv.nn.convert` and `groupconv.tune(model, x, apply_layout=True)`, on "
        'channels-first input converted in the step to the layout tune chose ("groupconv layout"); median step '
        f"time. The speedup is against PyTorch's faster layout; of {_runs(results)}, the table shows the run "
        "with the median speedup.",
        "",
        "| network | input | PyTorch CF ms | PyTorch CL ms | groupconv ms | groupconv layout | speedup "
        "| every run's | first-loss difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in results.end_to_end:
        lines.append(
            f"| {step.name} | {_shape(step.input_shape)} | {_timing_text(step.pytorch)} | "
            f"{_timing_text(step.pytorch_cl)} | {_timing_text(step.groupconv)} | {step.groupconv_layout} | "
            f"{step.speedup:.2f}× | "
            f"{', '.join(map(_ratio, step.run_speedups)) or '—'} | {step.loss_difference:.1e} |"
        )
    return "\n".join(lines)


def _first_call_section(results: Results) -> str:
    calls = {call.name: call for call in results.first_calls}
    lines = [
        "## First call: a fresh process, empty caches",
        "",
        "A new interpreter imports torch (and groupconv), builds one narrow-group layer (2 channels per group, "
        "which runs groupconv's own kernels) and calls it once, tuning off and the tuning cache empty, as a new "
        "user's first call; median of the rounds. Nothing is compiled at the first call: groupconv's kernels are "
        "built when it is installed.",
        "",
        "| library | import s | first call s |",
        "|---|---|---|",
        *(f"| {name} | {call.import_s:.2f} | {call.first_call_s:.3f} |" for name, call in calls.items()),
    ]
    if {"torch", "groupconv"} <= set(calls):
        extra = calls["groupconv"].import_s + calls["groupconv"].first_call_s
        extra -= calls["torch"].import_s + calls["torch"].first_call_s
        more_or_less = "more" if extra >= 0 else "less (run-to-run noise: groupconv's import includes torch's)"
        lines += ["", f"groupconv's import and first call take {abs(extra):.2f} s {more_or_less} than PyTorch's own."]
    return "\n".join(lines)


def _targets_section(results: Results) -> str:
    targets = [_planner_target(results), _training_step_target(results), _floor_target(results)]
    targets += [_peers_target(results), _overhead_target(results)]
    return "## Targets\n\n" + "\n".join(f"{number}. {text}" for number, text in enumerate(targets, 1))


def _runs(results: Results) -> str:
    return "1 run" if results.runs == 1 else f"{results.runs} runs, each tuned afresh"


def _planner_target(results: Results) -> str:
    """Every zoo layer: tuned groupconv on channels-first input against PyTorch's faster layout."""
    speedups = {
        f"{result.name} {title}": _median(result.planner_runs.get(mode) or [speedup(result, mode, PYTORCH, PLANNED)])
        for result in results.zoo
        if result.name != layers.OVERHEAD_LAYER
        for mode, title in _MODE_TITLES.items()
    }
    missed = {name: value for name, value in speedups.items() if value is None or value < PLANNER_FLOOR}
    lines = [
        f"**Never slower than PyTorch's better layout** (zoo, tuned groupconv on channels-first input ≥ "
        f"{PLANNER_FLOOR}× PyTorch's faster layout's speed, median of {_runs(results)}): {_verdict(not missed)} "
        f"({len(speedups) - len(missed)} of {len(speedups)} layer-directions meet it)",
        *(f"   - missed: {name}, {_ratio(value)}×" for name, value in missed.items()),
    ]
    return "\n".join(lines)


def _training_step_target(results: Results) -> str:
    lines = [
        f"   - {step.name}: {step.speedup:.2f}× against ≥ {step.target}×: {_verdict(step.speedup >= step.target)}"
        for step in results.end_to_end
    ]
    title = "**Training steps** (groupconv on channels-first input, in the layout tune chose, against PyTorch's"
    return f"{title} faster layout):\n" + "\n".join(lines)


def _floor_target(results: Results) -> str:
    lines = []
    for mode, factor in FLOOR_FACTOR.items():
        for layout, (_, ours) in LAYOUTS.items():
            timed = [r for r in results.sweep if ours in r.timings[mode]]
            ratios = {r.name: over_floor(r, mode, (ours,)) for r in timed}
            medians = ", ".join(f"{_ratio(over_floor(r, mode, (ours,), best=False))}×" for r in timed)
            missed = {name: ratio for name, ratio in ratios.items() if ratio > factor}
            detail = ", ".join(f"{name}: {_ratio(ratio)}×" for name, ratio in missed.items())
            lines.append(
                f"   - {_MODE_TITLES[mode]}, {layout} input, within {factor}× of the floor: {_verdict(not missed)} "
                f"({len(ratios) - len(missed)} of {len(ratios)} group counts meet it"
                + (f"; missed: {detail}" if detail else "")
                + f"; medians over the floor: {medians})"
            )
    title = "**Near the floor** (sweep, groupconv in each layout, its fastest round / the roofline floor):"
    return title + "\n" + "\n".join(lines)


def _peers_target(results: Results) -> str:
    wide = [result for result in results.sweep if result.groups >= PEERS_FROM_GROUPS]
    peers = {"forward": (*PYTORCH, "onnxruntime", "openvino"), "forward_backward": PYTORCH}
    lines = []
    for mode, names in peers.items():
        for peer in names:
            ratios = {r.name: speedup(r, mode, (peer,)) for r in wide if peer in r.timings[mode]}
            slower = {name: value for name, value in ratios.items() if value is None or value <= 1}
            shown = ", ".join(f"{name}: {_ratio(value)}×" for name, value in ratios.items())
            lines.append(f"   - {_MODE_TITLES[mode]} vs {NAMES[peer]}: {_verdict(not slower)} ({shown})")
    return f"**Faster than every peer at groups ≥ {PEERS_FROM_GROUPS}** (sweep, best groupconv layout):\n" + "\n".join(
        lines
    )


def _overhead_target(results: Results) -> str:
    tiny = next((result for result in results.zoo if result.name == layers.OVERHEAD_LAYER), None)
    if tiny is None:
        return "**Per-call overhead**: not measured in this run"
    parts = []
    for mode, title in _MODE_TITLES.items():
        ratio = 1 / speedup(tiny, mode, ("torch_cf",), ("groupconv",))
        parts.append(f"{title} {ratio:.2f}× {_verdict(ratio <= OVERHEAD_FACTOR)}")
    return f"**Per-call overhead** ({tiny.name}, groupconv ≤ {OVERHEAD_FACTOR}× PyTorch's time): " + "; ".join(parts)


def plot(results: Results, path: Path) -> None:
    """Time against groups, log-log, per contender, with the ideal 1/g line and the floor; one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [result.groups for result in results.sweep]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for axis, mode in zip(axes, _MODE_TITLES):
        timed = [name for name in NAMES if all(name in result.timings[mode] for result in results.sweep)]
        for name in timed:
            times_ms = [result.timings[mode][name].median_s * 1e3 for result in results.sweep]
            marker = "s-" if name in ("torch_cl", "groupconv_cl") else "o-"  # squares: channels-last
            axis.plot(groups, times_ms, marker, label=NAMES[name], linewidth=3 if name in GROUPCONV else 1.5)
        fastest_first = min(results.sweep[0].timings[mode][name].median_s for name in timed) * 1e3
        axis.plot(groups, [fastest_first / g for g in groups], ":", color="grey", label="ideal 1/g (fastest at g=1)")
        axis.plot(groups, [result.floors_s[mode] * 1e3 for result in results.sweep], "--", color="black",
                  label="roofline floor")  # fmt: skip
        axis.set(xscale="log", yscale="log", xlabel="groups", ylabel="ms per call", title=_MODE_TITLES[mode])
        axis.set_xticks(groups, [str(g) for g in groups])
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{results.sweep[0].spec}, input {_shape(results.sweep[0].input_shape)}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _timing(result: LayerResult, mode: str, contender: str) -> str:
    if contender in result.mismatches:
        return "**MISMATCH**"
    timing = result.timings[mode].get(contender)
    return "—" if timing is None else _timing_text(timing)


def _timing_text(timing: Timing) -> str:
    return f"{_ms(timing.median_s)} ±{timing.spread * 100:.0f}%"


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1e3
    if milliseconds >= 100:
        return f"{milliseconds:.0f}"
    return f"{milliseconds:.3g}" if milliseconds >= 0.01 else f"{milliseconds:.2g}"


def _ratio(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.2f}"


def _speedup(value: float | None, flag: bool) -> str:
    """A speedup, in bold when ``flag`` and it misses the never-slower target."""
    text = _ratio(value)
    return f"**{text}**" if flag and value is not None and value < PLANNER_FLOOR else text


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
