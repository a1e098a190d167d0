"""`groupconv experiment groups`: does AlexNet with 2 or 4 filter groups keep its accuracy?

The document's claim: "When trained with 2 filter groups, AlexNet is more efficient and
yet achieves the same if not lower validation error." This trains AlexNet with groups
1, 2 and 4 over several seeds on Fashion-MNIST and reports, per group count, the
validation error (mean ± sample std over seeds), parameters, MACs per image and seconds
per epoch, beside the published ImageNet numbers (Ioannou et al., the data behind the
document's figure).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..train import TrainConfig
from .runner import run_all

# groups: (top-5 error %, top-1 error %, parameters, MACs): AlexNet on ImageNet, filter groups in conv2/4/5
PUBLISHED = {
    1: ("18.97", "41.80", "62.38M", "1135M"),
    2: ("18.14", "41.84", "60.97M", "724M"),
    4: ("19.38", "43.46", "60.26M", "519M"),
}


@dataclass(frozen=True)
class GroupRow:
    """One group count, aggregated over seeds. Errors are fractions; curves are per epoch."""

    groups: int
    seeds: tuple[int, ...]
    final_errors: tuple[float, ...]  # one per seed, after the last epoch
    error_curves: tuple[tuple[float, ...], ...]  # [seed][epoch]
    params: int
    macs: int
    seconds_per_epoch: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.final_errors)

    @property
    def std(self) -> float:
        return statistics.stdev(self.final_errors) if len(self.final_errors) > 1 else 0.0


def run(
    out: str | Path,
    groups: Sequence[int] = (1, 2, 4),
    seeds: Sequence[int] = (0, 1, 2),
    jobs: int = 1,
    data_dir: str | Path | None = None,
    progress: bool = True,
    **config,
) -> list[GroupRow]:
    """Train every (groups, seed) pair, then write ``groups.md``, ``groups.json`` and ``groups.png`` to ``out``.

    ``config`` holds the other :class:`TrainConfig` fields (epochs, width, train_subset, ...).
    """
    out = Path(out)
    configs = [TrainConfig(model="alexnet", groups=g, seed=s, **config) for g in groups for s in seeds]
    metrics = run_all(configs, out / "runs", jobs=jobs, data_dir=data_dir, progress=progress)
    rows = [aggregate(g, [m for m in metrics if m["config"]["groups"] == g]) for g in groups]
    (out / "groups.md").write_text(table(rows) + "\n")
    (out / "groups.json").write_text(json.dumps([_row_dict(row) for row in rows], indent=2) + "\n")
    plot(rows, out / "groups.png")
    return rows


def aggregate(groups: int, metrics: Sequence[dict]) -> GroupRow:
    """One :class:`GroupRow` from the ``metrics.json`` contents of one group count's runs."""
    curves = tuple(tuple(epoch["val_error"] for epoch in m["epochs"]) for m in metrics)
    seconds = [epoch["seconds"] for m in metrics for epoch in m["epochs"]]
    return GroupRow(
        groups=groups,
        seeds=tuple(m["config"]["seed"] for m in metrics),
        final_errors=tuple(curve[-1] for curve in curves),
        error_curves=curves,
        params=metrics[0]["params"],
        macs=metrics[0]["macs_per_image"],
        seconds_per_epoch=statistics.fmean(seconds),
    )


def table(rows: Sequence[GroupRow]) -> str:
    """A Markdown table: this run's numbers, then the published ImageNet ones for the same group count.

    Example:
        >>> dense = GroupRow(1, (0, 1), (0.10, 0.10), ((0.2, 0.10), (0.2, 0.10)), 116554, 5247744, 65.0)
        >>> grouped = GroupRow(2, (0, 1), (0.10, 0.12), ((0.2, 0.10), (0.2, 0.12)), 92874, 3146624, 61.0)
        >>> print(table([dense, grouped]).splitlines()[3])
        | 2 | 11.00 ± 1.41 | 92,874 (-20.3%) | 3.15M (-40.0%) | 61 | 18.14 / 41.84 | 60.97M | 724M |
    """
    base = rows[0]
    lines = [
        "| groups | val error % (mean ± std) | parameters | MACs / image | s / epoch "
        "| ImageNet top-5 / top-1 error % | ImageNet parameters | ImageNet MACs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        top5, top1, params, macs = PUBLISHED.get(row.groups, ("-", "-", "-", "-"))
        lines.append(
            f"| {row.groups} | {_error(row)} "
            f"| {row.params:,}{_change(row.params, base.params if row.groups != base.groups else None)} "
            f"| {row.macs / 1e6:.2f}M{_change(row.macs, base.macs if row.groups != base.groups else None)} "
            f"| {row.seconds_per_epoch:.0f} | {top5} / {top1} | {params} | {macs} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[GroupRow], path: Path) -> None:
    """Validation error per epoch (mean, and each seed faintly) and final error against MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, cost) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for row, colour in zip(rows, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        epochs = range(1, len(row.error_curves[0]) + 1)
        for curve in row.error_curves:
            curves.plot(epochs, [100 * e for e in curve], color=colour, alpha=0.25, linewidth=1)
        mean_curve = [100 * statistics.fmean(values) for values in zip(*row.error_curves)]
        curves.plot(epochs, mean_curve, color=colour, marker="o", label=f"groups={row.groups}")
        finals = [100 * error for error in row.final_errors]
        cost.scatter([row.macs / 1e6] * len(finals), finals, color=colour, alpha=0.4)
        cost.errorbar(row.macs / 1e6, 100 * row.mean, yerr=100 * row.std, color=colour, marker="s", capsize=4,
                      label=f"groups={row.groups}")  # fmt: skip
    curves.set(xlabel="epoch", ylabel="validation error (%)", title="AlexNet on Fashion-MNIST, per seed and mean")
    curves.set_xticks(list(epochs))
    cost.set(xlabel="MACs per image (millions)", ylabel="final validation error (%)", title="error against cost")
    curves.legend()
    cost.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _error(row: GroupRow) -> str:
    """``19.34 ± 0.59`` in percent; one seed has no spread to show."""
    spread = f"± {100 * row.std:.2f}" if len(row.final_errors) > 1 else "(1 seed)"
    return f"{100 * row.mean:.2f} {spread}"


def _change(value: int, base: int | None) -> str:
    return "" if base is None else f" ({100 * (value - base) / base:+.1f}%)"


def _row_dict(row: GroupRow) -> dict:
    return {
        "groups": row.groups,
        "seeds": list(row.seeds),
        "val_error_mean": row.mean,
        "val_error_std": row.std,
        "final_errors": list(row.final_errors),
        "params": row.params,
        "macs_per_image": row.macs,
        "seconds_per_epoch": row.seconds_per_epoch,
    }
