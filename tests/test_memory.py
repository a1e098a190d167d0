"""The allocator policy: freed tensors' memory kept for the next ones, and tune saying when it is not."""

import itertools
import platform
import subprocess
import sys

import pytest
import torch
from test_tuning import fake_timer, small_model

import groupconv
from groupconv import memory, tuning

# A training step's pattern: ten activations made, then all freed, each a little larger than the step
# before's (a varying batch's are), which glibc maps afresh; the share of their pages faulted on the fourth.
STEPS = """
import sys, torch
from groupconv import memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
def step(k):
    activations = [torch.empty((1 << 20) + k * 4096).fill_(1) for _ in range(10)]
for k in range(3):
    step(k)
before = memory.page_faults()
step(3)
print((memory.page_faults() - before) / (10 * (4 << 20) // memory.PAGE_BYTES))
"""


def faulted_share(policy: str) -> float:
    run = subprocess.run([sys.executable, "-c", STEPS, policy], capture_output=True, text=True, check=True)
    return float(run.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    as_it_comes = faulted_share("default")
    if as_it_comes < 0.5:
        pytest.skip(f"this glibc already reuses the memory ({as_it_comes:.0%} of pages faulted)")
    assert faulted_share("keep") < 0.05


# Rounds of a 200 MB and a 100 MB tensor, the larger a little larger each round; the peak memory (MiB) after each.
LARGE = """
import resource, torch
from groupconv import memory
assert memory.keep_freed_memory()
peaks = []
for k in range(6):
    first, second = torch.empty((50 << 20) + k * 1024).fill_(1), torch.empty(25 << 20).fill_(2)
    del first, second
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
print(peaks[0], peaks[-1])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_does_not_grow_the_peak():
    """Blocks above 32 MiB are still mapped and unmapped: with none mapped (M_MMAP_MAX=0) this peak doubled."""
    run = subprocess.run([sys.executable, "-c", LARGE], capture_output=True, text=True, check=True)
    first, last = map(int, run.stdout.split())
    assert last <= first * 1.1


def test_tune_counts_page_faults_and_says_how_to_stop_them(monkeypatch):
    fake_timer(monkeypatch, lambda name: 1.0)
    faults = itertools.count(step=5000)  # every count is 5000 faults after the last: thousands per step
    monkeypatch.setattr(memory, "page_faults", lambda: next(faults))
    monkeypatch.setattr(memory, "_kept", False)
    with pytest.warns(UserWarning, match=r"groupconv.keep_freed_memory\(\)"):
        report = groupconv.tune(small_model(), torch.randn(2, 4, 9, 9))
    assert report.layout.page_faults > tuning._FAULTING_STEP
    assert "page faults per step" in str(report) and report.to_dict()["layout"]["page_faults_per_step"] > 0


@pytest.mark.parametrize(("step_faults", "kept"), [(10, False), (5000, True)])
def test_tune_is_quiet_when_steps_fault_little_or_memory_is_kept(monkeypatch, recwarn, step_faults, kept):
    fake_timer(monkeypatch, lambda name: 1.0)
    faults = itertools.count(step=step_faults)
    monkeypatch.setattr(memory, "page_faults", lambda: next(faults))
    monkeypatch.setattr(memory, "_kept", kept)
    groupconv.tune(small_model(), torch.randn(2, 4, 9, 9))
    assert not [w for w in recwarn if "keep_freed_memory" in str(w.message)]
