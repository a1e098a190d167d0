"""`groupconv experiment specialisation`: do conv1's filters split into grey and colour by group?

Krizhevsky et al. saw AlexNet's two filter groups divide conv1 into black-and-white and
colour filters. Here AlexNet with 2 filter groups (conv2, conv4, conv5), and a groups=1
control, train on the colour emoji set over several seeds, and for every conv1 filter
``w`` (3 x k x k) we measure its *colour share*: the fraction of its energy outside the
grey direction ``(1, 1, 1)/sqrt(3)`` of RGB space,

    colour share = 1 - sum_pixels((w_R + w_G + w_B)^2 / 3) / sum(w^2)

0 for a filter that weighs R, G and B equally everywhere (black-and-white), 2/3 on
average for random weights, up to 1 for a filter blind to brightness.

conv1's output channels 0 .. c/2-1 feed conv2's first group and the rest its second.
The statistic is ``|mean share of half 1 - mean share of half 2|``, averaged over seeds
(which half turns colourful is arbitrary, hence the absolute value). Its p-value comes
from random equal splits of the same filters in every run: the share of random splits
whose statistic is at least the observed one, ``(1 + hits) / (1 + permutations)``. In
the groups=1 control the halves mean nothing, so its p-value should be unremarkable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..filters import draw_filters
from ..train import TrainConfig, build_model, load_checkpoint
from .runner import run_all, run_name

LAYER = "features.conv1"


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
    observed, null = 0.0, torch.zeros(permutations)
    for run in shares:
        count = len(run)
        halves = torch.arange(count) < count // 2
        observed += half_difference(run, halves).item() / len(shares)
        order = torch.rand(permutations, count, generator=generator).argsort(1)
        null += half_difference(run.expand(permutations, -1), order < count // 2) / len(shares)
    hits = int((null >= observed - 1e-12).sum())
    return observed, (1 + hits) / (1 + permutations)


@dataclass(frozen=True)
class RunShares:
    """One trained run's conv1 colour shares by half, its error on the test split, and how far
    conv1 moved from its initial weights: ``|W - W0| / |W0|`` and the mean colour share of ``W0``."""

    groups: int
    seed: int
    val_error: float
    first_half: float
    second_half: float
    moved: float
    initial_share: float
    figure: str


@dataclass(frozen=True)
class GroupsResult:
    """The permutation test over all seeds of one group count."""

    groups: int
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Report:
    runs: tuple[RunShares, ...]
    tests: tuple[GroupsResult, ...]
    permutations: int

    def __str__(self) -> str:
        lines = [
            "| groups | seed | val error % | colour share, filters feeding group 1 | feeding group 2 | difference "
            "| conv1 moved from init | colour share at init |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.groups} | {r.seed} | {100 * r.val_error:.2f} | {r.first_half:.3f} | {r.second_half:.3f} "
            f"| {abs(r.first_half - r.second_half):.3f} | {100 * r.moved:.0f}% | {r.initial_share:.3f} |"
            for r in self.runs
        ]
        lines += ["", "| groups | mean difference over seeds | permutation p-value |", "|---|---|---|"]
        lines += [f"| {t.groups} | {t.statistic:.3f} | {t.p_value:.4f} |" for t in self.tests]
        lines.append(f"\n({self.permutations:,} random splits; p = (1 + splits at least as different) / (1 + splits))")
        return "\n".join(lines)


def run(
    out: str | Path,
    groups: Sequence[int] = (2, 1),
    seeds: Sequence[int] = (0, 1, 2),
    jobs: int = 1,
    data_dir: str | Path | None = None,
    permutations: int = 10000,
    progress: bool = True,
    **config,
) -> Report:
    """Train each (groups, seed) on the emoji set, measure conv1, write the report and figures to ``out``."""
    out = Path(out)
    configs = [TrainConfig(model="alexnet", dataset="emoji", groups=g, seed=s, **config) for g in groups for s in seeds]
    metrics = run_all(configs, out / "runs", jobs=jobs, data_dir=data_dir, progress=progress)
    runs, shares = [], {g: [] for g in groups}
    for config, run_metrics in zip(configs, metrics):
        model, _ = load_checkpoint(out / "runs" / run_name(config))
        share = colour_share(model.get_submodule(LAYER).weight)
        shares[config.groups].append(share)
        runs.append(_measure(config, run_metrics, share, model, out))
    tests = tuple(GroupsResult(g, *permutation_test(shares[g], permutations)) for g in groups)
    report = Report(tuple(runs), tests, permutations)
    (out / "specialisation.md").write_text(str(report) + "\n")
    (out / "specialisation.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _measure(config: TrainConfig, metrics: dict, share: torch.Tensor, model, out: Path) -> RunShares:
    """One run's half means, its distance from its initial conv1, and its conv1 figure."""
    half = len(share) // 2
    means = (share[:half].mean().item(), share[half:].mean().item())
    torch.manual_seed(config.seed)  # as train() does: the same seed rebuilds the initial weights
    initial = build_model(config).get_submodule(LAYER).weight.detach()
    trained = model.get_submodule(LAYER).weight.detach()
    moved = ((trained - initial).norm() / initial.norm()).item()
    figure = f"conv1-{run_name(config)}.png"
    notes = [f"mean colour share {m:.2f}" for m in means] if config.groups == 2 else None
    title = f"conv1 of AlexNet groups={config.groups}, seed {config.seed}, trained on emoji"
    draw_filters(model, LAYER, out / figure, title=title, notes=notes)
    error = metrics["epochs"][-1]["val_error"]
    return RunShares(config.groups, config.seed, error, *means, moved, colour_share(initial).mean().item(), figure)
