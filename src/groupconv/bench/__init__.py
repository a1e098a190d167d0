"""``groupconv bench``: how fast groupconv is on this machine, against PyTorch, ONNX Runtime and the floors.

    timing       one interleaved, warmed-up, median-of-rounds timer
    floors       the machine's SGEMM and copy rates; a layer's roofline floor
    layers       the group sweep and the zoo of real grouped layers
    contenders   PyTorch channels-first and channels-last, groupconv, ONNX Runtime, on the same weights
    endtoend     a training step of whole networks, PyTorch against groupconv.nn.convert
    machine      CPU, cores, threads and versions
    suite        all of it under one progress bar; checks each contender before timing it
    report       docs/benchmarks.md and its plot
    command      the ``bench`` subcommand

Example (seconds; ``quick`` times tiny layers):
    >>> from groupconv import bench
    >>> results = bench.run(quick=True, progress=False)  # doctest: +SKIP
    >>> bench.write(results, "docs/benchmarks.md")  # doctest: +SKIP
"""

from .report import write
from .suite import Results, run

__all__ = ["Results", "run", "write"]
