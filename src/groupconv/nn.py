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
from .layouts import sizes
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
        if self._transposed:  # PyTorch checks it at forward, where output_size may stand in for it
            spec_args["output_padding"] = 0
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
        return _validated(_attributes(self))


def _attributes(module: torch.nn.Module) -> tuple:
    """A conv module's settings in ConvSpec's field order, ``dims`` last: the one place they are read."""
    return (
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.groups,
        module.bias is not None,
        module.padding_mode,
        module.transposed,
        module.output_padding,
        len(module.kernel_size),
    )


def _validated(attributes: tuple) -> ConvSpec:
    """The ConvSpec of a conv module's ``attributes`` (:func:`_attributes`)."""
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
    def _conv_forward(self, input, weight, bias):  # torch.nn.ConvNd.forward calls this, and so may a user
        if isinstance(input, torch.fx.Proxy):  # symbolic tracing sees through to PyTorch's convolution
            return super()._conv_forward(input, weight, bias)
        spec = self.spec
        if isinstance(weight, torch.Tensor) and sizes(weight) != spec.weight_shape:  # a slice: torch allows
            spec = ConvSpec.from_weight(sizes(weight), groups=spec.groups, **_settings(spec))
        return functional.apply(spec, input, weight, bias)


def _settings(spec: ConvSpec) -> dict:
    """What a layer's spec says beyond its channels, kernel and groups: how a weight of another shape runs."""
    return dict(stride=spec.stride, padding=spec.padding, dilation=spec.dilation, bias=spec.bias,
                padding_mode=spec.padding_mode, dims=spec.dims)  # fmt: skip


class _GroupConvTranspose(_GroupConvNd):
    _transposed = True

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """``output_size`` picks among the output sizes a strided layer can give, as in PyTorch."""
        if isinstance(input, torch.fx.Proxy):  # symbolic tracing sees through to PyTorch's convolution
            return super().forward(input, output_size)
        if output_size is None:
            return functional.apply(self.spec, input, self.weight, self.bias)
        *settings, _, dims = _attributes(self)  # output_size stands in for the output_padding set, as in PyTorch
        functional.check_is_tensor("input", input)
        _validated((*settings, 0, dims)).output_shape(input.shape)  # validate before torch's helper indexes it
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
        return functional.apply(_validated((*settings, tuple(output_padding), dims)), input, self.weight, self.bias)


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


_CONV_BASES = tuple(TWINS)
# torch.nn.LazyConv2d and the like: each becomes its cls_to_become (torch.nn.Conv2d, ...) at its first forward
_LAZY = {getattr(torch.nn, f"Lazy{torch_class.__name__}"): torch_class for torch_class in TWINS}
_TORCH_OF_TWIN = {twin: torch_class for torch_class, twin in TWINS.items()}


def spec_of(module: torch.nn.Module) -> ConvSpec:
    """The :class:`~groupconv.ConvSpec` of any ``torch.nn`` or groupconv conv module (subclasses too).

    Example:
        >>> spec_of(torch.nn.ConvTranspose1d(6, 4, 3, groups=2)).weight_shape
        (6, 2, 3)
    """
    if isinstance(module, _GroupConvNd):
        return module.spec
    if not isinstance(module, _CONV_BASES):
        raise TypeError(
            f"spec_of takes a torch.nn conv module (Conv1d ... ConvTranspose3d), got {type(module).__name__}"
        )
    *arguments, dims = _attributes(module)
    return ConvSpec(*arguments, dims=dims)


def module_of(spec: ConvSpec, *, groupconv: bool = False, **factory) -> torch.nn.Module:
    """A new conv module of ``spec``, initialised as PyTorch does: ``torch.nn``'s, or with ``groupconv``
    its groupconv twin; ``factory`` is ``device`` and ``dtype``.

    Example:
        >>> module_of(ConvSpec(4, 8, 3, groups=2, bias=False))
        Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), groups=2, bias=False)
    """
    torch_class = getattr(torch.nn, f"{'ConvTranspose' if spec.transposed else 'Conv'}{spec.dims}d")
    arguments = {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)}
    del arguments["transposed"], arguments["dims"]
    if not spec.transposed:
        del arguments["output_padding"]
    return (TWINS[torch_class] if groupconv else torch_class)(**arguments, **factory)


@dataclasses.dataclass(frozen=True)
class Conversion:
    """Which conv modules of a model groupconv computes, and why each other one is left to PyTorch.

    ``groupconv``: the names of the modules groupconv computes; ``pytorch``: name -> why not.
    """

    groupconv: tuple[str, ...]
    pytorch: dict[str, str]

    def __str__(self) -> str:
        lines = [f"{len(self.groupconv)} conv modules computed by groupconv, {len(self.pytorch)} left to PyTorch"]
        lines += [f"  {name or '(the model)'}: {why}" for name, why in self.pytorch.items()]
        return "\n".join(lines)


def conversion(model: torch.nn.Module) -> Conversion:
    """What :func:`convert` does to ``model``, or did: each conv module, computed by groupconv or not and why.

    Example:
        >>> class Custom(torch.nn.Conv2d):
        ...     def forward(self, input):
        ...         return super().forward(input)
        >>> print(conversion(convert(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), Custom(4, 4, 1)))))
        1 conv modules computed by groupconv, 1 left to PyTorch
          1: Custom subclasses torch.nn.Conv2d and overrides forward; groupconv leaves it to PyTorch
    """
    ours, theirs = [], {}
    for name, module in model.named_modules():
        if isinstance(module, _GroupConvNd) or type(module) in TWINS or type(module) in _LAZY:
            ours.append(name)
        elif isinstance(module, _CONV_BASES):
            theirs[name] = _why_not(type(module))
    return Conversion(tuple(ours), theirs)


def _why_not(subclass: type) -> str:
    base = next(base for base in subclass.__mro__ if base in TWINS)
    overridden = [name for name in ("forward", "_conv_forward") if getattr(subclass, name) is not getattr(base, name)]
    what = f"overrides {' and '.join(overridden)}" if overridden else "may rely on torch's class in its own code"
    return f"{subclass.__name__} subclasses torch.nn.{base.__name__} and {what}; groupconv leaves it to PyTorch"


def convert(model: torch.nn.Module) -> torch.nn.Module:
    """Make every ``torch.nn`` conv module in ``model`` compute with groupconv; return ``model``.

    Modules change class in place: parameters, buffers, hooks and any optimizer that
    holds them stay as they are; a lazy one (``torch.nn.LazyConv2d``, ...) becomes groupconv's when its
    first forward builds it. Subclasses of torch's conv modules are left to PyTorch;
    :func:`conversion` says which modules groupconv computes and why each other one is
    not, and :func:`revert` undoes this.

    Example:
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2)))
        >>> type(model[0]).__module__
        'groupconv.nn'
    """
    for module in model.modules():
        twin = TWINS.get(type(module))
        if twin is not None:
            module.__class__ = twin
        elif type(module) in _LAZY:  # not yet built: it becomes the twin when it is, at its first forward
            module.cls_to_become = TWINS[_LAZY[type(module)]]
    return model


def revert(model: torch.nn.Module) -> torch.nn.Module:
    """Make every groupconv conv module in ``model`` a ``torch.nn`` one again, in place, with the same
    parameters; return ``model``. The inverse of :func:`convert`.

    Example:
        >>> type(revert(torch.nn.Sequential(Conv2d(4, 8, 3, groups=2)))[0]).__module__
        'torch.nn.modules.conv'
    """
    for module in model.modules():
        torch_class = _TORCH_OF_TWIN.get(type(module))  # a user's subclass of a twin keeps its class
        if torch_class is not None:
            module.__class__ = torch_class
        elif type(module) in _LAZY:  # not yet built: it becomes torch's class again when it is
            vars(module).pop("cls_to_become", None)
    return model
