"""The first call in a fresh process, with empty caches: what a user waits for before a layer answers.

Each contender runs in its own new interpreter that imports torch (and groupconv), builds
one narrow-group layer and calls it once; the time from the end of the imports to the
output is the first call. groupconv gets an empty tuning cache and tuning off, as a new
user has. The interpreters take turns, ``repeats`` rounds, and each time is a median.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile

from ..errors import GroupConvError

_SCRIPT = """
import json, time
started = time.perf_counter()
import torch
{import_line}
imported = time.perf_counter()
x = torch.randn({input_shape})
layer = {module}({channels}, {channels}, 3, padding=1, groups={groups})
with torch.no_grad():
    layer(x)
answered = time.perf_counter()
print(json.dumps({{"import_s": imported - started, "first_call_s": answered - imported}}))
"""
CONTENDERS = {  # name: (import line, module)
    "torch": ("", "torch.nn.Conv2d"),
    "groupconv": ("import groupconv.nn", "groupconv.nn.Conv2d"),
}


@dataclasses.dataclass(frozen=True)
class FirstCall:
    """One contender's medians: seconds to import, and seconds from then to the first layer's output."""

    name: str
    import_s: float
    first_call_s: float


def measure(quick: bool = False, repeats: int = 3) -> list[FirstCall]:
    """Each contender's first call on a narrow-group layer (2 channels per group: groupconv's own kernels, untuned),
    fresh process each round."""
    channels, groups, input_shape = (16, 8, (1, 16, 8, 8)) if quick else (256, 128, (8, 256, 28, 28))
    samples: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    for _ in range(1 if quick else repeats):
        for name, (import_line, module) in CONTENDERS.items():
            script = _SCRIPT.format(
                import_line=import_line, module=module, channels=channels, groups=groups, input_shape=input_shape
            )
            samples[name].append(_run_fresh(script))
    return [
        FirstCall(name, *(statistics.median(run[key] for run in runs) for key in ("import_s", "first_call_s")))
        for name, runs in samples.items()
    ]


def _run_fresh(script: str) -> dict:
    """Run ``script`` in a new interpreter with an empty tuning cache; what it printed as JSON."""
    with tempfile.TemporaryDirectory(prefix="groupconv-first-call-") as empty:
        environment = {**os.environ, "GROUPCONV_CACHE": os.path.join(empty, "tune.json")}
        environment.pop("GROUPCONV_TUNE", None)
        done = subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=600
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GroupConvError(f"the first-call measurement failed in its fresh process: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])
