"""Grouped convolution on NumPy arrays, forward and backward, without any framework.

The same layers as :mod:`groupconv.functional` (1-, 2- and 3-D convolution and
transposed convolution, any ``groups``, PyTorch's argument conventions), on plain
``numpy.ndarray``s, with the gradients written out rather than taken by autograd.

Shape legend, as in :mod:`groupconv.spec`:
    N batch, C input channels, O output channels, G groups,
    Cg = C / G and Og = O / G channels per group,
    K kernel size, S input size, L output size (each one entry per spatial dim),
    Sp padded input size, P = prod(L) output positions, D number of spatial dims.

Formulation: shift-and-matmul, one step per kernel tap. Kernel tap ``t`` meets, for
every output position, one input position; together those are a strided slice
(N, G, Cg, *L) of the padded input, and that tap's contribution to the output is one
batched matmul with its filters (G, Og, Cg). Running the same loop backwards
scatter-adds into the padded input (the input gradient, which is also the transposed
convolution), and contracting the output gradient with each tap's slice gives that
tap's weight gradient. So there are three kernels in all; the transposed convolution
and its gradients are the same three with the roles of input and output swapped.

Example:
    >>> import numpy as np
    >>> from groupconv import numpy as gnp
    >>> x, w = np.ones((1, 4, 5, 5)), np.ones((8, 2, 3, 3))
    >>> y = gnp.conv(x, w, groups=2, padding=1)
    >>> y.shape
    (1, 8, 5, 5)
    >>> y[0, 0, :2]  # 2 channels x 3 x 3 taps inside, fewer taps on the zero-padded border
    array([[ 8., 12., 12., 12.,  8.],
           [12., 18., 18., 18., 12.]])
    >>> gnp.conv_transpose(y, w, groups=2, padding=1).shape
    (1, 4, 5, 5)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from .errors import GroupConvError
from .spec import ConvSpec

__all__ = ["Grads", "conv", "conv_grads", "conv_transpose", "conv_transpose_grads"]

# torch.nn.ConvNd's padding modes, as np.pad names them
_NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Grads(NamedTuple):
    """The gradients of a loss with respect to each operand; ``bias`` is None without a bias."""

    input: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Grouped convolution: (N, C, *S) x (O, Cg, *K) -> (N, O, *L), D = weight.ndim - 2.

    Computes what ``torch.nn.functional.conv{D}d`` computes, and, with ``padding_mode``,
    what ``torch.nn.Conv{D}d`` does.

    Args:
        x: the input, (N, C, *S) or unbatched (C, *S); float16, float32 or float64.
        weight: (O, C / groups, *K), the same dtype as ``x``.
        bias: None or (O,).
        stride, dilation: an int or D ints.
        padding: an int, D ints, ``"same"`` (stride 1 only) or ``"valid"``.
        groups: channel groups; both C and O must be divisible by it.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Returns:
        (N, O, *L), or (O, *L) for an unbatched input, in ``x``'s dtype.

    Raises:
        TypeError: an operand that is not a floating-point array, or mismatched dtypes.
        GroupConvError: an invalid configuration, named with its fix.

    Example:
        >>> import numpy as np
        >>> x = np.arange(5.0).reshape(1, 1, 5)
        >>> conv(x, np.array([[[1.0, 0.0, -1.0]]]))  # cross-correlation, as PyTorch: x[i] - x[i + 2]
        array([[[-2., -2., -2.]]])
        >>> conv(x, np.ones((1, 1, 3)), padding="same", padding_mode="replicate")
        array([[[ 1.,  3.,  6.,  9., 11.]]])
    """
    spec = _spec(
        weight, bias, groups=groups, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode
    )
    operands = _operands(spec, x, weight, bias)
    x = operands.input
    y = _forward(_pad(x, spec), operands.weight, spec, spec.output_size(x.shape[2:]))
    return operands.activation(_add_bias(y, operands.bias))


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Grouped transposed convolution: (N, C, *S) x (C, Og, *K) -> (N, O, *L), the
    adjoint of :func:`conv` with the same arguments.

    Computes what ``torch.nn.functional.conv_transpose{D}d`` computes (same argument
    order). Output size per dim:
    (S - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1.

    Args:
        x: the input, (N, C, *S) or unbatched (C, *S); float16, float32 or float64.
        weight: (C, O / groups, *K), PyTorch's transposed layout.
        bias: None or (O,).
        stride, padding, dilation: an int or D ints.
        output_padding: an int or D ints, each smaller than its stride or its dilation.
        groups: channel groups.

    Example:
        >>> import numpy as np
        >>> conv_transpose(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2)
        array([[[1., 1., 1., 1., 1., 1.]]])
        >>> conv_transpose(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2, output_padding=1).shape
        (1, 1, 7)
    """
    spec = _spec(
        weight,
        bias,
        transposed=True,
        groups=groups,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )
    operands = _operands(spec, x, weight, bias)
    x = operands.input
    output_size = spec.output_size(x.shape[2:])
    reach = _input_grad(x, operands.weight, spec)
    return operands.activation(_add_bias(_crop(reach, _lows(spec), output_size), operands.bias))


def conv_grads(
    grad_output, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
) -> Grads:
    """The gradients of ``conv(x, weight, bias, ...)`` given the output's gradient.

    Args:
        grad_output: dLoss/dy, the shape of ``conv``'s output.
        x, weight, bias, ...: exactly as for :func:`conv`.

    Returns:
        ``Grads(input, weight, bias)``, each the shape of its operand; ``bias`` is None
        when ``bias`` is None.

    Example:
        >>> import numpy as np
        >>> x, w = np.arange(4.0).reshape(1, 1, 4), np.ones((1, 1, 2))
        >>> grads = conv_grads(np.ones((1, 1, 3)), x, w, np.zeros(1))
        >>> grads.input, grads.weight, grads.bias
        (array([[[1., 2., 2., 1.]]]), array([[[3., 6.]]]), array([3.]))
        >>> conv_grads(np.ones((1, 1, 4)), x, w, padding="same", padding_mode="circular").input
        array([[[2., 2., 2., 2.]]])
    """
    spec = _spec(
        weight, bias, groups=groups, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode
    )
    operands = _operands(spec, x, weight, bias, grad_output)
    x, weight, grad_y = operands.input, operands.weight, operands.grad_output
    grad_x = _unpad(_input_grad(grad_y, weight, spec), spec, x.shape[2:])
    grad_w = _weight_grad(_pad(x, spec), grad_y, spec)
    return operands.grads(grad_x, grad_w)


def conv_transpose_grads(
    grad_output, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> Grads:
    """The gradients of ``conv_transpose(x, weight, bias, ...)`` given the output's gradient.

    A transposed convolution is the input gradient of a convolution, so its input
    gradient is that convolution applied to ``grad_output``, and its weight gradient
    is that convolution's weight gradient with input and output swapped.

    Args:
        grad_output: dLoss/dy, the shape of ``conv_transpose``'s output.
        x, weight, bias, ...: exactly as for :func:`conv_transpose`.

    Returns:
        ``Grads(input, weight, bias)``, each the shape of its operand.

    Example:
        >>> import numpy as np
        >>> x, w = np.ones((1, 1, 2)), np.array([[[1.0, 2.0]]])
        >>> grads = conv_transpose_grads(np.arange(4.0).reshape(1, 1, 4), x, w, stride=2)
        >>> grads.input, grads.weight, grads.bias is None
        (array([[[2., 8.]]]), array([[[2., 4.]]]), True)
    """
    spec = _spec(
        weight,
        bias,
        transposed=True,
        groups=groups,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )
    operands = _operands(spec, x, weight, bias, grad_output)
    x, weight, grad_y = operands.input, operands.weight, operands.grad_output
    padded_grad_y = _pad(grad_y, spec)
    # output_padding leaves rows past the last window of x: only x's L windows are read
    grad_x = _forward(padded_grad_y, weight, spec, x.shape[2:])
    grad_w = _weight_grad(padded_grad_y, x, spec)
    return operands.grads(grad_x, grad_w)


# --- the three kernels: every shape is read from the arrays, only geometry from the spec


def _forward(padded: np.ndarray, weight: np.ndarray, spec: ConvSpec, output_size: Sequence[int]) -> np.ndarray:
    """conv of an already padded input, its first L windows: (N, C, *Sp) x (O, Cg, *K) -> (N, O, *L)."""
    n, g = padded.shape[0], spec.groups
    filters = _split_groups(weight, g, axis=0)  # (G, Og, Cg, *K)
    _, og, cg, *kernel = filters.shape
    inputs = _split_groups(padded, g, axis=1)  # (N, G, Cg, *Sp)
    positions = math.prod(output_size)
    y = np.zeros((n, g, og, positions), padded.dtype)
    for tap in _taps(kernel):
        window = inputs[_tap_window(tap, spec, output_size)].reshape(n, g, cg, positions)
        y += filters[(..., *tap)] @ window  # (G, Og, Cg) @ (N, G, Cg, P): one batched GEMM
    return y.reshape(n, g * og, *output_size)


def _input_grad(grad_y: np.ndarray, weight: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """dLoss/d(padded input), over the padded positions some window reaches:
    (N, O, *L) x (O, Cg, *K) -> (N, C, *reach), reach = (L - 1) * stride + dilation * (K - 1) + 1."""
    n, _, *output_size = grad_y.shape
    g = spec.groups
    filters = _split_groups(weight, g, axis=0).swapaxes(1, 2)  # (G, Cg, Og, *K)
    _, cg, og, *kernel = filters.shape
    grads = _split_groups(grad_y, g, axis=1).reshape(n, g, og, math.prod(output_size))  # (N, G, Og, P)
    reach = [(size - 1) * s + r for size, s, r in zip(output_size, spec.stride, spec.reach)]
    padded = np.zeros((n, g, cg, *reach), grad_y.dtype)
    for tap in _taps(kernel):
        # one tap's window is a strided slice with no repeated position, so += adds them all
        padded[_tap_window(tap, spec, output_size)] += (filters[(..., *tap)] @ grads).reshape(n, g, cg, *output_size)
    return padded.reshape(n, g * cg, *reach)


def _weight_grad(padded: np.ndarray, grad_y: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """dLoss/dweight of conv of an already padded input: (N, C, *Sp), (N, O, *L) -> (O, Cg, *K).

    Only the first L windows of ``padded`` are read: it may hold more (a transposed
    convolution's output_padding), and the positions past them meet no output."""
    n, out_channels, *output_size = grad_y.shape
    g, positions = spec.groups, math.prod(output_size)
    og, cg = out_channels // g, padded.shape[1] // g
    kernel = spec.kernel_size
    inputs = _split_groups(padded, g, axis=1)  # (N, G, Cg, *Sp)
    grads = grad_y.reshape(n, g, og, positions).transpose(1, 2, 0, 3).reshape(g, og, n * positions)
    grad_w = np.empty((g, og, cg, *kernel), grad_y.dtype)
    for tap in _taps(kernel):
        window = inputs[_tap_window(tap, spec, output_size)].reshape(n, g, cg, positions)
        window = window.transpose(1, 0, 3, 2).reshape(g, n * positions, cg)  # (G, N*P, Cg)
        grad_w[(..., *tap)] = grads @ window  # (G, Og, N*P) @ (G, N*P, Cg): sums batch and positions
    return grad_w.reshape(g * og, cg, *kernel)


def _taps(kernel_size: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*map(range, kernel_size))


def _tap_window(tap: Sequence[int], spec: ConvSpec, output_size: Sequence[int]) -> tuple:
    """The index of the padded positions that kernel tap ``tap`` meets, one per output position."""
    return (
        ...,
        *(
            slice(t * d, t * d + (size - 1) * s + 1, s)
            for t, d, s, size in zip(tap, spec.dilation, spec.stride, output_size)
        ),
    )


def _split_groups(a: np.ndarray, groups: int, axis: int) -> np.ndarray:
    """``a`` with its channel axis split into (G, channels / G); a view."""
    return a.reshape(*a.shape[:axis], groups, a.shape[axis] // groups, *a.shape[axis + 1 :])


# --- padding and its adjoint


def _pad(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """(N, C, *S) -> (N, C, *Sp), padded by ``spec.padding_pairs`` in ``spec.padding_mode``."""
    return np.pad(x, [(0, 0), (0, 0), *spec.padding_pairs], mode=_NP_PAD_MODES[spec.padding_mode])


def _unpad(grad_reach: np.ndarray, spec: ConvSpec, input_size: Sequence[int]) -> np.ndarray:
    """The adjoint of :func:`_pad`, from the gradient over the padded positions windows reach."""
    if spec.padding_mode == "zeros":  # zero padding's adjoint just drops the border
        return _crop(grad_reach, _lows(spec), input_size)
    padded_size = [size + lo + hi for size, (lo, hi) in zip(input_size, spec.padding_pairs)]
    grad = _crop(grad_reach, [0] * len(padded_size), padded_size)
    mode = _NP_PAD_MODES[spec.padding_mode]
    for axis, ((lo, hi), size) in enumerate(zip(spec.padding_pairs, input_size), start=2):
        source = np.pad(np.arange(size), (lo, hi), mode=mode)  # padded position -> the input index it copies
        unpadded = np.zeros((*grad.shape[:axis], size, *grad.shape[axis + 1 :]), grad.dtype)
        # a copied position's gradient goes to its source, which may be copied several times
        np.add.at(unpadded, (slice(None),) * axis + (source,), grad)
        grad = unpadded
    return grad


def _crop(a: np.ndarray, starts: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    """a[..., start:start+size] per spatial dim, zero-filled where that runs past a's end
    (a transposed convolution's output_padding can ask for rows no window reaches)."""
    kept = [max(0, min(size, extent - start)) for start, size, extent in zip(starts, sizes, a.shape[2:])]
    out = np.zeros((*a.shape[:2], *sizes), a.dtype)
    out[(..., *map(slice, kept))] = a[(..., *(slice(start, start + k) for start, k in zip(starts, kept)))]
    return out


def _lows(spec: ConvSpec) -> list[int]:
    return [lo for lo, _ in spec.padding_pairs]


def _add_bias(y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if bias is not None:
        y += bias.reshape(-1, *(1,) * (y.ndim - 2))
    return y


# --- validation, in the order of groupconv.functional


def _spec(weight, bias, *, groups, transposed=False, **layer) -> ConvSpec:
    """The layer a call describes, its channels and kernel read from ``weight``."""
    _check_is_array("weight", weight)
    dims = weight.ndim - 2
    if dims not in (1, 2, 3):
        layout = "in_channels, out_channels/groups" if transposed else "out_channels, in_channels/groups"
        raise GroupConvError(
            f"weight of size {list(weight.shape)} has {weight.ndim} dimensions; expected 3, 4 or 5: "
            f"({layout}, *kernel_size) for a 1-, 2- or 3-D {'transposed ' if transposed else ''}convolution"
        )
    return ConvSpec.from_weight(
        weight.shape, groups=groups, transposed=transposed, dims=dims, bias=bias is not None, **layer
    )


@dataclasses.dataclass(frozen=True)
class _Operands:
    """Checked operands, batched and in the dtype they are computed in."""

    input: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    grad_output: np.ndarray | None
    dtype: np.dtype  # the caller's, which results come back in
    batched: bool  # whether the caller's input had a batch axis

    def activation(self, a: np.ndarray) -> np.ndarray:
        """An input- or output-like result, back in the caller's dtype and batching."""
        a = a.astype(self.dtype, copy=False)
        return a if self.batched else a[0]

    def grads(self, grad_input: np.ndarray, grad_weight: np.ndarray) -> Grads:
        grad_bias = None
        if self.bias is not None:
            grad_bias = self.grad_output.sum(axis=(0, *range(2, self.grad_output.ndim)))
            grad_bias = grad_bias.astype(self.dtype, copy=False)
        return Grads(self.activation(grad_input), grad_weight.astype(self.dtype, copy=False), grad_bias)


_FORWARD = object()  # grad_output of a forward call, which has none (None is a wrong grad_output)


def _operands(spec: ConvSpec, x, weight, bias, grad_output=_FORWARD) -> _Operands:
    """TypeError for operands of the wrong type or dtype, GroupConvError (via the spec) for
    the wrong shape; then the operands batched and, for float16, upcast to float32."""
    named = {"x": x, "weight": weight}
    if bias is not None:
        named["bias"] = bias
    if grad_output is not _FORWARD:
        named["grad_output"] = grad_output
    for name, array in named.items():
        _check_is_array(name, array)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(
                f"{name} has dtype {array.dtype}; convolution needs floating point: use {name}.astype(np.float32)"
            )
        if array.dtype != x.dtype:
            raise TypeError(
                f"{name} has dtype {array.dtype} but x has {x.dtype}; convert one, e.g. {name}.astype(x.dtype)"
            )
    if bias is not None and bias.shape != (spec.out_channels,):
        raise GroupConvError(
            f"bias of size {list(bias.shape)} does not fit the layer: expected [{spec.out_channels}], "
            f"one per output channel"
        )
    output_shape = spec.output_shape(x.shape)  # validates the input's rank, channels and size
    if grad_output is _FORWARD:
        grad_output = None
    elif grad_output.shape != output_shape:
        raise GroupConvError(
            f"grad_output of size {list(grad_output.shape)} does not fit the output: expected {list(output_shape)}"
        )
    batched = x.ndim == spec.dims + 2
    # float16 has too few bits to accumulate in: compute in float32, return float16
    compute = np.float32 if x.dtype == np.float16 else x.dtype

    def computed(a, is_activation):
        if a is None:
            return None
        a = a.astype(compute, copy=False)
        return a if batched or not is_activation else a[np.newaxis]

    return _Operands(
        input=computed(x, True),
        weight=computed(weight, False),
        bias=computed(bias, False),
        grad_output=computed(grad_output, True),
        dtype=x.dtype,
        batched=batched,
    )


def _check_is_array(name: str, value: object) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}; use np.asarray({name})")
