"""One timer for every measurement: warm-up, then contenders interleaved round-robin.

Timing contenders side by side in one process, one call each per round, means a load
drift on a shared machine (another process waking up, the clock throttling) lands on
all of them alike; each round also starts with a different contender, so none always
runs on caches the previous one warmed. Each contender's time is the median of its
rounds, with the interquartile range as its spread. A spread larger than the settings
allow means the machine was busy: every contender is timed again, and if the spread stays
large the timer warns. :func:`beats` is the margin every decision uses: faster round by
round, beyond the noise. Threads are whatever ``torch.get_num_threads()`` says: the timer never
changes them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar


@dataclasses.dataclass(frozen=True)
class TimerSettings:
    """How long to measure: ``warmup`` untimed calls each, then rounds until ``budget_s``
    has passed (at least ``min_repeats``, at most ``max_repeats`` rounds). Fast layers get
    many rounds; a contender taking seconds a call gets the minimum. Rounds also stop
    once ``steady_repeats`` of them have every contender's spread within ``steady_spread``:
    more rounds of steady timings would not move their medians, only lengthen the run.
    When a contender's spread exceeds ``retime_spread``, all are timed afresh (up to
    ``retimes`` times, keeping the steadiest run), then, if ``warn``, a warning says the spread stayed
    large (a caller that decides on many timings may rather warn once itself)."""

    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 40
    budget_s: float = 2.0
    steady_repeats: int = 8
    steady_spread: float = 0.03
    retime_spread: float = math.inf
    retimes: int = 1
    warn: bool = True


FULL = TimerSettings(retime_spread=0.10)
QUICK = TimerSettings(warmup=1, min_repeats=2, max_repeats=3, budget_s=0.02)
# for choosing a route: enough rounds for quartiles, within about half a second per decision
TUNING = TimerSettings(
    warmup=1, min_repeats=7, max_repeats=30, budget_s=0.5, steady_repeats=7, retime_spread=0.10, warn=False
)
T = TypeVar("T")
MARGIN = 0.05  # the least relative gain that :func:`beats` counts, however steady the timings


@dataclasses.dataclass(frozen=True)
class Timing:
    """One contender's seconds per call: the median, the quartiles around it and the fastest round,
    and ``rounds``, every round's time in order (round i of contenders timed together is one round).

    Example:
        >>> Timing.of([0.3, 0.1, 0.2, 0.9, 0.2]).median_s
        0.2
    """

    median_s: float
    q25_s: float
    q75_s: float
    best_s: float
    repeats: int
    rounds: tuple[float, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        median, q25, q75 = _quartiles(samples)
        return cls(median, q25, q75, min(samples), len(samples), tuple(samples))

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (0.05: the middle half lies within 5%)."""
        return (self.q75_s - self.q25_s) / self.median_s if self.median_s else 0.0


def interleaved(
    contenders: Mapping[str, Callable[[], object]],
    settings: TimerSettings = FULL,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time each contender (a call with no arguments) round-robin; their :class:`Timing` by name.

    Example:
        >>> timings = interleaved({"sum": lambda: sum(range(100))}, QUICK)
        >>> timings["sum"].repeats >= QUICK.min_repeats
        True
    """
    calls = list(contenders.items())
    for _ in range(settings.warmup):
        for _, call in calls:
            call()
    timings = _rounds(calls, settings, clock)
    for _ in range(settings.retimes):
        if worst_spread(timings) <= settings.retime_spread:
            break
        timings = min(timings, _rounds(calls, settings, clock), key=worst_spread)
    if settings.warn and worst_spread(timings) > settings.retime_spread:
        warnings.warn(
            f"groupconv: timings spread by up to {worst_spread(timings):.0%} even when timed again (allowed: "
            f"{settings.retime_spread:.0%}); the machine is busy, so differences within the spread mean nothing",
            stacklevel=2,
        )
    return timings


def median_of(items: Sequence[T], key: Callable[[T], float]) -> T:
    """The item whose ``key`` is the median (the lower one of an even count): a whole run, not a mix of runs.

    Example:
        >>> median_of(["ccc", "a", "bb", "dddd"], key=len)
        'bb'
    """
    return sorted(items, key=key)[(len(items) - 1) // 2]


def worst_spread(timings: Mapping[str, Timing]) -> float:
    """The largest :attr:`Timing.spread` among ``timings`` (0 for none)."""
    return max((timing.spread for timing in timings.values()), default=0.0)


def beats(candidate: Timing, incumbent: Timing, margin: float = MARGIN) -> bool:
    """Whether ``candidate`` is faster than ``incumbent`` beyond the noise. Timed in the same rounds, by
    their ratio round by round (a load drift slows both alike, so it cancels): its upper quartile below 1
    and its median at least ``margin`` below. Otherwise by their spreads: the candidate's upper quartile
    below the incumbent's lower one, and its median at least ``margin`` below the incumbent's.

    Example:
        >>> beats(Timing.of([1.0, 1.1, 1.2]), Timing.of([2.0, 2.1, 2.2]))
        True
        >>> beats(Timing.of([1.0, 1.5, 2.4]), Timing.of([1.6, 1.7, 1.8]))
        False
        >>> beats(Timing.of([1.0, 2.0, 3.0, 1.5]), Timing.of([1.2, 2.4, 3.6, 1.8]))  # 17% faster in each round
        True
    """
    if len(candidate.rounds) == len(incumbent.rounds) >= 3:
        median, _, q75 = _quartiles([c / i for c, i in zip(candidate.rounds, incumbent.rounds)])
        return q75 < 1 and median <= 1 - margin
    return candidate.q75_s < incumbent.q25_s and candidate.median_s <= (1 - margin) * incumbent.median_s


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of ``samples``."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q25, median, q75 = statistics.quantiles(samples, n=4, method="inclusive")
    return median, q25, q75


def _rounds(calls: list, settings: TimerSettings, clock: Callable[[], float]) -> dict[str, Timing]:
    """Rounds of every call in turn, each round starting one contender later, until the settings say stop."""
    samples: dict[str, list[float]] = {name: [] for name, _ in calls}
    start = clock()
    rounds = 0
    while rounds < settings.max_repeats and (
        rounds < settings.min_repeats or (clock() - start < settings.budget_s and not _steady(samples, settings))
    ):
        first = rounds % len(calls)
        for name, call in calls[first:] + calls[:first]:
            began = clock()
            call()
            samples[name].append(clock() - began)
        rounds += 1
    return {name: Timing.of(times) for name, times in samples.items()}


def _steady(samples: dict[str, list[float]], settings: TimerSettings) -> bool:
    """Whether every contender has ``steady_repeats`` rounds or more, each within ``steady_spread``."""
    return all(
        len(times) >= settings.steady_repeats and Timing.of(times).spread <= settings.steady_spread
        for times in samples.values()
    )
