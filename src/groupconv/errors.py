"""The exceptions groupconv raises for an invalid configuration or operand.

Each is also a ``RuntimeError``, as PyTorch's convolutions raise on a bad call, so code written for
PyTorch's errors catches groupconv's too.
"""


class GroupConvError(ValueError, RuntimeError):
    """An invalid convolution configuration or operand.

    The message names the argument, its value and how to fix it. A ``ValueError``, as ``torch.nn``'s
    constructors raise, and a ``RuntimeError``, as PyTorch's convolutions raise when called.
    """


class OperandTypeError(TypeError, RuntimeError):
    """An operand of the wrong dtype or device: a ``TypeError``, and a ``RuntimeError`` as PyTorch raises."""
