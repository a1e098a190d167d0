"""The document's claims as experiments, each one command (``groupconv experiment NAME``).

    groups            AlexNet with 1, 2, 4 filter groups and a parameter-matched groups=2 on Fashion-MNIST
    specialisation    do conv1's filters split into grey and colour by the group they feed? (colour emoji)
    cardinality       ResNeXt at cardinality 1-16 with the parameters held (±3%)
    shuffle           ShuffleNet with and without its channel shuffle

``runner`` trains many configs in parallel processes and resumes an interrupted
experiment; each experiment module turns the finished runs into tables and figures.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

# name: (one-line summary, description)
EXPERIMENTS = {
    "groups": (
        "AlexNet with 1, 2, 4 filter groups and a parameter-matched g2: test error, cost",
        "Train AlexNet with groups 1, 2, 4 and groups=2 widened to groups=1's parameters, 5 seeds each, on "
        "Fashion-MNIST (55,000 training images, 5,000 held out for validation, the 10,000 test images measured "
        "once at the end); write groups.md (test error, parameters, MACs, s/epoch beside the published AlexNet "
        "table; differences from groups=1 paired by seed with 95% intervals and a TOST), groups.json, groups.png.",
    ),
    "specialisation": (
        "do conv1's filters split into grey and colour by group? (colour emoji)",
        "Train AlexNet (conv1 48 filters) with 2 groups and a groups=1 control on the colour emoji set, 5 seeds "
        "each, and a grey-image twin for the colour gap; test whether the filters feeding conv2's two groups "
        "differ in colour share, at initialisation, after training and on the learned change, with a planted "
        "split as a positive control; write specialisation.md, specialisation.json and the conv1 figures.",
    ),
    "cardinality": (
        "ResNeXt at cardinality 1, 2, 4, 8, 16, parameters held equal (within 3 per cent)",
        "Train a small ResNeXt at cardinality 1, 2, 4, 8, 16, the bottleneck width set so the parameters stay "
        "within ±3% of cardinality 1's, 3 seeds each, on 20,000 Fashion-MNIST images; write cardinality.md "
        "(test error, parameters, MACs, differences from cardinality 1 paired by seed), cardinality.json and .png.",
    ),
    "shuffle": (
        "ShuffleNet with and without its channel shuffle (groups=4)",
        "Train a small ShuffleNet at groups=4 with and without the channel shuffle, 3 seeds each, on "
        "Fashion-MNIST; write shuffle.md (test error, the paired difference) and shuffle.json.",
    ),
}


def run_experiment(
    name: str,
    out: str | Path,
    seeds: Sequence[int] | None = None,
    jobs: int = 1,
    data_dir: str | Path | None = None,
    progress: bool = True,
    train: bool = True,
    **overrides,
):
    """Run (or, with ``train=False``, only report) the experiment ``name``; its report (``.tables()``)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return module.run(out, seeds or module.SEEDS, jobs, data_dir, progress, train, **overrides)
