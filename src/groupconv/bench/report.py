"""``docs/benchmarks.md`` and its plot, from one run's :class:`~groupconv.bench.suite.Results`.

Times are in milliseconds, each the median of interleaved rounds with its spread (the
interquartile range over the median). A speedup is a PyTorch layout's time over
groupconv's (above 1: groupconv is faster); "/ floor" is groupconv's time over the
roofline floor (1 would be perfect).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .contenders import NAMES
from .suite import LayerResult, Results
from .timing import Timing

PLOT_NAME = "images/bench-groups.png"
NEVER_SLOWER = 1.05  # the targets: zoo, groupconv <= 1.05 x the faster PyTorch layout
SWEEP_SPEEDUP = {"torch_cf": 3.0, "torch_cl": 1.5}  # forward+backward at the three largest group counts
FLOOR_FACTOR = {"forward": 2.0, "forward_backward": 3.0}  # sweep, groupconv within this factor of its floor
NOISY = 0.10  # a median spread above this: the machine was busy
_MODE_TITLES = {"forward": "forward", "forward_backward": "forward+backward"}
_PYTORCH = ("torch_cf", "torch_cl")


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
        _targets_section(results),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def speedup(result: LayerResult, mode: str, pytorch: str) -> float | None:
    """PyTorch layout ``pytorch``'s time over groupconv's, or None when either was not timed."""
    timings = result.timings[mode]
    if pytorch not in timings or "groupconv" not in timings:
        return None
    return timings[pytorch].median_s / timings["groupconv"].median_s


def over_floor(result: LayerResult, mode: str) -> float | None:
    """groupconv's time over the roofline floor."""
    timing = result.timings[mode].get("groupconv")
    return None if timing is None else timing.median_s / result.floors_s[mode]


def over_fastest_pytorch(result: LayerResult, mode: str) -> float | None:
    """groupconv's time over the faster of PyTorch's layouts (at most 1.05: the zoo target met)."""
    timings = result.timings[mode]
    pytorch = [timings[name].median_s for name in _PYTORCH if name in timings]
    if "groupconv" not in timings or not pytorch:
        return None
    return timings["groupconv"].median_s / min(pytorch)


def _header(results: Results) -> str:
    machine = results.machine
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return f"""# Benchmarks

Written by `{results.command}` on {machine["date"]} in {results.wall_s / 60:.1f} minutes; `make bench` runs the full
set. Times are milliseconds per call: the median of rounds in which every contender ran once, in turn, in one
process (so load drifts hit all alike), after warm-up, with the spread (interquartile range / median) after ±.
Each contender's output and gradients were checked once against PyTorch channels-first before timing. A
speedup is a PyTorch layout's time over groupconv's (above 1: groupconv is faster); "/ floor" is groupconv's
time over the layer's roofline floor. All layers are float32 without bias; {_tuning_text(results)}

## Machine

| | |
|---|---|
| CPU | {machine["cpu"]} |
| cores | {machine["cores"]} |
| `torch.get_num_threads()` (ONNX Runtime's intra-op threads too) | {machine["torch_threads"]} |
| Python | {machine["python"]} |
| versions | {versions} |
| command | `{results.command}` |

{_noise_text(results)}"""


def _noise_text(results: Results) -> str:
    """The median spread of every timing, and whether it says the machine was busy."""
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
        else "**the machine was busy**: differences smaller than the spreads are noise; rerun on an idle machine"
    )
    return f"Median spread of all layer timings: {spread:.0%}; {verdict}."


def _tuning_text(results: Results) -> str:
    if results.tuned:
        return "groupconv ran after `groupconv.tune(layer, example_input)` on each exact shape."
    return "groupconv ran **untuned** (its heuristic choices), as `--quick` does."


def _floors_section(results: Results) -> str:
    floors = results.floors
    return f"""## Floors

- SGEMM ({floors.gemm_size} x {floors.gemm_size}, `torch.matmul`): **{floors.gemm_gflops:.1f} GFLOP/s**
- copy ({floors.copy_bytes / 2**21:.0f} MiB read + written, `Tensor.copy_`): **{floors.copy_gbps:.1f} GB/s**

Each is the fastest of its rounds (a floor is what the machine can do at best), not the median.

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
    for mode in ("forward", "forward_backward"):
        parts.append(f"### {_MODE_TITLES[mode]}\n\n" + _layer_table(results.sweep, mode, "groups", flag=False))
    return "\n\n".join(parts)


def _zoo_section(results: Results) -> str:
    parts = ["## Zoo of real layers"]
    for mode in ("forward", "forward_backward"):
        parts.append(f"### {_MODE_TITLES[mode]}\n\n" + _layer_table(results.zoo, mode, "layer", flag=True))
    sources = "\n".join(
        f"- **{result.name}**: `{result.spec}`, input {_shape(result.input_shape)}; {result.source}"
        for result in results.zoo
    )
    parts.append("### The layers\n\n" + sources)
    return "\n\n".join(parts)


def _layer_table(layer_results: list[LayerResult], mode: str, first: str, flag: bool) -> str:
    contenders = [
        name
        for name in NAMES
        if any(name in result.timings[mode] or name in result.mismatches for result in layer_results)
    ]
    headers = [first, "GFLOP", "floor ms", "bound", *(NAMES[name] for name in contenders)]
    headers += [f"speedup vs {NAMES[name].removeprefix('PyTorch ')}" for name in _PYTORCH]
    headers.append("groupconv / floor")
    if flag:
        headers.append(f"≤ {NEVER_SLOWER} × faster PyTorch")
    rows = []
    for result in layer_results:
        row = [
            str(result.groups) if first == "groups" else result.name,
            f"{result.flops * (3 if mode != 'forward' else 1) / 1e9:.3g}",
            _ms(result.floors_s[mode]),
        ]
        row.append(result.bound)
        row += [_timing(result, mode, contender) for contender in contenders]
        row += [_ratio(speedup(result, mode, pytorch)) for pytorch in _PYTORCH]
        row.append(_ratio(over_floor(result, mode)))
        if flag:
            row.append(_flag(over_fastest_pytorch(result, mode)))
        rows.append(row)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _end_to_end_section(results: Results) -> str:
    lines = [
        "## End to end: one training step",
        "",
        "Forward, backward and an SGD step (momentum 0.9) of cross-entropy on random data, plain PyTorch against "
        "the same network and weights after `groupconv.nn.convert`; median step time.",
        "",
        "| network | input | PyTorch ms | groupconv ms | speedup | first-loss difference |",
        "|---|---|---|---|---|---|",
    ]
    for step in results.end_to_end:
        lines.append(
            f"| {step.name} | {_shape(step.input_shape)} | {_timing_text(step.pytorch)} | "
            f"{_timing_text(step.groupconv)} | {step.speedup:.2f}× | {step.loss_difference:.1e} |"
        )
    return "\n".join(lines)


def _targets_section(results: Results) -> str:
    return "## Targets (issue 4)\n\n" + "\n".join(
        [_never_slower_target(results), _sweep_speedup_target(results), _floor_target(results)]
    )


def _never_slower_target(results: Results) -> str:
    ratios = {
        f"{result.name} {_MODE_TITLES[mode]}": over_fastest_pytorch(result, mode)
        for result in results.zoo
        for mode in _MODE_TITLES
    }
    missed = {name: ratio for name, ratio in ratios.items() if ratio is None or ratio > NEVER_SLOWER}
    text = (
        f"1. **Never slower than PyTorch** (zoo, groupconv ≤ {NEVER_SLOWER} × the faster PyTorch layout): "
        f"{_verdict(not missed)}, {len(ratios) - len(missed)} of {len(ratios)} layer-directions."
    )
    return text + "".join(
        f"\n   - missed: {name}, {_ratio(ratio)} × the faster PyTorch" for name, ratio in missed.items()
    )


def _sweep_speedup_target(results: Results) -> str:
    largest = results.sweep[-3:]
    lines = []
    for pytorch, wanted in SWEEP_SPEEDUP.items():
        speedups = {result.name: speedup(result, "forward_backward", pytorch) for result in largest}
        worst = min((value or 0.0) for value in speedups.values()) if speedups else 0.0
        shown = ", ".join(f"{name}: {_ratio(value)}×" for name, value in speedups.items())
        lines.append(
            f"   - vs {NAMES[pytorch]} ≥ {wanted}×: {_verdict(worst >= wanted)} ({shown})"
            + ("" if worst >= wanted else f"; the worst is short by {wanted / worst:.2f}×" if worst else "")
        )
    groups = ", ".join(str(result.groups) for result in largest)
    return f"2. **Sweep speedup** (forward+backward at groups {groups}):\n" + "\n".join(lines)


def _floor_target(results: Results) -> str:
    lines = []
    for mode, factor in FLOOR_FACTOR.items():
        ratios = {result.name: over_floor(result, mode) for result in results.sweep}
        missed = {name: ratio for name, ratio in ratios.items() if ratio is None or ratio > factor}
        detail = ", ".join(f"{name}: {_ratio(ratio)}×" for name, ratio in missed.items())
        lines.append(
            f"   - {_MODE_TITLES[mode]} within {factor}× of the floor: {_verdict(not missed)}, "
            f"{len(ratios) - len(missed)} of {len(ratios)} group counts" + (f" (missed: {detail})" if detail else "")
        )
    return "3. **Near the floor** (sweep, groupconv / floor):\n" + "\n".join(lines)


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
            axis.plot(groups, times_ms, "o-", label=NAMES[name], linewidth=3 if name == "groupconv" else 1.5)
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


def _flag(value: float | None) -> str:
    if value is None:
        return "—"
    return "yes" if value <= NEVER_SLOWER else f"**no** ({value:.2f}×)"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
