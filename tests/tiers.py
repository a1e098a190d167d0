"""Which of a sweep's cases run in the default (fast) tier; the full suite runs them all (see "Test tiers" in
CONTRIBUTING.md).

A case is one ``parametrize`` value: a tuple holds one case's arguments (several argument names), anything else is
the one argument; a ``pytest.param`` keeps its id and marks.
"""

from __future__ import annotations

import pytest

_PARAM = type(pytest.param())  # pytest's ParameterSet, without importing it from _pytest


def slow(case):
    """``case`` marked slow: in the full suite only."""
    if isinstance(case, _PARAM):
        return pytest.param(*case.values, marks=[*case.marks, pytest.mark.slow], id=case.id)
    return pytest.param(*case, marks=pytest.mark.slow) if isinstance(case, tuple) else slow(pytest.param(case))


def fast_first(cases, count: int) -> list:
    """The first ``count`` cases in the default tier, the rest slow."""
    return [case if i < count else slow(case) for i, case in enumerate(cases)]


def fast_every(cases, step: int) -> list:
    """Every ``step``-th case (the first, then every ``step`` on) in the default tier, the rest slow: a sample
    spread over a table ordered by subject."""
    return [case if i % step == 0 else slow(case) for i, case in enumerate(cases)]
