"""groupconv: grouped convolution with PyTorch's conventions, computed by its own code.

    >>> import groupconv
    >>> groupconv.valid_groups(4, 8)
    [1, 2, 4]
    >>> groupconv.ConvSpec(4, 8, 3, groups=2, bias=False).num_params
    144
"""

from . import functional, nn, numpy
from .errors import GroupConvError
from .spec import ConvSpec, max_groups, valid_groups

__version__ = "0.1.0"
__all__ = ["ConvSpec", "GroupConvError", "functional", "max_groups", "nn", "numpy", "valid_groups"]
