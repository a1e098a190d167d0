"""Seeded random convolution layers for oracle tests, each checked against PyTorch.

``random_case(seed)`` draws one valid layer and input: 1/2/3-D, convolution or
transposed, groups from 1 to depthwise, stride 1-5 and dilation 1-3 (one int or one per
dimension), every padding form and mode, output_padding, bias on or off, batch 0-4 or
an unbatched input, float32 or float64, and a contiguous, channels-last or sliced input.
``make_operands`` and ``make_grad_output`` draw its tensors from the same seed;
``forward_and_backward`` runs ``torch_reference`` or ``groupconv_result`` on them.
"""

from __future__ import annotations

import dataclasses
import random

import torch
import torch.nn.functional as F

import groupconv

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}


@dataclasses.dataclass
class Case:
    dims: int
    transposed: bool
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple
    stride: int | tuple  # an int means the same for every dimension: see per_dim
    padding: object
    dilation: int | tuple
    output_padding: int | tuple
    padding_mode: str
    bias: bool
    batch: int | None  # None: an unbatched input, (C, *input_size)
    input_size: tuple
    dtype: torch.dtype
    layout: str
    frontend: str  # "functional" or "nn"
    seed: int

    def layer_kwargs(self) -> dict:
        """Keyword arguments of torch.nn.Conv*/ConvTranspose* (and groupconv.nn's)."""
        kwargs = dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )
        if self.transposed:
            kwargs["output_padding"] = self.output_padding
        return kwargs

    def functional_kwargs(self) -> dict:
        """Keyword arguments of torch.nn.functional.conv*/conv_transpose* (and groupconv.functional's)."""
        kwargs = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        if self.transposed:
            kwargs["output_padding"] = self.output_padding
        return kwargs

    @property
    def function_name(self) -> str:
        return f"conv_transpose{self.dims}d" if self.transposed else f"conv{self.dims}d"

    @property
    def module_name(self) -> str:
        return f"ConvTranspose{self.dims}d" if self.transposed else f"Conv{self.dims}d"

    @property
    def input_shape(self) -> tuple:
        return (*(() if self.batch is None else (self.batch,)), self.in_channels, *self.input_size)

    @property
    def weight_shape(self) -> tuple:
        """(out_channels, in_channels/groups, *kernel_size), or (in_channels, out_channels/groups, ...) transposed."""
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def make_input(self) -> torch.Tensor:
        """The input in this case's memory layout, a leaf that requires grad."""
        generator = torch.Generator().manual_seed(self.seed)
        shape = self.input_shape
        if self.layout == "sliced":  # every other element of a larger tensor: not contiguous
            spatial = [2 * s for s in self.input_size]
            big = torch.randn(*shape[: -self.dims], *spatial, generator=generator, dtype=self.dtype)
            x = big[(..., *(slice(None, None, 2),) * self.dims)]
        else:
            x = torch.randn(shape, generator=generator, dtype=self.dtype)
            if self.layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last if self.dims == 2 else torch.channels_last_3d)
        return x.detach().requires_grad_()

    def make_operands(self) -> tuple:
        """(input, weight, bias or None): leaves that require grad."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        weight = torch.randn(self.weight_shape, generator=generator, dtype=self.dtype, requires_grad=True)
        bias = (
            torch.randn(self.out_channels, generator=generator, dtype=self.dtype, requires_grad=True)
            if self.bias
            else None
        )
        return self.make_input(), weight, bias

    def make_grad_output(self, shape) -> torch.Tensor:
        """The gradient flowing back into an output of ``shape``."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(self.seed + 2), dtype=self.dtype)


def per_dim(value, dims: int) -> tuple:
    """A stride, dilation or output_padding as one value per dimension."""
    return (value,) * dims if isinstance(value, int) else tuple(value)


def _int_or_tuple(rng: random.Random, low: int, high: int, dims: int):
    """One int for every dimension, or one per dimension, as a caller may write either."""
    return rng.randint(low, high) if rng.random() < 0.3 else tuple(rng.randint(low, high) for _ in range(dims))


def random_case(seed: int) -> Case:
    rng = random.Random(seed)
    dims = rng.choice([1, 2, 2, 3])
    transposed = rng.random() < 0.35
    if rng.random() < 0.2:  # depthwise: one input channel per group
        groups, in_per_group, out_per_group = rng.choice([2, 3, 4, 6]), 1, rng.choice([1, 2])
    else:
        groups, in_per_group, out_per_group = rng.choice([1, 1, 2, 3, 4]), rng.choice([1, 2, 3]), rng.choice([1, 2, 3])
    max_kernel = {1: 5, 2: 3, 3: 2}[dims]
    kernel_size = tuple(rng.randint(1, max_kernel) for _ in range(dims))
    stride = _int_or_tuple(rng, 1, 5, dims)
    dilation = _int_or_tuple(rng, 1, 3, dims)
    reach = [d * (k - 1) + 1 for d, k in zip(per_dim(dilation, dims), kernel_size)]
    padding_form = rng.choice(["int", "tuple", "tuple"] if transposed else ["int", "tuple", "same", "valid"])
    if padding_form == "same":
        stride = 1 if isinstance(stride, int) else (1,) * dims
    pad_values = tuple(rng.randint(0, 2) for _ in range(dims))
    padding = {"int": pad_values[0], "tuple": pad_values, "same": "same", "valid": "valid"}[padding_form]
    per_dim_padding = (
        (0,) * dims if padding_form == "valid" else pad_values if padding_form == "tuple" else (pad_values[0],) * dims
    )
    if padding_form == "same":
        per_dim_padding = tuple(r - 1 - (r - 1) // 2 for r in reach)  # the larger side of 'same'
    output_padding = (0,) * dims
    if transposed and rng.random() < 0.5:
        output_padding = tuple(rng.randrange(max(s, d)) for s, d in zip(per_dim(stride, dims), per_dim(dilation, dims)))
    padding_mode = "zeros"
    if not transposed and rng.random() < 0.3:
        padding_mode = rng.choice(["reflect", "replicate", "circular"])
    input_size = tuple(
        _input_size(rng, dims, transposed, r, s, p, op, padding_mode)
        for r, s, p, op in zip(reach, per_dim(stride, dims), per_dim_padding, output_padding)
    )
    if len(set(output_padding)) == 1 and rng.random() < 0.3:
        output_padding = output_padding[0]
    dtype = rng.choice([torch.float32, torch.float64])
    batch = rng.choice([None, 0]) if rng.random() < 0.1 else rng.choice([1, 2, 3, 4])
    channels_last = dims > 1 and batch is not None  # torch's channels-last formats need the batch dimension
    layout = rng.choice(["contiguous", "sliced"] + (["channels_last"] if channels_last else []))
    return Case(
        dims=dims,
        transposed=transposed,
        in_channels=groups * in_per_group,
        out_channels=groups * out_per_group,
        groups=groups,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        padding_mode=padding_mode,
        bias=rng.random() < 0.5,
        batch=batch,
        input_size=input_size,
        dtype=dtype,
        layout=layout,
        frontend="nn" if padding_mode != "zeros" or rng.random() < 0.25 else "functional",
        seed=seed,
    )


def _input_size(rng, dims, transposed, reach, stride, padding, output_padding, padding_mode) -> int:
    """A size whose output is at least 1, small enough that 3-D cases stay quick."""
    extra = rng.randint(0, {1: 6, 2: 4, 3: 2}[dims])
    if transposed:  # (S - 1) * stride - 2 * padding + reach + output_padding >= 1
        smallest = 1
        while (smallest - 1) * stride - 2 * padding + reach + output_padding < 1:
            smallest += 1
        return smallest + extra
    smallest = max(1, reach - 2 * padding)  # S + 2p >= reach
    if padding_mode == "reflect":
        smallest = max(smallest, padding + 1)
    if padding_mode == "circular":
        smallest = max(smallest, padding)
    return smallest + extra


def torch_reference(case: Case, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """PyTorch's own result: the module for padding modes, otherwise torch.nn.functional.

    PyTorch sees a contiguous copy: the layout under test is groupconv's, and torch 2.13's
    CPU conv2d segfaults on some channels-last inputs (1x1 kernel, bias, stride 3,
    padding 1, dilation (2, 3)).
    """
    x = x.contiguous()
    if case.padding_mode != "zeros":
        module = getattr(torch.nn, case.module_name)(
            case.in_channels, case.out_channels, case.kernel_size, **case.layer_kwargs(), dtype=case.dtype
        )
        parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return torch.func.functional_call(module, parameters, (x,))
    return getattr(F, case.function_name)(x, weight, bias, **case.functional_kwargs())


def groupconv_result(case: Case, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """groupconv's result through the case's frontend: groupconv.functional or groupconv.nn."""
    if case.frontend == "nn":
        module = getattr(groupconv.nn, case.module_name)(
            case.in_channels, case.out_channels, case.kernel_size, **case.layer_kwargs(), dtype=case.dtype
        )
        parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return torch.func.functional_call(module, parameters, (x,))
    return getattr(groupconv.functional, case.function_name)(x, weight, bias, **case.functional_kwargs())


def forward_and_backward(forward, case: Case, x: torch.Tensor, weight: torch.Tensor, bias) -> dict:
    """``forward``'s output and, by autograd from ``case.make_grad_output``, every operand's gradient."""
    output = forward(case, x, weight, bias)
    operands = [t for t in (x, weight, bias) if t is not None]
    grads = torch.autograd.grad(output, operands, case.make_grad_output(output.shape))
    return dict(output=output.detach(), input=grads[0], weight=grads[1], bias=grads[2] if bias is not None else None)


def assert_results_close(actual: dict, expected: dict, case: Case, oracle: str) -> None:
    """Each of forward_and_backward's results, or None where ``expected`` has None."""
    for name, want in expected.items():
        what = f"{name}{'' if name == 'output' else ' gradient'} differs from {oracle} for {case}"
        if want is None:
            assert actual[name] is None, what
        else:
            assert_close(actual[name], want, case.dtype, what)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Relative to the reference's largest magnitude, so long sums don't need a looser rtol."""
    tolerance = TOLERANCE[dtype]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale, msg=lambda m: f"{what}: {m}")


def case_spec(case: Case) -> groupconv.ConvSpec:
    """The spec formulations see for ``case``: padding modes other than zeros are applied before them."""
    spec = groupconv.ConvSpec(
        case.in_channels, case.out_channels, case.kernel_size, **case.layer_kwargs(),
        transposed=case.transposed, dims=case.dims,
    )  # fmt: skip
    return spec if spec.padding_mode == "zeros" else dataclasses.replace(spec, padding=0, padding_mode="zeros")


def spy_on_formulations(monkeypatch) -> list[str]:
    """The directions groupconv's formulations compute from here on, in order."""
    calls = []

    def spy(compute, direction: str):
        return lambda *args: calls.append(direction) or compute(*args)

    for name in groupconv.formulations.NAMES:
        module = groupconv.formulations.load(name)
        for direction in ("forward", "input_grad", "weight_grad"):
            monkeypatch.setattr(module, direction, spy(getattr(module, direction), direction))
    return calls
