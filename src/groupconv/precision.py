"""Half precision: float16 and bfloat16 operands computed in float32 and rounded once, at the end.

PyTorch's CPU convolutions accumulate half-precision operands in float32; groupconv's own
kernels compute float32 and float64 only, so they get half-precision operands widened and
give their result back rounded to the operands' dtype.

    >>> in_float32(torch.add, torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.bfloat16)).dtype
    torch.bfloat16
"""

from __future__ import annotations

from collections.abc import Callable

import torch

HALF = (torch.float16, torch.bfloat16)


def in_float32(compute: Callable[..., torch.Tensor], *operands) -> torch.Tensor:
    """``compute(*operands)``, in float32 where the first operand is half precision (tensor operands widened),
    its result rounded once to that dtype."""
    dtype = operands[0].dtype
    if dtype not in HALF:
        return compute(*operands)
    widened = [t.float() if isinstance(t, torch.Tensor) else t for t in operands]
    return compute(*widened).to(dtype)
