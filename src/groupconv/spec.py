"""What a grouped convolution layer is, before any compute: validation, shapes and counts.

Framework-free: nothing here imports torch or numpy, so every frontend (tensors,
arrays, the CLI) validates and counts through this one module.

Shape legend, used across groupconv:
    N batch, C input channels, O output channels, G groups,
    Cg = C / G and Og = O / G channels per group,
    K kernel size, S input size, L output size (each one entry per spatial dim),
    D number of spatial dims (1, 2 or 3).

A convolution's weight is (O, Cg, *K); a transposed convolution's is (C, Og, *K),
exactly as in PyTorch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Union

from .errors import GroupConvError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("same", "valid")
SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}

IntOrInts = Union[int, Sequence[int]]  # noqa: UP007 (evaluated at import: 3.10 has no | on Sequence)
Shape = Sequence[int]
_INT64_MAX = 2**63 - 1


def max_groups(in_channels: int, out_channels: int) -> int:
    """The largest valid ``groups``: the greatest common divisor of the channel counts.

    Example:
        >>> max_groups(3, 9)  # (1, 3, 64, 64) -> (1, 9, 64, 64) allows at most 3 groups
        3
    """
    in_channels = check_int("in_channels", in_channels, minimum=1)
    out_channels = check_int("out_channels", out_channels, minimum=1)
    return math.gcd(in_channels, out_channels)


def valid_groups(in_channels: int, out_channels: int) -> list[int]:
    """Every valid ``groups`` for these channel counts, ascending: the divisors of their gcd.

    Example:
        >>> valid_groups(4, 8)
        [1, 2, 4]
    """
    divisors = [1]
    for prime, power in _factorise(max_groups(in_channels, out_channels)).items():
        divisors = [d * prime**k for d in divisors for k in range(power + 1)]
    return sorted(divisors)


def groups_error(in_channels: int, out_channels: int, groups: int) -> GroupConvError:
    """The one message for a ``groups`` that does not divide both channel counts: why, and what is near.

    Example:
        >>> print(groups_error(4, 8, 3))
        groups=3 is invalid: in_channels=4 and out_channels=8 are not divisible by 3; nearest valid: 2 or 4 \
(valid groups: 1, 2, 4; the largest is gcd(4, 8) = 4)
    """
    valid = valid_groups(in_channels, out_channels)
    names = [f"{n}={c}" for n, c in (("in_channels", in_channels), ("out_channels", out_channels)) if c % groups]
    verb = "is" if len(names) == 1 else "are"
    shown = valid if len(valid) <= _LISTED_GROUPS else [*valid[:_LISTED_GROUPS], "..."]
    return GroupConvError(
        f"groups={groups} is invalid: {' and '.join(names)} {verb} not divisible by {groups}; nearest valid: "
        f"{_nearest(valid, groups)} (valid groups: {', '.join(map(str, shown))}; "
        f"the largest is gcd({in_channels}, {out_channels}) = {valid[-1]})"
    )


def _nearest(valid: list[int], groups: int) -> str:
    """The valid counts either side of ``groups``: "2 or 4"."""
    below, above = [g for g in valid if g < groups][-1:], [g for g in valid if g > groups][:1]
    return " or ".join(map(str, below + above))


def _factorise(n: int) -> dict[int, int]:
    """``n``'s prime factors and their powers: small primes by division, the rest by Pollard's rho,
    so any 64-bit ``n`` takes milliseconds where listing divisors up to ``n`` would never end."""
    factors: dict[int, int] = {}
    for prime in _SMALL_PRIMES:
        while n % prime == 0:
            factors[prime] = factors.get(prime, 0) + 1
            n //= prime
    pending = [n] if n > 1 else []
    while pending:
        m = pending.pop()
        if _is_prime(m):
            factors[m] = factors.get(m, 0) + 1
        else:
            d = _pollard_rho(m)
            pending += [d, m // d]
    return dict(sorted(factors.items()))


_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
_LISTED_GROUPS = 24  # a gcd with more divisors lists its first ones and "..."


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the first 12 primes as witnesses: exact below 3.3e24, so for every int64."""
    if n < 2:
        return False
    if n in _SMALL_PRIMES:
        return True
    odd, twos = n - 1, 0
    while odd % 2 == 0:
        odd, twos = odd // 2, twos + 1
    for witness in _SMALL_PRIMES:
        x = pow(witness, odd, n)
        if x in (1, n - 1):
            continue
        for _ in range(twos - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _pollard_rho(n: int) -> int:
    """A non-trivial factor of the odd composite ``n`` (Floyd's cycle on x -> x^2 + c mod n)."""
    for c in range(1, n):
        x = y = 2
        d = 1
        while d == 1:
            x = (x * x + c) % n
            y = (y * y + c) % n
            y = (y * y + c) % n
            d = math.gcd(abs(x - y), n)
        if d != n:
            return d
    raise ArithmeticError(f"no factor found for {n}")  # unreachable for composite n


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or a TypeError / GroupConvError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        value = _index(name, value)
    if value < minimum:
        raise GroupConvError(f"{name}={value} is invalid: {name} must be an int >= {minimum}")
    if value > _INT64_MAX:  # torch's kernels take int64
        raise GroupConvError(f"{name}={value} is too large: {name} must be at most 2**63 - 1")
    return int(value)


def _index(name: str, value: object) -> int:
    """A one-element integer tensor as the int PyTorch's argument parser takes it for; else a TypeError."""
    if not isinstance(value, bool) and hasattr(type(value), "__index__"):
        with contextlib.suppress(TypeError):
            return operator.index(value)
    raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")


def check_shape(name: str, value: object, minimum: int) -> tuple[int, ...]:
    """A shape given as a sequence of ints, as ints, or a TypeError / GroupConvError naming ``name``."""
    if hasattr(value, "shape") and len(value.shape) != 1:  # a tensor or array of data, not of sizes: its shape
        raise TypeError(
            f"{name} must be a shape such as (1, 4, 32, 32), got an array of shape "
            f"{tuple(value.shape)}; pass its .shape"
        )
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of ints such as (1, 4, 32, 32), got {value!r}")
    return tuple(check_int(f"{name}[{i}]", size, minimum) for i, size in enumerate(value))


def _ints(name: str, value: object, dims: int, minimum: int, expand_one: bool = True) -> tuple[int, ...]:
    """An int or a sequence of ``dims`` ints, as a ``dims``-tuple (PyTorch's _pair/_triple); a sequence of one
    int stands for it where ``expand_one``, as ATen expands a stride (torch.nn never expands a kernel size)."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        if len(value) == 1 and expand_one:
            return (check_int(name, value[0], minimum),) * dims
        if len(value) != dims:
            raise GroupConvError(
                f"{name}={tuple(value)!r} has {len(value)} entries; a {dims}-D convolution needs one int or {dims} ints"
            )
        return tuple(check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    return (check_int(name, value, minimum),) * dims


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A validated convolution layer: every argument of ``torch.nn.Conv{1,2,3}d`` and
    ``ConvTranspose{1,2,3}d``, checked on construction and normalised to tuples.

    Args:
        in_channels, out_channels: channel counts; both divisible by ``groups``.
        kernel_size, stride, dilation: an int or one int per spatial dim.
        padding: an int, one int per dim, ``"same"`` (stride 1 only) or ``"valid"``.
        groups: channel groups; see :func:`valid_groups`.
        bias: whether the layer adds a bias per output channel.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``
            (transposed: ``"zeros"`` only).
        transposed: a transposed convolution (the adjoint of a convolution).
        output_padding: transposed only; extra size on one side of the output.
        dims: the number of spatial dims, 1, 2 or 3.

    Example:
        >>> spec = ConvSpec(4, 8, 3, groups=2, bias=False)
        >>> spec.weight_shape, spec.num_params
        ((8, 2, 3, 3), 144)
        >>> spec.output_shape((1, 4, 32, 32))
        (1, 8, 30, 30)
    """

    in_channels: int
    out_channels: int
    kernel_size: IntOrInts
    stride: IntOrInts = 1
    padding: IntOrInts | str = 0
    dilation: IntOrInts = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    transposed: bool = False
    output_padding: IntOrInts = 0
    dims: int = 2

    def __post_init__(self) -> None:
        normalised = _normalise(self)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_weight(cls, weight_shape: Shape, *, groups: int, transposed: bool = False, **layer) -> ConvSpec:
        """The spec of a functional call, whose channels and kernel come from the weight.

        ``weight_shape`` is (O, Cg, *K), or (C, Og, *K) when ``transposed``.
        """
        groups = check_int("groups", groups, minimum=1)
        dims = layer.pop("dims")
        layout = "in_channels, out_channels/groups" if transposed else "out_channels, in_channels/groups"
        if len(weight_shape) != dims + 2:
            raise GroupConvError(
                f"weight of size {list(weight_shape)} has {len(weight_shape)} dimensions; a {dims}-D "
                f"{'transposed ' if transposed else ''}convolution expects "
                f"({layout}, {', '.join('k' + s for s in SPATIAL_NAMES[dims])})"
            )
        first, per_group, *kernel = weight_shape
        if first % groups:  # torch's first check; ConvSpec's would name per_group * groups, a count never given
            raise GroupConvError(
                f"Given groups={groups}, weight of size {list(weight_shape)} is not divisible by {groups} at "
                f"dimension 0 ({'in' if transposed else 'out'}_channels={first}); use a group count that divides "
                f"{first} (nearest: {_nearest(valid_groups(first, first), groups)})"
            )
        channels = (first, per_group * groups) if transposed else (per_group * groups, first)
        try:
            return cls(*channels, tuple(kernel), groups=groups, transposed=transposed, dims=dims, **layer)
        except GroupConvError as error:
            raise GroupConvError(f"Given weight of size {list(weight_shape)}: {error}") from None

    @property
    def in_per_group(self) -> int:
        """Cg: the input channels each filter reads."""
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        """Og: the output channels each group writes."""
        return self.out_channels // self.groups

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """(O, Cg, *K) for a convolution, (C, Og, *K) for a transposed one."""
        if self.transposed:
            return (self.in_channels, self.out_per_group, *self.kernel_size)
        return (self.out_channels, self.in_per_group, *self.kernel_size)

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.out_channels,) if self.bias else None

    @property
    def num_params(self) -> int:
        """Weights plus biases: O * Cg * prod(K) (+ O)."""
        return math.prod(self.weight_shape) + (self.out_channels if self.bias else 0)

    @property
    def reach(self) -> tuple[int, ...]:
        """How many input positions a window spans per spatial dim: dilation * (kernel_size - 1) + 1."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size))

    @property  # not functools.cached_property: its lock (Python 3.11) makes torch.compile break the graph
    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """(before, after) zero padding per spatial dim; ``"same"`` puts an odd extra after,
        as PyTorch does."""
        if self.padding == "valid":
            return ((0, 0),) * self.dims
        if self.padding == "same":
            return tuple((total // 2, total - total // 2) for total in (reach - 1 for reach in self.reach))
        return tuple((p, p) for p in self.padding)

    def output_size(self, input_size: Shape) -> tuple[int, ...]:
        """The spatial output size for spatial input size S (not validated)."""
        if self.transposed:
            return tuple(
                (s - 1) * st - 2 * p + r + op
                for s, st, p, r, op in zip(input_size, self.stride, self.padding, self.reach, self.output_padding)
            )
        return self.conv_output_size(input_size)

    def conv_output_size(self, input_size: Shape) -> tuple[int, ...]:
        """The output size of the convolution itself on spatial input size S, for a transposed
        spec too (the convolution whose input gradient it is), zero padding as ``padding_pairs``."""
        return tuple(
            (s + lo + hi - r) // st + 1
            for s, (lo, hi), r, st in zip(input_size, self.padding_pairs, self.reach, self.stride)
        )

    def output_shape(self, input_shape: Shape) -> tuple[int, ...]:
        """The output shape for input (N, C, *S) or unbatched (C, *S); validates the input.

        Raises:
            GroupConvError: wrong number of dims, wrong channels, or an empty output.
        """
        shape = self._checked_input(input_shape)
        return (*shape[: -self.dims - 1], self.out_channels, *self._checked_output_size(shape))

    def macs(self, input_shape: Shape) -> int:
        """Multiply-accumulates of one forward pass: N * O * prod(L) * Cg * prod(K) for a
        convolution, N * C * prod(S) * Og * prod(K) for a transposed one (each input
        element meets each of its group's filters once), as ``torch.utils.flop_counter``."""
        shape = self._checked_input(input_shape)
        output_size = self._checked_output_size(shape)
        n = math.prod(shape[: -self.dims - 1])
        kernel = math.prod(self.kernel_size)
        if self.transposed:
            return n * self.in_channels * math.prod(shape[-self.dims :]) * self.out_per_group * kernel
        return n * self.out_channels * math.prod(output_size) * self.in_per_group * kernel

    def flops(self, input_shape: Shape) -> int:
        """Floating-point operations of one forward pass: 2 * macs (a multiply and an add
        each), plus one add per output element when the layer has a bias."""
        bias_adds = math.prod(self.output_shape(input_shape)) if self.bias else 0
        return 2 * self.macs(input_shape) + bias_adds

    def _checked_input(self, input_shape: Shape) -> tuple[int, ...]:
        """An input shape, (N, C, *S) or unbatched (C, *S), as Python ints (NumPy's would overflow the
        counts), its rank and channels checked."""
        shape = check_shape("input_shape", input_shape, minimum=0)
        spatial = ", ".join(SPATIAL_NAMES[self.dims])
        if len(shape) not in (self.dims + 1, self.dims + 2):
            raise GroupConvError(
                f"input of size {list(shape)} has {len(shape)} dimensions; a {self.dims}-D convolution "
                f"expects {self.dims + 2} (N, C, {spatial}) or {self.dims + 1} unbatched (C, {spatial})"
            )
        channels = shape[-self.dims - 1]
        if channels != self.in_channels:
            raise GroupConvError(
                f"Given groups={self.groups}, weight of size {list(self.weight_shape)}, expected "
                f"input{list(shape)} to have {self.in_channels} channels, but got {channels} channels instead"
            )
        return shape

    def _checked_output_size(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_size = input_shape[-self.dims :]
        for dim, (size, (lo, hi)) in enumerate(zip(input_size, self.padding_pairs)):
            if size < 1:
                raise GroupConvError(f"input of size {list(input_shape)} is empty in spatial dim {dim}")
            if self.padding_mode == "reflect" and max(lo, hi) >= size:
                raise GroupConvError(
                    f"padding_mode='reflect' needs padding < input size, but spatial dim {dim} has "
                    f"size {size} and padding {max(lo, hi)}; use padding_mode='replicate' or less padding"
                )
            if self.padding_mode == "circular" and max(lo, hi) > size:
                raise GroupConvError(
                    f"padding_mode='circular' needs padding <= input size, but spatial dim {dim} has "
                    f"size {size} and padding {max(lo, hi)}; use less padding"
                )
        output_size = self.output_size(input_size)
        for dim, (size, out) in enumerate(zip(input_size, output_size)):
            if out < 1:
                hint = "less padding or a larger kernel" if self.transposed else "more padding or a smaller kernel"
                raise GroupConvError(
                    f"input of size {list(input_shape)} gives an output of size {out} in spatial dim {dim} "
                    f"(input {size}, padding {self.padding_pairs[dim]}, kernel reach {self.reach[dim]} = "
                    f"dilation*(kernel_size-1)+1, stride {self.stride[dim]}); "
                    f"use a larger input, {hint}"
                )
        return output_size


def _normalise(spec: ConvSpec) -> dict:
    """Every field of ``spec`` checked and in canonical form, or an error naming the field."""
    dims = check_int("dims", spec.dims, minimum=1)
    if dims > 3:
        raise GroupConvError(f"dims={dims} is invalid: groupconv supports 1-, 2- and 3-D convolution")
    in_channels = check_int("in_channels", spec.in_channels, minimum=1)
    out_channels = check_int("out_channels", spec.out_channels, minimum=1)
    groups = check_int("groups", spec.groups, minimum=1)
    if in_channels % groups or out_channels % groups:
        raise groups_error(in_channels, out_channels, groups)
    kernel_size = _ints("kernel_size", spec.kernel_size, dims, minimum=1, expand_one=False)
    stride = _ints("stride", spec.stride, dims, minimum=1)
    dilation = _ints("dilation", spec.dilation, dims, minimum=1)
    padding = _padding(spec.padding, dims, stride, spec.transposed)
    output_padding = _ints("output_padding", spec.output_padding, dims, minimum=0)
    if not isinstance(spec.transposed, bool):
        raise TypeError(f"transposed must be a bool, got {spec.transposed!r}")
    if not isinstance(spec.bias, bool):
        raise TypeError(f"bias must be a bool, got {spec.bias!r}")
    if spec.padding_mode not in PADDING_MODES:
        raise GroupConvError(
            f"padding_mode={spec.padding_mode!r} is not supported; use one of {', '.join(map(repr, PADDING_MODES))}"
        )
    if spec.transposed and spec.padding_mode != "zeros":
        raise GroupConvError(
            f"padding_mode={spec.padding_mode!r} is not supported for a transposed convolution; use 'zeros'"
        )
    if not spec.transposed and any(output_padding):
        raise GroupConvError(f"output_padding={output_padding} is only for transposed convolution; leave it 0")
    for dim, (op, st, d) in enumerate(zip(output_padding, stride, dilation)):
        if op >= st and op >= d:
            raise GroupConvError(
                f"output_padding={output_padding} must be smaller than either stride={stride} or "
                f"dilation={dilation} in every dim, but dim {dim} has {op}; use output_padding < {max(st, d)}"
            )
    return dict(
        dims=dims,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        kernel_size=kernel_size,
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
    )


def _padding(padding: object, dims: int, stride: tuple[int, ...], transposed: bool) -> tuple[int, ...] | str:
    if not isinstance(padding, str):
        return _ints("padding", padding, dims, minimum=0)
    if padding not in PADDING_STRINGS:
        raise GroupConvError(f"padding={padding!r} is not supported; use an int, {dims} ints, 'same' or 'valid'")
    if transposed:
        raise GroupConvError(
            f"padding={padding!r} is not supported for a transposed convolution; give padding as int(s)"
        )
    if padding == "same" and any(s != 1 for s in stride):
        raise GroupConvError(
            f"padding='same' is not supported for strided convolutions (stride={stride}); "
            f"use stride=1 or an explicit padding such as padding=kernel_size//2"
        )
    return padding
