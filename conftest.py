"""Every test and doctest tunes into a throwaway cache, never the user's ~/.cache/groupconv/tune.json."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_tuning_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROUPCONV_CACHE", str(tmp_path_factory.mktemp("tuning") / "tune.json"))
        patch.delenv("GROUPCONV_TUNE", raising=False)
        yield
