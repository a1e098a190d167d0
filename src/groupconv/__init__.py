"""groupconv: grouped convolution with PyTorch's conventions, computed by its own code.

Names load when first used, so ``import groupconv.spec`` (and ``groupconv.numpy``) need no torch.

>>> import groupconv
>>> groupconv.valid_groups(4, 8)
[1, 2, 4]
>>> groupconv.ConvSpec(4, 8, 3, groups=2, bias=False).num_params
144
>>> groupconv.explain(groupconv.ConvSpec(3, 9, 3, groups=3)).weight_shape
(9, 1, 3, 3)
"""

from __future__ import annotations

import importlib

from .errors import GroupConvError, OperandTypeError
from .spec import ConvSpec, max_groups, valid_groups

__version__ = "0.1.0"

_SUBMODULES = ("functional", "nn", "numpy")
_NAMES = {  # name: the module that defines it
    "diagram": "reports.diagram",
    "explain": "reports.explain",
    "keep_freed_memory": "memory",
    "summary": "reports.summary",
    "tune": "tuning",
}
__all__ = ["ConvSpec", "GroupConvError", "OperandTypeError", "max_groups", "valid_groups", *_SUBMODULES, *_NAMES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
