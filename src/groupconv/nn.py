"""Grouped convolution layers: drop-in twins of ``torch.nn``'s conv modules.

Each class subclasses its ``torch.nn`` namesake, so constructor, parameter names and
shapes, initialisation, ``state_dict`` keys and ``extra_repr`` are PyTorch's own, and
``load_state_dict`` works in both directions. What changes: arguments are validated
by :class:`~groupconv.ConvSpec` (errors name the fix), and the forward pass, with its
gradients, is computed by groupconv.

Like PyTorch's, the layers follow ``torch.autocast`` (their operands are cast to autocast's
dtype, as for a lower-precision op), compile with ``torch.compile`` and export with
``torch.export``. ``torch.jit.script`` is not supported: it raises a TypeError that says
to use ``torch.compile`` or ``torch.export`` instead.

Example:
    >>> import torch, groupconv
    >>> conv = groupconv.nn.Conv2d(4, 8, kernel_size=3, groups=2, bias=False)
    >>> conv.weight.shape
    torch.Size([8, 2, 3, 3])
    >>> conv(torch.randn(1, 4, 32, 32)).shape
    torch.Size([1, 8, 30, 30])
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import torch

from . import functional
from .errors import GroupConvError
from .spec import ConvSpec


class _GroupConvNd:
    """Validation before torch's ``__init__``, and ``spec`` for the layer as it stands."""

    _dims: int
    _transposed = False

    def __init__(self, *args, **kwargs):
        layer = inspect.signature(self._torch_class()).bind(*args, **kwargs)
        layer.apply_defaults()
        spec_args = {k: v for k, v in layer.arguments.items() if k not in ("device", "dtype")}
        spec_args["bias"] = bool(spec_args["bias"])  # torch takes any truthy value
        ConvSpec(**spec_args, transposed=self._transposed, dims=self._dims)
        super().__init__(*args, **kwargs)

    def __prepare_scriptable__(self):  # torch.jit.script calls this on every submodule first
        raise TypeError(
            f"torch.jit.script cannot compile groupconv.nn.{type(self).__name__} (TorchScript is deprecated and "
            "groupconv's validation and routing are Python): use torch.compile(model) or "
            "torch.export.export(model, (example_input,))"
        )

    @classmethod
    def _torch_class(cls) -> type:
        return next(base for base in cls.__mro__ if base.__module__.startswith("torch.nn"))

    @property
    def spec(self) -> ConvSpec:
        """The layer's :class:`~groupconv.ConvSpec`, read from its current attributes."""
        attributes = (
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias is not None,
            self.padding_mode,
            self.transposed,
            self.output_padding,
            self._dims,
        )
        if torch.compiler.is_compiling():  # dynamo warns on lru_cache (it traces the validation instead)
            return _spec.__wrapped__(*attributes)
        try:
            return _spec(*attributes)
        except TypeError:  # an unhashable attribute (a list the user set): validated afresh, or its error raised
            return _spec.__wrapped__(*attributes)


@functools.lru_cache(maxsize=1024)
def _spec(*attributes) -> ConvSpec:
    """A layer's ConvSpec, validated once per distinct set of attributes: a small layer's forward
    would otherwise spend more time validating than convolving."""
    *arguments, dims = attributes
    return ConvSpec(*arguments, dims=dims)


class _GroupConv(_GroupConvNd):
    def _conv_forward(self, input, weight, bias):  # torch.nn.ConvNd.forward calls this
        return functional.apply(self.spec, input, weight, bias)


class _GroupConvTranspose(_GroupConvNd):
    _transposed = True

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """``output_size`` picks among the output sizes a strided layer can give, as in PyTorch."""
        spec = self.spec
        if output_size is not None:
            functional.check_is_tensor("input", input)
            spec.output_shape(input.shape)  # validate before torch's helper indexes the shape
            try:
                output_padding = self._output_padding(
                    input,
                    output_size,
                    list(self.stride),
                    list(self.padding),
                    list(self.kernel_size),
                    self._dims,
                    list(self.dilation),
                )
            except ValueError as error:
                raise GroupConvError(f"output_size={output_size}: {error}") from None
            spec = dataclasses.replace(spec, output_padding=tuple(output_padding))
        return functional.apply(spec, input, self.weight, self.bias)


class Conv1d(_GroupConv, torch.nn.Conv1d):
    """Grouped 1-D convolution, computed by groupconv; see ``torch.nn.Conv1d``."""

    _dims = 1


class Conv2d(_GroupConv, torch.nn.Conv2d):
    """Grouped 2-D convolution, computed by groupconv; see ``torch.nn.Conv2d``."""

    _dims = 2


class Conv3d(_GroupConv, torch.nn.Conv3d):
    """Grouped 3-D convolution, computed by groupconv; see ``torch.nn.Conv3d``."""

    _dims = 3


class ConvTranspose1d(_GroupConvTranspose, torch.nn.ConvTranspose1d):
    """Grouped 1-D transposed convolution, computed by groupconv; see ``torch.nn.ConvTranspose1d``."""

    _dims = 1


class ConvTranspose2d(_GroupConvTranspose, torch.nn.ConvTranspose2d):
    """Grouped 2-D transposed convolution, computed by groupconv; see ``torch.nn.ConvTranspose2d``."""

    _dims = 2


class ConvTranspose3d(_GroupConvTranspose, torch.nn.ConvTranspose3d):
    """Grouped 3-D transposed convolution, computed by groupconv; see ``torch.nn.ConvTranspose3d``."""

    _dims = 3


TWINS = {
    twin._torch_class(): twin for twin in (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
}
for _twin in TWINS.values():
    _twin.__signature__ = inspect.signature(_twin._torch_class())


def convert(model: torch.nn.Module) -> torch.nn.Module:
    """Make every ``torch.nn`` conv module in ``model`` compute with groupconv; return ``model``.

    Modules change class in place: parameters, buffers, hooks and any optimizer that
    holds them stay as they are. Subclasses of torch's conv modules are left alone.

    Example:
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2)))
        >>> type(model[0]).__module__
        'groupconv.nn'
    """
    for module in model.modules():
        twin = TWINS.get(type(module))
        if twin is not None:
            module.__class__ = twin
    return model
