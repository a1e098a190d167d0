"""What the arm-versus-arm experiments share: summaries per arm, differences paired by seed, their tables.

An *arm* is one configuration trained over several seeds (``g2``, ``g2-wide``, ``c8``...).
Errors are the test error each run measured once, after training; pairs are formed by
seed, so two arms are compared on the same seeds' data order and augmentation.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .runner import Run, run_all
from .stats import Paired, paired, seeds_for_difference, seeds_for_equivalence


@dataclass(frozen=True)
class ArmSummary:
    """One arm's finished runs: test errors (fractions) by seed, validation curves, cost."""

    arm: str
    seeds: tuple[int, ...]
    test_errors: tuple[float, ...]
    val_curves: tuple[tuple[float, ...], ...]  # [seed][epoch]
    params: int
    macs: int
    seconds_per_epoch: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test_errors)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.test_errors) if len(self.test_errors) > 1 else None

    def error(self) -> str:
        """``9.12 ± 0.21`` in percent; one seed has no spread to show."""
        spread = f"± {100 * self.std:.2f}" if self.std is not None else "(1 seed)"
        return f"{100 * self.mean:.2f} {spread}"

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.test_errors))


@dataclass(frozen=True)
class Report:
    """An arms experiment's finished arms (None: none of an arm's runs finished), missing runs, and its tables."""

    summaries: dict[str, ArmSummary | None]
    missing: tuple[str, ...]
    margin: float
    text: str

    def tables(self) -> str:
        return self.text


def run_arms(
    name: str,
    planned: Sequence[Run],
    out: str | Path,
    table: Callable[[Sequence[ArmSummary]], str],
    margin: float,
    plot: Callable[[Sequence[ArmSummary], Path], None] | None = None,
    **running,
) -> Report:
    """Train ``planned``'s unfinished runs (``running``: run_all's jobs, data_dir, progress, train), then write
    ``name``.md (:func:`report`'s text), ``name``.json and, with ``plot``, ``name``.png to ``out``."""
    out = Path(out)
    result = report(planned, run_all(planned, out / "runs", **running), table, margin)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(result.text + "\n")
    fields = {key: value for key, value in asdict(result).items() if key != "text"}
    (out / f"{name}.json").write_text(json.dumps(fields, indent=2) + "\n")
    done = [summary for summary in result.summaries.values() if summary is not None]
    if plot is not None and done:
        plot(done, out / f"{name}.png")
    return result


def report(planned: Sequence[Run], metrics: Sequence[dict | None], table, margin: float) -> Report:
    """The arms' ``table``, the differences from the first arm paired by seed, and the runs still missing."""
    arms = dict.fromkeys(run.arm for run in planned)
    summaries = {arm: summarise(arm, [m for run, m in zip(planned, metrics) if run.arm == arm]) for arm in arms}
    missing = tuple(run.name for run, m in zip(planned, metrics) if m is None)
    done = [summary for summary in summaries.values() if summary is not None]
    if not done:
        return Report(summaries, missing, margin, f"No run has finished yet; missing: {', '.join(missing)}.")
    text = table(done)
    if done[0].arm == next(iter(arms)) and len(done) > 1:
        text += "\n\n" + comparison_table(done[0], done[1:], margin)
    if missing:
        text += f"\n\nStill missing ({len(missing)} runs): {', '.join(missing)}."
    return Report(summaries, missing, margin, text)


def summarise(arm: str, metrics: Sequence[dict | None]) -> ArmSummary | None:
    """The summary of ``arm``'s finished runs (None entries are runs still missing); None if none finished."""
    done = [m for m in metrics if m is not None]
    if not done:
        return None
    return ArmSummary(
        arm=arm,
        seeds=tuple(m["config"]["seed"] for m in done),
        test_errors=tuple(m["test_error"] for m in done),
        val_curves=tuple(tuple(epoch["val_error"] for epoch in m["epochs"]) for m in done),
        params=done[0]["params"],
        macs=done[0]["macs_per_image"],
        # the median: a run paused while a benchmark times the machine has a few epochs hours long
        seconds_per_epoch=statistics.median(epoch["seconds"] for m in done for epoch in m["epochs"]),
    )


def compare(base: ArmSummary, other: ArmSummary, margin: float) -> Paired:
    """``other`` minus ``base`` in percentage points, paired over the seeds both have finished."""
    mine, theirs = base.by_seed(), other.by_seed()
    differences = [100 * (theirs[seed] - mine[seed]) for seed in sorted(set(mine) & set(theirs))]
    return paired(differences, margin)


def comparison_table(base: ArmSummary, others: Sequence[ArmSummary], margin: float) -> str:
    """Markdown: each arm minus ``base`` (pp), paired by seed, with its 95% interval and TOST p-value.

    Example:
        >>> a = ArmSummary("g1", (0, 1, 2), (0.10, 0.11, 0.12), (), 1, 1, 1.0)
        >>> b = ArmSummary("g2", (0, 1, 2), (0.11, 0.12, 0.14), (), 1, 1, 1.0)
        >>> print(comparison_table(a, [b], margin=0.5).splitlines()[2])
        | g2 − g1 | 3 | +1.33 | 0.58 | [−0.10, +2.77] | 0.935 | not shown | not reachable at this mean | 4 |
    """
    lines = [
        f"| difference | seeds paired | mean (pp) | sd (pp) | 95% interval (pp) | TOST p (margin ±{margin} pp) "
        "| equivalent? | seeds a TOST would need | seeds to exclude 0 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for other in others:
        result = compare(base, other, margin)
        lines.append(f"| {other.arm} − {base.arm} | {result.count} | {_signed(result.mean)} | " + _rest(result) + " |")
    return "\n".join(lines)


def _rest(result: Paired) -> str:
    if result.sd is None:
        return "- | needs 2 seeds | - | - | - | -"
    verdict = "yes" if result.tost_p < 0.05 else "not shown"
    equivalence = seeds_for_equivalence(result.sd, result.margin, result.mean)
    difference = seeds_for_difference(result.sd, result.mean)
    interval = f"[{_signed(result.low)}, {_signed(result.high)}]"
    return (
        f"{result.sd:.2f} | {interval} | {result.tost_p:.3f} | {verdict} "
        f"| {'not reachable at this mean' if equivalence is None else equivalence} "
        f"| {'not reachable' if difference is None else difference}"
    )


def _signed(value: float) -> str:
    """``+1.33`` / ``−0.10`` (a true minus sign)."""
    return f"{value:+.2f}".replace("-", "−")
