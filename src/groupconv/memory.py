"""What a fresh tensor costs before any kernel touches it.

On Linux, glibc's malloc gives large freed blocks back to the operating system, so the next tensor
of that size is faulted in again page by page. A training step frees and reallocates every
activation, and each fault costs microseconds (docs/design.md, "Memory"): this can be a third of a
step, for PyTorch's convolutions and groupconv's alike. :func:`keep_freed_memory` keeps freed
memory in the process for reuse, as the jemalloc and tcmalloc allocators that PyTorch's CPU
launcher (``python -m torch.backends.xeon.run_cpu``) preloads do. The ``groupconv`` command calls
it; a program of your own may too, or set the same policy before Python starts:
``GLIBC_TUNABLES=glibc.malloc.trim_threshold=2147483647:glibc.malloc.mmap_threshold=33554432``.
"""

from __future__ import annotations

import ctypes
import platform

try:
    import resource
except ImportError:  # Windows: no page-fault counter
    resource = None

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int
_LARGEST_HEAP_BLOCK = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit: larger blocks are always mapped
PAGE_BYTES = 4096
_kept = False  # whether keep_freed_memory applied


def keep_freed_memory() -> bool:
    """Keep memory freed by tensors (up to 32 MiB each) in the process for the next ones, instead of
    returning it to the OS; True where that applied (glibc), False elsewhere, where the C library's
    allocator is left as it is. The process then holds on to its peak memory, as a training loop
    does anyway.

    Example:
        >>> import groupconv
        >>> groupconv.keep_freed_memory() in (True, False)
        True
    """
    global _kept
    if not _kept and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
        _kept = bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) and libc.mallopt(_M_MMAP_THRESHOLD, _LARGEST_HEAP_BLOCK)
        )
    return _kept


def page_faults() -> int | None:
    """Minor page faults (fresh pages mapped in) this process has taken so far; None where unknown."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def kept() -> bool:
    """Whether :func:`keep_freed_memory` applied in this process."""
    return _kept


def policy() -> str:
    """The allocator policy in force, in words, for a report."""
    if _kept:
        return "glibc malloc keeping freed memory in the process (groupconv.keep_freed_memory)"
    return "the C library's malloc as it comes"
