"""The one exception groupconv raises for an invalid configuration."""


class GroupConvError(ValueError):
    """An invalid convolution configuration or operand.

    The message names the argument, its value and how to fix it.
    A ``ValueError`` subclass, so code written for PyTorch's errors still catches it.
    """
