"""`groupconv experiment specialisation`: do conv1's filters split into grey and colour by group?

Krizhevsky et al. saw AlexNet's two filter groups divide conv1 into black-and-white and
colour filters. Here AlexNet with 2 filter groups (conv2, conv4, conv5) and a groups=1
control train on colour photo patches (:mod:`groupconv.training.data.photos`), with a
conv1 of 48 filters (24 feeding each of conv2's groups), and for every conv1 filter
``w`` (3 x k x k) we measure its *colour share*: the fraction of its energy outside the
grey direction ``(1, 1, 1)/sqrt(3)`` of RGB space,

    colour share = 1 - sum_pixels((w_R + w_G + w_B)^2 / 3) / sum(w^2)

0 for a filter that weighs R, G and B equally everywhere (black-and-white), 2/3 on
average for random weights, up to 1 for a filter blind to brightness.

conv1's output channels 0-23 feed conv2's first group and 24-47 its second. The
statistic is ``|mean share of half 1 - mean share of half 2|``, averaged over seeds
(which half turns colourful is arbitrary, hence the absolute value); its p-value comes
from random equal splits of the same filters, ``(1 + hits) / (1 + permutations)``. It is
computed on the initial weights (where any difference is chance), the trained weights,
and the learned change (trained - initial), for the grouped network and the control.

Two checks make a null result mean something: a grey-image twin of the control
(``g1-grey``) measures how much colour carries the class (the gap in test error), and a
*positive control* plants a split into the control's trained filters, one half's
colour component scaled by ``s`` (``s = 0``: that half black-and-white, the split the
seed describes), and counts how often the test detects it (its power).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..filters import draw_weights
from ..train import TrainConfig, build_model
from .arms import ArmSummary, comparison_table, summarise
from .runner import Run, run_all

LAYER = "features.conv1"
RECIPE = dict(
    model="alexnet",
    dataset="photos",
    width=0.25,
    conv1_channels=48,  # 24 filters feeding each of conv2's groups, in a network otherwise at width 0.25
    dropout=0.25,
    validation=500,
    epochs=30,
    batch_size=64,
    lr=2e-3,
    weight_decay=0.05,
    schedule="one-cycle",
    augment=True,
)
SEEDS = (0, 1, 2, 3, 4)
GREY_SEEDS = 3  # the colour gap needs fewer seeds: its effect is large
ARMS = {"g1": dict(groups=1), "g2": dict(groups=2), "g1-grey": dict(groups=1, greyscale=True)}
STATES = ("initial", "trained", "change")
PLANTED_SCALES = (1.0, 0.9, 0.8, 0.6, 0.3, 0.0)  # the colour kept in the planted half; 0: the seed's full split
MARGIN = 0.5  # percentage points (the comparison table's TOST; the colour gap is expected to be far larger)


def runs(seeds: Sequence[int] = SEEDS, **recipe) -> list[Run]:
    """g1 and g2 over ``seeds``, g1-grey over the first :data:`GREY_SEEDS` of them, seed by seed."""
    fields = {**RECIPE, **recipe}
    return [
        Run(arm, TrainConfig(**fields, **ARMS[arm], seed=seed), layers=(LAYER,))
        for index, seed in enumerate(seeds)
        for arm in ARMS
        if arm != "g1-grey" or index < GREY_SEEDS
    ]


def colour_share(weight: torch.Tensor) -> torch.Tensor:
    """Per filter of ``(O, 3, kH, kW)`` RGB weights: the share of its energy off the grey axis (float64).

    Example:
        >>> grey = torch.ones(1, 3, 2, 2)                       # R = G = B: no colour
        >>> red = torch.zeros(1, 3, 2, 2); red[:, 0] = 1        # red only: 1 - 1/3
        >>> opponent = torch.zeros(1, 3, 2, 2); opponent[:, 0], opponent[:, 1] = 1, -1  # R - G: all colour
        >>> [round(share, 4) for share in colour_share(torch.cat([grey, red, opponent])).tolist()]
        [0.0, 0.6667, 1.0]
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected RGB filters of shape (O, 3, kH, kW), got {tuple(weight.shape)}")
    weight = weight.detach().double()
    grey = weight.sum(1).square().sum((1, 2)) / 3
    return 1 - grey / weight.square().sum((1, 2, 3))


def half_difference(shares: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``|mean(shares[first]) - mean(shares[~first])|`` along the last axis (``first`` a boolean mask)."""
    first = first.to(shares.dtype)
    mean_first = (shares * first).sum(-1) / first.sum(-1)
    mean_second = (shares * (1 - first)).sum(-1) / (1 - first).sum(-1)
    return (mean_first - mean_second).abs()


def permutation_test(shares: Sequence[torch.Tensor], permutations: int = 10000, seed: int = 0) -> tuple[float, float]:
    """The statistic (half difference averaged over runs) and its permutation p-value.

    ``shares`` holds one run's per-filter colour shares per entry, in channel order; each
    run's first half of channels is compared with its second half. Every permutation
    splits each run's filters at random into two equal halves.

    Example (one run whose halves differ completely, 8 filters: 1 split in 35 is as extreme):
        >>> statistic, p = permutation_test([torch.tensor([0.1] * 4 + [0.9] * 4)], 20000)
        >>> round(statistic, 3), abs(p - 2 / 70) < 0.005
        (0.8, True)
    """
    generator = torch.Generator().manual_seed(seed)
    observed, null = 0.0, torch.zeros(permutations, dtype=torch.float64)
    for run in shares:
        count = len(run)
        halves = torch.arange(count) < count // 2
        observed += half_difference(run, halves).item() / len(shares)
        order = torch.rand(permutations, count, generator=generator).argsort(1)
        null += half_difference(run.expand(permutations, -1), order < count // 2) / len(shares)
    hits = int((null >= observed - 1e-12).sum())
    return observed, (1 + hits) / (1 + permutations)


def plant(weight: torch.Tensor, scale: float, first: torch.Tensor) -> torch.Tensor:
    """``weight`` with the colour component (the part off the grey axis) of the ``first`` filters times ``scale``.

    Example (a red filter, planted at 0, keeps only its grey part):
        >>> red = torch.zeros(1, 3, 1, 1); red[0, 0] = 3.0
        >>> plant(red, 0.0, torch.tensor([True])).flatten().tolist()
        [1.0, 1.0, 1.0]
    """
    grey = weight.mean(1, keepdim=True).expand_as(weight)
    factor = torch.where(first, scale, 1.0).to(weight.dtype).view(-1, 1, 1, 1)
    return grey + factor * (weight - grey)


def power(
    weights: Sequence[torch.Tensor], scales: Sequence[float] = PLANTED_SCALES, simulations: int = 100,
    permutations: int = 1000, seed: int = 0,
) -> list[tuple[float, float, float]]:  # fmt: skip
    """Per ``scale``: (scale, mean planted half difference, share of simulations whose p < 0.05).

    Each simulation shuffles every run's filters (so different filters form "half 1"),
    plants ``scale`` into half 1 and runs :func:`permutation_test` on the planted runs.
    """
    generator = torch.Generator().manual_seed(seed)
    results = []
    for scale in scales:
        differences, detected = [], 0
        for simulation in range(simulations):
            shares = []
            for weight in weights:
                order = torch.randperm(len(weight), generator=generator)
                first = torch.arange(len(weight)) < len(weight) // 2
                shares.append(colour_share(plant(weight.double()[order], scale, first)))
            statistic, p = permutation_test(shares, permutations, seed=seed + simulation)
            differences.append(statistic)
            detected += p < 0.05
        results.append((scale, sum(differences) / simulations, detected / simulations))
    return results


@dataclass(frozen=True)
class StateTest:
    """The test on one arm's conv1 in one state (initial, trained, change), over its finished seeds."""

    arm: str
    state: str
    seeds: int
    first_half: float  # mean colour share of the filters feeding conv2's group 1, over seeds
    second_half: float
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Report:
    summaries: dict[str, ArmSummary | None]
    tests: tuple[StateTest, ...]
    moved: dict[str, list[float]]  # arm: |W - W0| / |W0| per finished seed
    planted_initial: tuple[tuple[float, float, float], ...]  # (scale, planted difference, power) on initial conv1s
    initial_seeds: int  # how many seeds' initial conv1s planted_initial used
    planted_trained: tuple[tuple[float, float, float], ...]  # the same on the control's trained conv1s
    missing: tuple[str, ...]
    permutations: int

    def tables(self) -> str:
        done = [summary for summary in self.summaries.values() if summary is not None]
        parts = [_arms_table(done)] if done else ["No run has finished yet."]
        if done and done[0].arm == "g1" and len(done) > 1:
            parts.append(comparison_table(done[0], done[1:], MARGIN))
        if self.tests:
            parts.append(_tests_table(self.tests, self.moved, self.permutations))
        parts.append(f"Power on the initial conv1 weights of the {self.initial_seeds} seeds (before any training):")
        parts.append(_power_table(self.planted_initial))
        if self.planted_trained:
            parts.append(f"Power on the control's trained conv1 weights ({len(self.moved['g1'])} seeds):")
            parts.append(_power_table(self.planted_trained))
        if self.missing:
            parts.append(f"Still missing ({len(self.missing)} runs): {', '.join(self.missing)}.")
        return "\n\n".join(parts)


def run(
    out: str | Path,
    seeds: Sequence[int] = SEEDS,
    jobs: int = 1,
    data_dir: str | Path | None = None,
    progress: bool = True,
    train: bool = True,
    permutations: int = 10000,
    **recipe,
) -> Report:
    """Train the unfinished runs (unless ``train`` is False), test conv1, write the report and figures to ``out``."""
    out = Path(out)
    planned = runs(seeds, **recipe)
    metrics = run_all(planned, out / "runs", jobs=jobs, data_dir=data_dir, progress=progress, train=train)
    report = analyse(planned, metrics, out / "runs", permutations)
    out.mkdir(parents=True, exist_ok=True)
    (out / "specialisation.md").write_text(report.tables() + "\n")
    (out / "specialisation.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    _figures(planned, metrics, out)
    return report


def analyse(planned: Sequence[Run], metrics: Sequence[dict | None], runs_dir: Path, permutations: int) -> Report:
    """The report from the finished runs' metrics and their ``layers.pt`` (initial and trained conv1)."""
    arms = dict.fromkeys(run.arm for run in planned)
    summaries = {arm: summarise(arm, [m for r, m in zip(planned, metrics) if r.arm == arm]) for arm in arms}
    weights = {arm: [] for arm in arms}
    for run, m in zip(planned, metrics):
        if m is not None:
            layer = torch.load(runs_dir / run.name / "layers.pt", weights_only=True)[LAYER]
            weights[run.arm].append((layer["initial"].double(), layer["trained"].double()))
    tests = tuple(
        _state_test(arm, state, pairs, permutations)
        for arm in ("g2", "g1")
        for state in STATES
        if (pairs := weights[arm])
    )
    moved = {arm: [((t - i).norm() / i.norm()).item() for i, t in pairs] for arm, pairs in weights.items() if pairs}
    initial = [initial_conv1(run.config) for run in planned if run.arm == "g1"]
    trained = [trained for _, trained in weights["g1"]]
    planted_initial = tuple(power(initial, permutations=min(permutations, 1000)))
    planted_trained = tuple(power(trained, permutations=min(permutations, 1000))) if trained else ()
    missing = tuple(r.name for r, m in zip(planned, metrics) if m is None)
    return Report(summaries, tests, moved, planted_initial, len(initial), planted_trained, missing, permutations)


def initial_conv1(config: TrainConfig) -> torch.Tensor:
    """conv1's weights as ``config``'s run starts (train() seeds the generator, then builds the model)."""
    torch.manual_seed(config.seed)
    return build_model(config).get_submodule(LAYER).weight.detach().double()


def _state_test(arm: str, state: str, pairs, permutations: int) -> StateTest:
    chosen = {"initial": lambda i, t: i, "trained": lambda i, t: t, "change": lambda i, t: t - i}[state]
    shares = [colour_share(chosen(initial, trained)) for initial, trained in pairs]
    half = len(shares[0]) // 2
    first = sum(share[:half].mean().item() for share in shares) / len(shares)
    second = sum(share[half:].mean().item() for share in shares) / len(shares)
    statistic, p = permutation_test(shares, permutations)
    return StateTest(arm, state, len(shares), first, second, statistic, p)


def _arms_table(rows: Sequence[ArmSummary]) -> str:
    lines = [
        "| arm | seeds | test error % (mean ± std) | parameters | MACs / image | training s / epoch |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.arm} | {len(row.seeds)} | {row.error()} | {row.params:,} | {row.macs / 1e6:.2f}M "
        f"| {row.seconds_per_epoch:.0f} |"
        for row in rows
    ]
    return "\n".join(lines)


def _tests_table(tests: Sequence[StateTest], moved: dict[str, list[float]], permutations: int) -> str:
    """Markdown: per arm and state, the halves' mean colour shares, the statistic and its p-value.

    Example:
        >>> test = StateTest("g2", "trained", 5, 0.70, 0.40, 0.30, 0.0123)
        >>> _tests_table([test], {"g2": [0.5, 0.7]}, 1000).splitlines()[2]
        '| g2 | trained | 5 | 0.700 | 0.400 | 0.300 | 0.0123 | 60% |'
    """
    lines = [
        "| arm | conv1 weights | seeds | colour share, filters feeding group 1 | feeding group 2 "
        "| mean difference over seeds | permutation p-value | conv1 moved from init (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test in tests:
        distance = moved.get(test.arm) or [math.nan]
        lines.append(
            f"| {test.arm} | {test.state} | {test.seeds} | {test.first_half:.3f} | {test.second_half:.3f} "
            f"| {test.statistic:.3f} | {test.p_value:.4f} | {100 * sum(distance) / len(distance):.0f}% |"
        )
    lines.append(f"\n({permutations:,} random splits; p = (1 + splits at least as different) / (1 + splits))")
    return "\n".join(lines)


def _power_table(planted: Sequence[tuple[float, float, float]]) -> str:
    lines = [
        "| colour kept in the planted half | planted mean difference | power (p < 0.05) |",
        "|---|---|---|",
    ]
    lines += [f"| {scale:.1f} | {difference:.3f} | {100 * detected:.0f}% |" for scale, difference, detected in planted]
    return "\n".join(lines)


def _figures(planned: Sequence[Run], metrics: Sequence[dict | None], out: Path) -> None:
    """conv1 by group for each arm's first finished seed: trained, and the learned change (trained - initial)."""
    drawn = set()
    for run, m in zip(planned, metrics):
        if m is None or run.arm in drawn or run.arm == "g1-grey":
            continue
        drawn.add(run.arm)
        layer = torch.load(out / "runs" / run.name / "layers.pt", weights_only=True)[LAYER]
        groups = run.config.groups if run.config.groups > 1 else 2  # the control's halves, for comparison
        for state, weight in (("trained", layer["trained"]), ("change", layer["trained"] - layer["initial"])):
            shares = colour_share(weight)
            half = len(shares) // 2
            notes = [f"mean colour share {shares[:half].mean():.2f}", f"mean colour share {shares[half:].mean():.2f}"]
            title = f"conv1 of AlexNet groups={run.config.groups}, seed {run.config.seed}, {state}"
            draw_weights(weight, groups, out / f"conv1-{run.name}-{state}.png", title, notes)
