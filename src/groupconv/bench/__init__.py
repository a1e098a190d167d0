"""``groupconv bench``: how fast groupconv is on this machine, against PyTorch, ONNX Runtime and the floors.

    floors       the machine's SGEMM and copy rates; a layer's roofline floor
    layers       the group sweep, the zoo of real grouped layers, and layers outside the zoo
    contenders   PyTorch channels-first and channels-last, groupconv, ONNX Runtime, OpenVINO, on the same weights
    endtoend     a training step of whole networks, PyTorch against groupconv.nn.convert
    first_call   each library's first call in a fresh process
    suite        all of it under one progress bar; checks each contender before timing it
    report       docs/benchmarks.md and its plot
    outside      the planner on the layers outside the zoo (``python -m groupconv.bench.outside``)

The timer and the machine's description are the core's (:mod:`groupconv.timing`,
:mod:`groupconv.machine`); the ``bench`` subcommand is :mod:`groupconv.cli.bench`.

Example (seconds; ``quick`` times tiny layers):
    >>> from groupconv import bench
    >>> results = bench.run(quick=True, progress=False)  # doctest: +SKIP
    >>> bench.write(results, "docs/benchmarks.md")  # doctest: +SKIP
"""

from .report import write
from .suite import Results, run

__all__ = ["Results", "run", "write"]
