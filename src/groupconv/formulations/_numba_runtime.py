"""What groupconv's Numba formulations share: their threads, and their geometry in 3-D.

Kernels run on PyTorch's own OpenMP threads, as many as ``torch.get_num_threads()``:
each call is started with ``GOMP_parallel`` (the OpenMP runtime's entry for a parallel
region) from the runtime PyTorch loaded, and every thread of that team runs one share of
the kernel. Threads of a second pool would fight PyTorch's: after each parallel PyTorch
op its OpenMP threads keep spinning for milliseconds, and a kernel that Numba started
on its own threads right after ``x.clone()`` took 2.7x as long (median 4.0 ms against
1.5 ms; 1.4 ms with ``OMP_WAIT_POLICY=PASSIVE``), while on PyTorch's team it took
0.8 ms either way (256 channels, groups=128, 28x28, batch 8, forward).

Where no OpenMP runtime is loaded, the shares run on a pool of Python threads instead
(the kernels release the GIL). Numba's own threading layers are not used: its OpenMP
layer would be a second OpenMP runtime (two threads ran 30-50x slower than one), and a
parallel entry for its ``workqueue`` layer took minutes to compile.
"""

from __future__ import annotations

import ctypes
import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from llvmlite import binding

from ..spec import ConvSpec

MAX_DIMS = 6  # arrays reach the kernels as 6-D, leading dims of 1
_PROCESS = ctypes.CDLL(None)  # the symbols every loaded library exports, PyTorch's OpenMP runtime among them
OPENMP = all(hasattr(_PROCESS, name) for name in ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads"))
if OPENMP:
    for _name in ("omp_get_thread_num", "omp_get_num_threads"):  # for the kernels' calls, compiled by LLVM
        binding.add_symbol(_name, ctypes.cast(getattr(_PROCESS, _name), ctypes.c_void_p).value)
    _parallel = _PROCESS.GOMP_parallel
    _parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    _parallel.restype = None


def run(kernel: str, a: np.ndarray, b: np.ndarray, c: np.ndarray, ints: tuple[int, ...]) -> None:
    """Run ``kernel`` (one of ``_numba_kernels.KERNELS``) on arrays a, b, c (C-contiguous, one dtype)
    and up to 12 ints, on torch's thread count."""
    from . import _numba_kernels as kernels  # it imports this module

    fields = [kernels.KERNELS.index(kernel), a.itemsize]
    for array in (a, b, c):
        fields += [array.ctypes.data, *(1,) * (MAX_DIMS - array.ndim), *array.shape]
    table = np.zeros(kernels.TABLE_FIELDS, np.int64)  # the ints not given stay 0
    table[: len(fields) + len(ints)] = [*fields, *ints]
    workers = threads()
    if OPENMP:
        _parallel(kernels.team_entry.address, table.ctypes.data, workers, 0)
    else:
        others = [_pool().submit(kernels.share, table, worker, workers) for worker in range(1, workers)]
        kernels.share(table, 0, workers)
        for other in others:
            other.result()


def threads() -> int:
    """How many threads a kernel runs on: torch's count."""
    return torch.get_num_threads()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(thread_name_prefix="groupconv-kernels")


def geometry_3d(spec: ConvSpec) -> tuple[tuple[int, int, int], ...]:
    """(stride, dilation, padding before), each padded to 3-D with leading ones (zeros for padding)."""
    fill = 3 - spec.dims
    stride = (1,) * fill + spec.stride
    dilation = (1,) * fill + spec.dilation
    pad = (0,) * fill + tuple(lo for lo, _ in spec.padding_pairs)
    return stride, dilation, pad
