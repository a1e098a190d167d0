"""The machine's floors and a layer's roofline: the least time its FLOPs and bytes allow.

A layer direction can go no faster than its FLOPs at the machine's SGEMM rate, nor than
its bytes (each tensor it must read or write, touched once) at the machine's copy rate:
its floor is the larger of the two. Forward is one direction (read x and w, write y);
forward+backward adds the input gradient (read ȳ and w, write x̄) and the weight
gradient (read x and ȳ, write w̄), each with the forward's FLOPs and tensor sizes.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..spec import ConvSpec
from ..timing import TimerSettings, interleaved

MODES = ("forward", "forward_backward")
DIRECTIONS = {"forward": 1, "forward_backward": 3}  # directions each mode runs


@dataclasses.dataclass(frozen=True)
class Floors:
    """The machine's rates: ``gemm_gflops`` (a large float32 matmul) and ``copy_gbps``
    (a large copy, counting the bytes read and the bytes written)."""

    gemm_gflops: float
    copy_gbps: float
    gemm_size: int
    copy_bytes: int

    def at_best(self, other: Floors) -> Floors:
        """Two measurements of one machine as one: each rate at the higher of the two."""
        gemm_gflops, copy_gbps = max(self.gemm_gflops, other.gemm_gflops), max(self.copy_gbps, other.copy_gbps)
        return dataclasses.replace(self, gemm_gflops=gemm_gflops, copy_gbps=copy_gbps)


def measure(settings: TimerSettings, quick: bool = False) -> Floors:
    """The best rates of an n x n SGEMM and of a copy far beyond the caches (small ones if ``quick``)."""
    n = 256 if quick else 2048
    a, b, product = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    elements = 2**18 if quick else 2**26  # 256 MiB of float32 each way when full
    source, target = torch.randn(elements), torch.empty(elements)
    timings = interleaved(
        {"gemm": lambda: torch.matmul(a, b, out=product), "copy": lambda: target.copy_(source)}, settings
    )
    copy_bytes = 2 * source.numel() * source.element_size()
    return Floors(  # a floor is what the machine can do at best: the fastest round, not the median
        gemm_gflops=2 * n**3 / timings["gemm"].best_s / 1e9,
        copy_gbps=copy_bytes / timings["copy"].best_s / 1e9,
        gemm_size=n,
        copy_bytes=copy_bytes,
    )


def direction_bytes(spec: ConvSpec, input_shape: tuple[int, ...], itemsize: int = 4) -> int:
    """Bytes one direction must move at least: its input, weight and output, once each.

    Example:
        >>> direction_bytes(ConvSpec(4, 8, 3, groups=2, bias=False), (1, 4, 6, 6))  # (144 + 144 + 128) * 4
        1664
    """
    tensors = (input_shape, spec.weight_shape, spec.output_shape(input_shape))
    return sum(math.prod(shape) for shape in tensors) * itemsize


def roofline_s(spec: ConvSpec, input_shape: tuple[int, ...], mode: str, floors: Floors, itemsize: int = 4) -> float:
    """The floor of ``mode`` (``"forward"`` or ``"forward_backward"``) in seconds:
    per direction max(FLOPs / SGEMM rate, bytes / copy rate), times the directions.

    Example:
        >>> one = Floors(gemm_gflops=1.0, copy_gbps=1.0, gemm_size=0, copy_bytes=0)
        >>> spec = ConvSpec(4, 8, 3, groups=2, bias=False)  # 2304 MACs, 1664 bytes per direction
        >>> round(roofline_s(spec, (1, 4, 6, 6), "forward_backward", one) * 1e6, 3)
        13.824
    """
    return DIRECTIONS[mode] * max(_terms_s(spec, input_shape, floors, itemsize).values())


def bound(spec: ConvSpec, input_shape: tuple[int, ...], floors: Floors, itemsize: int = 4) -> str:
    """Which term sets the floor: ``"compute"`` (FLOPs) or ``"memory"`` (bytes).

    Example:
        >>> bound(ConvSpec(4, 8, 3, groups=2, bias=False), (1, 4, 6, 6), Floors(1.0, 1.0, 0, 0))
        'compute'
    """
    terms = _terms_s(spec, input_shape, floors, itemsize)
    return max(terms, key=terms.get)


def _terms_s(spec: ConvSpec, input_shape: tuple[int, ...], floors: Floors, itemsize: int) -> dict[str, float]:
    """One direction's seconds at the SGEMM rate (``compute``) and at the copy rate (``memory``)."""
    return {
        "compute": spec.flops(input_shape) / (floors.gemm_gflops * 1e9),
        "memory": direction_bytes(spec, input_shape, itemsize) / (floors.copy_gbps * 1e9),
    }
