"""`groupconv experiment groups`: does AlexNet with 2 or 4 filter groups keep its accuracy?

The claim of *A Deeper Understanding of Grouped Convolution*: "When trained with 2 filter
groups, AlexNet is more efficient and yet achieves the same if not lower validation
error." Arms: AlexNet (width 0.125) with groups 1, 2 and 4, and ``g2-wide``, groups=2
widened (``widen``) to groups=1's parameter count, each over the same seeds, trained on
Fashion-MNIST's 60,000 training images less 5,000 held out for validation, and measured
once on its 10,000 test images. Every arm uses the same recipe (:data:`RECIPE`).
Differences from groups=1 are paired by seed, with 95% t-intervals and two one-sided
tests against :data:`MARGIN`, which was fixed before any run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from ..train import TrainConfig
from .arms import ArmSummary, Report, run_arms
from .runner import Run

# The same for every arm and seed; chosen before the runs from a pilot's learning curve and the time budget.
RECIPE = dict(
    model="alexnet",
    dataset="fashion-mnist",
    width=0.125,
    dropout=0.25,
    validation=5000,
    epochs=15,
    batch_size=128,
    lr=2e-3,
    weight_decay=0.05,
    schedule="one-cycle",
    augment=True,
)
MARGIN = 0.5  # percentage points of test error: "the same" means within ±0.5 pp (stated before the runs)
SEEDS = (0, 1, 2, 3, 4)
# arm: TrainConfig fields; widen=1.115 gives groups=2 116,621 parameters against groups=1's 116,554 (+0.06%)
ARMS = {"g1": dict(groups=1), "g2": dict(groups=2), "g4": dict(groups=4), "g2-wide": dict(groups=2, widen=1.115)}
# groups: (top-5 error %, top-1 error %, parameters, MACs): AlexNet on ImageNet, filter groups in conv2/4/5
PUBLISHED = {
    1: ("18.97", "41.80", "62.38M", "1135M"),
    2: ("18.14", "41.84", "60.97M", "724M"),
    4: ("19.38", "43.46", "60.26M", "519M"),
}


def runs(seeds: Sequence[int] = SEEDS, arms: Sequence[str] = tuple(ARMS), **recipe) -> list[Run]:
    """Every (arm, seed), seed by seed, so that whole pairs finish first; ``recipe`` overrides :data:`RECIPE`."""
    fields = {**RECIPE, **recipe}
    return [Run(arm, TrainConfig(**fields, **ARMS[arm], seed=seed)) for seed in seeds for arm in arms]


def run(
    out: str | Path,
    seeds: Sequence[int] = SEEDS,
    jobs: int = 1,
    data_dir: str | Path | None = None,
    progress: bool = True,
    train: bool = True,
    **recipe,
) -> Report:
    """Train every unfinished run (unless ``train`` is False), then write ``groups.md``, ``groups.json`` and
    ``groups.png`` to ``out`` from the runs that have finished."""
    running = dict(jobs=jobs, data_dir=data_dir, progress=progress, train=train)
    return run_arms("groups", runs(seeds, **recipe), out, table, MARGIN, plot, **running)


def table(rows: Sequence[ArmSummary]) -> str:
    """Markdown: each arm's test error, parameters, MACs, s/epoch, beside the published ImageNet AlexNet.

    Example:
        >>> dense = ArmSummary("g1", (0, 1), (0.10, 0.10), (), 116554, 5247744, 65.0)
        >>> grouped = ArmSummary("g2", (0, 1), (0.10, 0.12), (), 92874, 3146624, 61.0)
        >>> print(table([dense, grouped]).splitlines()[3])
        | g2 | 2 | 11.00 ± 1.41 | 92,874 (−20.3%) | 3.15M (−40.0%) | 61 | 18.14 / 41.84 | 60.97M | 724M |
    """
    base = rows[0]
    lines = [
        "| arm | seeds | test error % (mean ± std) | parameters | MACs / image | training s / epoch "
        "| ImageNet top-5 / top-1 error % | ImageNet parameters | ImageNet MACs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        published = PUBLISHED.get(int(row.arm[1]), ("-",) * 4) if row.arm in ("g1", "g2", "g4") else ("-",) * 4
        top5, top1, params, macs = published
        first = row is base
        lines.append(
            f"| {row.arm} | {len(row.seeds)} | {row.error()} | {row.params:,}{_change(row.params, base.params, first)} "
            f"| {row.macs / 1e6:.2f}M{_change(row.macs, base.macs, first)} | {row.seconds_per_epoch:.0f} "
            f"| {top5} / {top1} | {params} | {macs} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[ArmSummary], path: Path) -> None:
    """Validation error per epoch (each seed faintly, the mean bold), test error against MACs, and the published
    ImageNet AlexNet's top-1 error against its MACs beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, cost, published) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for row, colour in zip(rows, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        epochs = range(1, len(row.val_curves[0]) + 1)
        for curve in row.val_curves:
            curves.plot(epochs, [100 * e for e in curve], color=colour, alpha=0.25, linewidth=1)
        mean_curve = [100 * statistics.fmean(values) for values in zip(*row.val_curves)]
        curves.plot(epochs, mean_curve, color=colour, marker="o", markersize=3, label=row.arm)
        cost.scatter([row.macs / 1e6] * len(row.test_errors), [100 * e for e in row.test_errors], color=colour,
                     alpha=0.4)  # fmt: skip
        cost.errorbar(row.macs / 1e6, 100 * row.mean, yerr=100 * (row.std or 0), color=colour, marker="s",
                      capsize=4, label=f"{row.arm} (seeds: {len(row.seeds)})")  # fmt: skip
    curves.set(xlabel="epoch", ylabel="validation error (%)", title="AlexNet on Fashion-MNIST: learning curves")
    curves.set_ylim(top=min(30, curves.get_ylim()[1]))
    cost.set(xlabel="MACs per image (millions)", ylabel="test error (%)", title="test error against cost")
    for (groups, (_, top1, _, macs)), colour in zip(PUBLISHED.items(), ("tab:blue", "tab:orange", "tab:green")):
        published.scatter(float(macs[:-1]), float(top1), color=colour, marker="s", label=f"groups={groups}")
    published.set(xlabel="MACs per image (millions)", ylabel="ImageNet top-1 error (%)",
                  title="published: AlexNet on ImageNet (Ioannou et al.)")  # fmt: skip
    curves.legend()
    cost.legend()
    published.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _change(value: int, base: int, first: bool) -> str:
    return "" if first else f" ({100 * (value - base) / base:+.1f}%)".replace("-", "−")
