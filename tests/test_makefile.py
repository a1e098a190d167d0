"""`make run` on a machine without apt-get or root: the demo needs no data, and `make data` says how in one line.

Simulated with a PATH that holds only ``id`` and ``ls`` (no apt-get, no dpkg); `make -n` for run.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs make")


@pytest.fixture
def path_without_apt(tmp_path):
    for tool in ("id", "ls"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    return str(tmp_path)


def _make(target: str, path: str, *flags: str) -> subprocess.CompletedProcess:
    """``make target`` with only ``path`` on PATH; the photos' wheel looks downloaded, so nothing is fetched."""
    photos = Path(path, "photos")
    photos.mkdir(exist_ok=True)
    (photos / "scikit_image-0.26.0-py3-none-any.whl").touch()
    env = {**os.environ, "PATH": path, "GROUPCONV_DATA": str(photos)}
    return subprocess.run([MAKE, "-s", "--no-print-directory", "-C", str(ROOT), *flags, target],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip


def test_make_run_needs_no_apt_get(path_without_apt):
    planned = _make("run", path_without_apt, "-n")
    assert planned.returncode == 0, planned.stderr
    assert "apt-get" not in planned.stdout and "dpkg" not in planned.stdout
    assert planned.stdout.rstrip().endswith(".venv/bin/groupconv demo")


def test_make_data_without_apt_get_says_how_in_one_line(path_without_apt):
    done = _make("data", path_without_apt)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("make data: no apt-get here: install the Debian packages dataset-fashion-mnist")
    assert done.stdout.count("\n") == 1


@pytest.mark.parametrize("target", ["test", "experiments"])
def test_targets_that_need_data_still_install_it(target, path_without_apt):
    planned = _make(target, path_without_apt, "-n")
    assert "apt-get install" in planned.stdout
