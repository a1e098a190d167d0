"""groupconv: grouped convolution with PyTorch's conventions, computed by its own code.

>>> import groupconv
>>> groupconv.valid_groups(4, 8)
[1, 2, 4]
>>> groupconv.ConvSpec(4, 8, 3, groups=2, bias=False).num_params
144
>>> groupconv.explain(groupconv.ConvSpec(3, 9, 3, groups=3)).weight_shape
(9, 1, 3, 3)
"""

from . import functional, nn, numpy
from .drawing import diagram
from .errors import GroupConvError
from .explanation import explain
from .model_summary import summary
from .spec import ConvSpec, max_groups, valid_groups
from .tuning import tune

__version__ = "0.1.0"
__all__ = [
    "ConvSpec", "GroupConvError", "diagram", "explain", "functional", "max_groups", "nn", "numpy", "summary",
    "tune", "valid_groups",
]  # fmt: skip
