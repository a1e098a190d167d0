"""Small-sample statistics for paired seeds: Student's t, its intervals, and two one-sided tests.

No SciPy here: the t distribution's CDF is the regularised incomplete beta function
(continued fraction, as in Numerical Recipes' ``betacf``), and its quantiles come
from bisection on the CDF.

    paired(differences, margin)   -> Paired: mean, sd, 95% interval, TOST p-value
    seeds_for_equivalence(sd, margin, mean)   seeds a TOST needs at that spread
    seeds_for_difference(sd, mean)            seeds whose 95% interval would exclude 0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom.

    Example:
        >>> round(t_cdf(2.776445, 4), 4), t_cdf(0.0, 3)
        (0.975, 0.5)
    """
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t with ``t_cdf(t, df) == p`` (bisection to 1e-10).

    Example:
        >>> round(t_quantile(0.975, 4), 3), round(t_quantile(0.95, 2), 3)
        (2.776, 2.92)
    """
    if not 0 < p < 1:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p}")
    low, high = -1e3, 1e3
    while high - low > 1e-10:
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Paired:
    """Differences paired by seed: their mean, sample sd, 95% t-interval and the TOST p-value at ``margin``.

    The TOST p-value is the larger of the two one-sided p-values for "difference <= -margin"
    and "difference >= +margin": below 0.05, the difference is within the margin at the 5%
    level (equivalently, the 90% interval lies inside ±margin). None with fewer than 2 seeds.
    """

    count: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    tost_p: float | None
    margin: float


def paired(differences: Sequence[float], margin: float) -> Paired:
    """Paired-difference summary of ``differences`` (one per seed) against an equivalence ``margin``.

    Example (differences 1, 2, 3: mean 2, sd 1, interval 2 ± 4.303/sqrt(3)):
        >>> result = paired([1.0, 2.0, 3.0], margin=1.0)
        >>> round(result.low, 3), round(result.high, 3), result.tost_p > 0.5
        (-0.484, 4.484, True)
    """
    count, mean = len(differences), statistics.fmean(differences)
    if count < 2:
        return Paired(count, mean, None, None, None, None, margin)
    sd = statistics.stdev(differences)
    error = sd / math.sqrt(count)
    half = t_quantile(0.975, count - 1) * error
    if error == 0:
        tost = 0.0 if abs(mean) < margin else 1.0
    else:
        below = 1 - t_cdf((mean + margin) / error, count - 1)  # H0: difference <= -margin
        above = t_cdf((mean - margin) / error, count - 1)  # H0: difference >= +margin
        tost = max(below, above)
    return Paired(count, mean, sd, mean - half, mean + half, tost, margin)


def seeds_for_equivalence(sd: float, margin: float, mean: float = 0.0, most: int = 1000) -> int | None:
    """The fewest seeds whose 90% interval, at this ``sd`` and ``mean``, fits inside ±``margin`` (None: > most).

    Example:
        >>> seeds_for_equivalence(sd=0.3, margin=0.5), seeds_for_equivalence(sd=1.0, margin=0.5, mean=0.6)
        (4, None)
    """
    room = margin - abs(mean)
    if room <= 0:
        return None
    return next((n for n in range(2, most + 1) if t_quantile(0.95, n - 1) * sd / math.sqrt(n) < room), None)


def seeds_for_difference(sd: float, mean: float, most: int = 1000) -> int | None:
    """The fewest seeds whose 95% interval, at this ``sd`` and ``mean``, would exclude 0 (None: > most).

    Example:
        >>> seeds_for_difference(sd=0.2, mean=0.5), seeds_for_difference(sd=1.0, mean=0.0)
        (3, None)
    """
    if mean == 0:
        return None
    return next((n for n in range(2, most + 1) if t_quantile(0.975, n - 1) * sd / math.sqrt(n) < abs(mean)), None)


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b  # the fraction converges fast on this side only


def _beta_fraction(a: float, b: float, x: float, steps: int = 300) -> float:
    """Lentz's evaluation of the incomplete beta function's continued fraction."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, steps + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result
