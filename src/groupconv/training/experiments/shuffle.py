"""`groupconv experiment shuffle`: does ShuffleNet's channel shuffle matter?

Zhang et al. (ShuffleNet, Table 3) report ImageNet top-1 error 32.4% with the channel
shuffle and 37.6% without it at groups=8 (ShuffleNet 1x). Without the shuffle, each
group of a unit's last grouped 1x1 convolution reads only its own group's channels, so
information crosses groups only through the residual additions and concatenations.
Here a small ShuffleNet (:func:`groupconv.models.shufflenet`, width 0.25) trains with
and without the shuffle on the same seeds at groups=4: at this width groups=8 leaves 3
channels per group, too few for one shuffle to reach all 8 groups, while groups=4
leaves at least 4. The difference is paired by seed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..train import TrainConfig
from .arms import ArmSummary, Report, run_arms
from .groups import RECIPE as GROUPS_RECIPE
from .runner import Run

# The groups experiment's recipe at ShuffleNet's width 0.25, with fewer epochs (an epoch costs about 2x AlexNet's).
RECIPE = {**GROUPS_RECIPE, "model": "shufflenet", "groups": 4, "width": 0.25, "epochs": 5}
MARGIN = 0.5  # percentage points, as in the groups experiment
SEEDS = (0, 1, 2)
ARMS = {"shuffle": True, "no-shuffle": False}
PUBLISHED = {"shuffle": "32.4", "no-shuffle": "37.6"}  # ImageNet top-1 error %, ShuffleNet 1x (g = 8)


def runs(seeds: Sequence[int] = SEEDS, **recipe) -> list[Run]:
    fields = {**RECIPE, **recipe}
    return [Run(arm, TrainConfig(**fields, shuffle=on, seed=seed)) for seed in seeds for arm, on in ARMS.items()]


def run(out, seeds=SEEDS, jobs=1, data_dir=None, progress=True, train=True, **recipe) -> Report:
    """Train every unfinished run (unless ``train`` is False); write shuffle.md and shuffle.json from the finished."""
    running = dict(jobs=jobs, data_dir=data_dir, progress=progress, train=train)
    return run_arms("shuffle", runs(seeds, **recipe), out, table, MARGIN, **running)


def table(rows: Sequence[ArmSummary]) -> str:
    """Markdown: each arm's test error, cost and the published ImageNet error.

    Example:
        >>> table([ArmSummary("shuffle", (0,), (0.1,), (), 35818, 2_000_000, 40.0)]).splitlines()[2]
        '| shuffle | 1 | 10.00 (1 seed) | 35,818 | 2.00M | 40 | 32.4 |'
    """
    lines = [
        "| arm | seeds | test error % (mean ± std) | parameters | MACs / image | training s / epoch "
        "| published ImageNet top-1 error % (ShuffleNet 1x, g = 8) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.arm} | {len(row.seeds)} | {row.error()} | {row.params:,} | {row.macs / 1e6:.2f}M "
        f"| {row.seconds_per_epoch:.0f} | {PUBLISHED[row.arm]} |"
        for row in rows
    ]
    return "\n".join(lines)
