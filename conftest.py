"""Every test and doctest tunes into a throwaway cache, never the user's ~/.cache/groupconv/tune.json, and
routes its calls afresh; idle OpenMP threads sleep; doctests that tune are in the slow tier."""

import os

import pytest

# Idle OpenMP threads sleep, not spin: on a busy 2-core machine spinning threads starve the threads with work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read as torch loads, so set before any test imports it

# Doctests that tune for real take seconds of timing: in the full suite only, like the slow tests.
SLOW_DOCTESTS = {"src/groupconv/tuning.py::groupconv.tuning.tune"}


@pytest.fixture(autouse=True, scope="session")
def _private_tuning_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROUPCONV_CACHE", str(tmp_path_factory.mktemp("tuning") / "tune.json"))
        patch.delenv("GROUPCONV_TUNE", raising=False)
        yield


@pytest.fixture(autouse=True)
def _routes_afresh(monkeypatch):
    """Each test routes its calls afresh, as a new process does, in the cache its own environment names."""
    from groupconv import tuning

    monkeypatch.setattr(tuning, "remembered", {})


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
