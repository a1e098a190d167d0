"""The planner on real-network layers outside the zoo: ``python -m groupconv.bench.outside [RUNS]``.

Each layer is tuned afresh (a scratch cache) and timed as the benchmark times the zoo; the
table gives, per run, tuned groupconv on channels-first input against PyTorch's faster layout
(above 1: groupconv is faster), forward and forward+backward. Keep the machine idle.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..memory import keep_freed_memory
from ..tables import markdown_table
from ..timing import FULL, TimerSettings
from . import floors, layers
from .layers import Layer
from .suite import measure_afresh, median_run


@dataclasses.dataclass(frozen=True)
class Check:
    """One layer's planner speedups, per mode, one per run."""

    layer: Layer
    speedups: dict[str, list[float | None]]


def check(outside: list[Layer], runs: int = 2, settings: TimerSettings = FULL) -> list[Check]:
    """Tune and time each layer ``runs`` times, each run into a fresh cache."""
    return [
        Check(layer, median_run([measure_afresh(layer, settings) for _ in range(runs)]).planner_runs)
        for layer in outside
    ]


def table(checks: list[Check]) -> str:
    """Markdown: each layer's spec, input and every run's speedup per mode."""
    rows = [
        [check.layer.name, f"`{layers.describe(check.layer.spec)}`", "×".join(map(str, check.layer.input_shape)),
         *(", ".join("—" if s is None else f"{s:.2f}" for s in check.speedups[mode]) for mode in floors.MODES)]
        for check in checks
    ]  # fmt: skip
    return markdown_table(["layer", "spec", "input", "forward", "forward+backward"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m groupconv.bench.outside", description=__doc__.split("\n\n")[1])
    parser.add_argument("runs", nargs="?", type=int, choices=range(1, 11), default=2, metavar="RUNS",
                        help="runs per layer, each tuned afresh, 1 to 10 (default: %(default)s)")  # fmt: skip
    runs = parser.parse_args(argv).runs
    keep_freed_memory()  # as groupconv bench runs
    print(table(check(layers.outside(), runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
