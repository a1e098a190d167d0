"""`groupconv experiment cardinality`: does cardinality beat width at equal parameters (ResNeXt)?

Xie et al. (ResNeXt) hold parameters and MACs fixed and trade the bottleneck width d for
the cardinality C: ResNet-50 (1×64d) has 23.9% top-1 error on ImageNet, ResNeXt-50
(32×4d) 22.2%. Here a small ResNeXt (:func:`groupconv.models.resnext`, one block per
stage of 32, 64 and 128 channels, each stage halving the image) is trained at
cardinality 1, 2, 4, 8 and 16 with the bottleneck width set so that every arm's
parameters are within ±3% of cardinality 1's, on 20,000 Fashion-MNIST training
images (a fresh draw per seed, the same for every cardinality); differences from
cardinality 1 are paired by seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...models.resnext import SMALL_STAGES
from ..train import TrainConfig
from .arms import ArmSummary, Report, run_arms
from .groups import RECIPE as GROUPS_RECIPE
from .runner import Run

# The groups experiment's recipe on 20,000 of its 55,000 training images for 5 epochs: at cardinality 16 an image
# costs about 9x AlexNet's (16 groups of 4-18 channels), so the full set would take about 4 hours per seed.
RECIPE = {**GROUPS_RECIPE, "model": "resnext", "epochs": 5, "train_subset": 20000}
RECIPE.pop("width")
MARGIN = 0.5  # percentage points, as in the groups experiment
SEEDS = (0, 1, 2)
# cardinality: first-stage bottleneck width d (stages use d, 2d, 4d, rounded), parameters within ±1.1% of C=1's
ARMS = {"c1": (1, 24.0), "c2": (2, 16.25), "c4": (4, 10.75), "c8": (8, 7.0), "c16": (16, 4.5)}
# the ResNeXt paper's ImageNet top-1 error at equal complexity (Table 3 / 4): ResNet-50 1x64d and ResNeXt-50 32x4d
PUBLISHED = "ResNet-50 (1×64d) 23.9% → ResNeXt-50 (2×40d) 23.0% → (4×24d) 22.6% → (8×14d) 22.3% → (32×4d) 22.2%"


def runs(seeds: Sequence[int] = SEEDS, **recipe) -> list[Run]:
    fields = {**RECIPE, **recipe}
    return [
        Run(arm, TrainConfig(**fields, groups=cardinality, bottleneck_width=width, seed=seed))
        for seed in seeds
        for arm, (cardinality, width) in ARMS.items()
    ]


def run(out, seeds=SEEDS, jobs=1, data_dir=None, progress=True, train=True, **recipe) -> Report:
    """Train every unfinished run (unless ``train`` is False); write cardinality.md/.json/.png from the finished."""
    running = dict(jobs=jobs, data_dir=data_dir, progress=progress, train=train)
    return run_arms("cardinality", runs(seeds, **recipe), out, table, MARGIN, plot, **running)


def table(rows: Sequence[ArmSummary]) -> str:
    """Markdown: cardinality, bottleneck widths, seeds, test error, parameters (change from C=1), MACs, s/epoch.

    Example:
        >>> row = ArmSummary("c4", (0,), (0.1,), (), 146258, 10_000_000, 30.0)
        >>> table([row]).splitlines()[2]
        '| 4 | 11, 22, 43 | 1 | 10.00 (1 seed) | 146,258 | 10.00M | 30 |'
    """
    base = rows[0]
    lines = [
        "| cardinality | bottleneck widths d | seeds | test error % (mean ± std) | parameters | MACs / image "
        "| training s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cardinality, width = ARMS[row.arm]
        widths = ", ".join(str(max(1, round(width * 2**stage))) for stage in range(len(SMALL_STAGES)))
        change = "" if row is base else f" ({100 * (row.params - base.params) / base.params:+.1f}%)".replace("-", "−")
        lines.append(
            f"| {cardinality} | {widths} | {len(row.seeds)} | {row.error()} | {row.params:,}{change} "
            f"| {row.macs / 1e6:.2f}M | {row.seconds_per_epoch:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[ArmSummary], path: Path) -> None:
    """Test error against cardinality: each seed, and the mean with its 95% t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .stats import t_quantile

    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for row in rows:
        cardinality = ARMS[row.arm][0]
        axis.scatter([cardinality] * len(row.test_errors), [100 * e for e in row.test_errors], color="tab:blue",
                     alpha=0.35)  # fmt: skip
        half = t_quantile(0.975, len(row.seeds) - 1) * row.std / len(row.seeds) ** 0.5 if row.std else 0
        axis.errorbar(cardinality, 100 * row.mean, yerr=100 * half, color="tab:blue", marker="s", capsize=4)
    axis.set_xscale("log", base=2)
    axis.set(xlabel="cardinality C (parameters held within ±3%)", ylabel="test error (%)",
             title="small ResNeXt on Fashion-MNIST: mean, 95% interval, seeds")  # fmt: skip
    figure.savefig(path, dpi=120)
    plt.close(figure)
