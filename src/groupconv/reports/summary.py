"""Any PyTorch model, layer by layer: channels, groups, parameters, MACs, output shapes.

:func:`summary` runs the model once on zeros with a forward hook on every layer and
returns a :class:`Summary`, whose ``str()`` is the table ``groupconv summary`` prints
and whose :meth:`Summary.to_dict` is its ``--json`` (schema: ``docs/cli-json.md``).
:func:`load_model` resolves what the command line names: a built-in model of
:mod:`groupconv.models`, or ``package.module:callable``.

What is counted:
    parameters: every parameter of the model once (shared ones in the first layer that
        holds them), so ``total_params == sum(p.numel() for p in model.parameters())``.
    MACs: multiply-accumulates of convolutions (transposed ones included, counted as
        :meth:`ConvSpec.macs` and ``torch.utils.flop_counter`` count them) and of
        ``Linear`` layers (input elements x out_features), summed over every call of a
        layer. Normalisation, activations, pooling and additions are not counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch import nn

from ..errors import GroupConvError
from ..nn import TWINS, spec_of
from ..spec import Shape, check_shape
from ..tables import text_table
from . import formats as fmt
from .explain import GroupsOption, group_options

_CONVOLUTIONS = tuple(TWINS)  # torch.nn conv classes; groupconv twins subclass them


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer: a convolution, a ``Linear``, or any other module that holds parameters.

    Channels, groups and kernel are ``None`` where the layer has none; ``output_shape``
    is ``None`` for a layer the forward pass did not call. ``more_groups`` lists, for a
    convolution whose channel counts allow more groups, each larger valid group count
    with what it would save against the layer as it is.
    """

    name: str
    type: str
    in_channels: int | None
    out_channels: int | None
    groups: int | None
    kernel_size: tuple[int, ...] | None
    params: int
    macs: int
    output_shape: tuple[int, ...] | None
    calls: int
    more_groups: tuple[GroupsOption, ...]


@dataclasses.dataclass(frozen=True)
class Summary(fmt.JsonReport):
    """What :func:`summary` finds: ``rows`` (one per layer) and integer totals."""

    schema: ClassVar[str] = "groupconv.summary/1"

    model: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    total_params: int
    total_macs: int

    def __str__(self) -> str:
        return _report(self)


def summary(model: nn.Module, input_shape: Shape, name: str | None = None) -> Summary:
    """Run ``model`` once on zeros of ``input_shape`` (in eval mode, without gradients; its
    training flags are restored) and count every layer.

    Example (the layer of *A Deeper Understanding of Grouped Convolution*, and a classifier after it):
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2, bias=False), torch.nn.Flatten(),
        ...                             torch.nn.Linear(8 * 30 * 30, 10))
        >>> result = summary(model, (1, 4, 32, 32))
        >>> [(row.name, row.params, row.macs) for row in result.rows]
        [('0', 144, 129600), ('2', 72010, 72000)]
        >>> result.total_params == sum(p.numel() for p in model.parameters())
        True
        >>> [option.groups for option in result.rows[0].more_groups]  # 4 -> 8 channels also allow groups=4
        [4]
    """
    input_shape = check_shape("input_shape", input_shape, minimum=1)
    layers = [(layer_name, module) for layer_name, module in model.named_modules() if _is_layer(module)]
    calls: dict[nn.Module, list[tuple]] = {module: [] for _, module in layers}
    handles = [module.register_forward_hook(_recorder(calls[module]), with_kwargs=True) for _, module in layers]
    try:
        _run(model, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    rows = _rows(layers, calls)
    return Summary(
        model=name or type(model).__name__,
        input_shape=input_shape,
        rows=rows,
        total_params=sum(row.params for row in rows),
        total_macs=sum(row.macs for row in rows),
    )


def activation_bytes(model: nn.Module, input_shape: Shape) -> list[int]:
    """The bytes of every leaf layer's output when ``model`` runs on ``input_shape``, found on the meta device
    (no memory, no arithmetic); where the model fails there (on this shape, or making tensors of its own), the
    outputs of the layers before.

    Example:
        >>> activation_bytes(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.ReLU()), (2, 4, 32, 32))
        [57600, 57600]
    """
    from torch.func import functional_call

    sizes: list[int] = []
    record = lambda module, inputs, output: sizes.append(output.nbytes if isinstance(output, torch.Tensor) else 0)
    leaves = [module for module in model.modules() if next(module.children(), None) is None]
    handles = [module.register_forward_hook(record) for module in leaves]
    state = [*model.named_parameters(), *model.named_buffers()]
    tensors = {name: torch.empty_like(tensor, device="meta") for name, tensor in state}  # shapes, no memory
    dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    try:
        with torch.no_grad():
            functional_call(model, tensors, (torch.empty(input_shape, device="meta", dtype=dtype),))
    except Exception:  # the real run would allocate as far as this one got, then fail with its own message
        pass
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def load_model(reference: str, width: float | None = None) -> tuple[nn.Module, tuple[int, ...] | None]:
    """The model ``reference`` names, and its default input shape (``None`` when it has none).

    ``reference`` is a name in ``groupconv.models.BUILTIN``, or ``package.module:attribute``
    where the attribute is a module instance or a callable that returns one when called
    with no arguments. The current directory is searched after the installed packages.
    ``width`` is a built-in model's channel multiplier (each model's own default when None).

    Example:
        >>> model, input_shape = load_model("alexnet-g2")
        >>> model.features.conv2.groups, input_shape
        (2, (1, 1, 28, 28))
    """
    from .. import models

    if reference in models.BUILTIN:
        build = models.BUILTIN[reference]
        if width is None:
            return build(), models.DEFAULT_INPUT.get(reference)
        if "width" not in inspect.signature(build).parameters:
            raise GroupConvError(f"--width: the built-in model {reference!r} has no width; leave --width out")
        return build(width=width), models.DEFAULT_INPUT.get(reference)
    if width is not None:
        raise GroupConvError(f"--width applies to the built-in models only; {reference!r} sets its own widths")
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise GroupConvError(
            f"unknown model {reference!r}: use a built-in name ({', '.join(models.BUILTIN)}) or package.module:callable"
        )
    target = _attribute(_import(module_name), attribute, reference)
    model = target if isinstance(target, nn.Module) else _call(target, reference)
    if not isinstance(model, nn.Module):
        raise GroupConvError(f"{reference} gave a {type(model).__name__}, not a torch.nn.Module")
    return model, None


def _is_layer(module: nn.Module) -> bool:
    return isinstance(module, (*_CONVOLUTIONS, nn.Linear)) or any(True for _ in module.parameters(recurse=False))


def _recorder(calls: list[tuple]):
    """A forward hook (``with_kwargs=True``) that appends (input shape, output shape) to ``calls``."""

    def hook(module, args, kwargs, output):
        # the input may come as a keyword (conv(input=x)): torch's conv and Linear name it "input"
        candidates = (*args, kwargs.get("input"), *kwargs.values())
        first_input = next((x for x in candidates if isinstance(x, torch.Tensor)), None)
        calls.append((_shape(first_input), _shape(output)))

    return hook


def _shape(value) -> tuple[int, ...] | None:
    """The shape of a tensor, or of the first tensor in a tuple or list."""
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _run(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """One forward pass on zeros, in eval mode and without gradients, training flags restored after."""
    parameter = next(model.parameters(), None)
    like = {} if parameter is None else {"dtype": parameter.dtype, "device": parameter.device}
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), model_failures_in_one_line(input_shape):
            model(torch.zeros(input_shape, **like))
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def model_failures_in_one_line(input_shape: tuple[int, ...]) -> Iterator[None]:
    """Any model code can fail on a wrong shape: report it as one GroupConvError line."""
    try:
        yield
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GroupConvError(f"the model failed on an input of shape {input_shape}: {reason}") from error


def _rows(layers: Sequence[tuple[str, nn.Module]], calls: dict) -> tuple[LayerRow, ...]:
    seen: set[int] = set()  # parameters already counted: a shared one belongs to its first layer
    rows = []
    for name, module in layers:
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        rows.append(_row(name or "(model)", module, sum(p.numel() for p in own), calls[module]))
    return tuple(rows)


def _row(name: str, module: nn.Module, params: int, calls: list[tuple]) -> LayerRow:
    input_shapes = [shape for shape, _ in calls if shape is not None]
    output_shape = calls[0][1] if calls else None
    counts = {**_NOT_COUNTED, **_counts(module, input_shapes)}
    return LayerRow(name, type(module).__name__, params=params, output_shape=output_shape, calls=len(calls), **counts)


_NOT_COUNTED = dict(in_channels=None, out_channels=None, groups=None, kernel_size=None, macs=0, more_groups=())


def _counts(module: nn.Module, input_shapes: list[tuple]) -> dict:
    """Channels, groups, kernel, MACs and larger valid group counts, for a convolution or Linear layer."""
    if isinstance(module, _CONVOLUTIONS):
        spec = spec_of(module)
        options = group_options(spec, input_shapes, against=spec.groups)
        return dict(
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
            groups=spec.groups,
            kernel_size=spec.kernel_size,
            macs=sum(spec.macs(shape) for shape in input_shapes),
            more_groups=tuple(option for option in options if option.groups > spec.groups),
        )
    if isinstance(module, nn.Linear):
        macs = sum(math.prod(shape) * module.out_features for shape in input_shapes)  # (..., in) @ (in, out)
        return dict(in_channels=module.in_features, out_channels=module.out_features, macs=macs)
    return {}


def _import(module_name: str):
    """``module_name`` imported, the current directory searched after the installed packages: a local file
    that shares an installed package's name (a ``torchvision.py``) must not run in its place."""
    directory = os.getcwd()
    added = directory not in sys.path
    if added:
        sys.path.append(directory)
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # the user's module, whatever it raises: one line naming it
        reason = " ".join(str(error).split())
        raise GroupConvError(f"cannot import {module_name!r}: {type(error).__name__}: {reason}") from None
    finally:
        if added:
            sys.path.remove(directory)


def _attribute(module, attribute: str, reference: str):
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise GroupConvError(f"{reference}: {module.__name__!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def _call(target, reference: str):
    if not callable(target):
        raise GroupConvError(f"{reference} is a {type(target).__name__}: name a torch.nn.Module or a function")
    try:
        return target()
    except Exception as error:  # the user's builder: any failure is reported in one line
        raise GroupConvError(f"calling {reference}() failed: {type(error).__name__}: {error}") from error


# The human report ------------------------------------------------------------------------------------------------


def _report(result: Summary) -> str:
    headers = ["layer", "type", "in", "out", "groups", "kernel", "parameters", "MACs", "output shape"]
    rows = [_table_row(row) for row in result.rows]
    rows.append(["total", "", "", "", "", "", f"{result.total_params:,}", f"{result.total_macs:,}", ""])
    sections = [
        f"{result.model} on input {fmt.shape(result.input_shape)}",
        text_table(headers, rows, "<<>>><>><"),
        "MACs: convolutions (transposed included) and Linear layers, summed over every call;\n"
        "normalisation, activations, pooling and additions are not counted.",
    ]
    flagged = [row for row in result.rows if row.more_groups]
    if flagged:
        sections.append(_flags(flagged))
    return "\n\n".join(sections)


def _table_row(row: LayerRow) -> list[str]:
    dash = lambda value: "-" if value is None else str(value)
    return [
        row.name,
        row.type,
        dash(row.in_channels),
        dash(row.out_channels),
        dash(row.groups),
        fmt.kernel(row.kernel_size),
        f"{row.params:,}",
        f"{row.macs:,}",
        fmt.shape(row.output_shape),
    ]


def _flags(flagged: Sequence[LayerRow]) -> str:
    """Each flagged layer with the next valid group count and the largest, and what each would save."""
    rows = []
    for row in flagged:
        options = list(dict.fromkeys([row.more_groups[0], row.more_groups[-1]]))
        for index, option in enumerate(options):
            layer = [row.name, row.groups] if index == 0 else ["", ""]
            rows.append(
                [
                    *layer,
                    option.groups,
                    _saved(option.params_saved, option.params),
                    _saved(option.macs_saved, option.macs),
                ]
            )
    heading = (
        f"{fmt.plural(len(flagged), 'convolution')} could use more groups. For each, the next valid count and the "
        "largest,\nwith what they would save against the layer as it is:"
    )
    return heading + "\n" + text_table(["layer", "groups", "more groups", "params saved", "MACs saved"], rows, "<>>>>")


def _saved(part: int | None, left: int | None) -> str:
    """``part`` saved, as a share of the layer's own full count (``left`` + ``part``): not of ``row.params``,
    which leaves out a weight tied to an earlier layer."""
    return "-" if part is None else f"{part:,} ({fmt.percent(part, part + left)})"
