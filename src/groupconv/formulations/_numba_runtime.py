"""What groupconv's Numba formulations share: their threads, and their geometry in 3-D.

Kernels run on as many threads as ``torch.get_num_threads()``. Numba's default OpenMP
threading layer fights PyTorch's own OpenMP pool (two threads ran 30-50x slower than
one), so the ``workqueue`` layer is chosen unless ``NUMBA_THREADING_LAYER`` says
otherwise; a lock keeps two Python threads from entering it at once, which it does not
support.
"""

from __future__ import annotations

import os
import threading

import numba
import torch

from ..spec import ConvSpec

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_KERNEL_LOCK = threading.Lock()


def run(kernel, *arguments) -> None:
    """Run the parallel ``kernel`` on torch's thread count."""
    with _KERNEL_LOCK:
        numba.set_num_threads(threads())
        kernel(*arguments)


def threads() -> int:
    return min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)


def geometry_3d(spec: ConvSpec) -> tuple[tuple[int, int, int], ...]:
    """(stride, dilation, padding before), each padded to 3-D with leading ones (zeros for padding)."""
    fill = 3 - spec.dims
    stride = (1,) * fill + spec.stride
    dilation = (1,) * fill + spec.dilation
    pad = (0,) * fill + tuple(lo for lo, _ in spec.padding_pairs)
    return stride, dilation, pad
