"""groupconv against PyTorch on 2,000 seeded random layers: outputs and every gradient."""

import pytest
import torch
from cases import assert_close, random_case, torch_reference

import groupconv

ORACLE_CASES = 2000


def groupconv_result(case, x, weight, bias):
    if case.frontend == "nn":
        module = getattr(groupconv.nn, case.module_name)(
            case.in_channels, case.out_channels, case.kernel_size, **case.layer_kwargs(), dtype=case.dtype
        )
        parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return torch.func.functional_call(module, parameters, (x,))
    return getattr(groupconv.functional, case.function_name)(x, weight, bias, **case.functional_kwargs())


@pytest.mark.parametrize("seed", range(ORACLE_CASES))
def test_matches_pytorch(seed):
    case = random_case(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    weight_shape = groupconv.ConvSpec(
        case.in_channels,
        case.out_channels,
        case.kernel_size,
        groups=case.groups,
        transposed=case.transposed,
        dims=case.dims,
    ).weight_shape
    x = case.make_input()
    weight = torch.randn(weight_shape, generator=generator, dtype=case.dtype, requires_grad=True)
    bias = (
        torch.randn(case.out_channels, generator=generator, dtype=case.dtype, requires_grad=True) if case.bias else None
    )
    operands = [t for t in (x, weight, bias) if t is not None]

    expected = torch_reference(case, x, weight, bias)
    actual = groupconv_result(case, x, weight, bias)
    assert_close(actual, expected, case.dtype, f"output of {case}")

    grad_output = torch.randn(expected.shape, generator=generator, dtype=case.dtype)
    expected_grads = torch.autograd.grad(expected, operands, grad_output)
    actual_grads = torch.autograd.grad(actual, operands, grad_output)
    for name, got, want in zip(("input", "weight", "bias"), actual_grads, expected_grads):
        assert_close(got, want, case.dtype, f"{name} gradient of {case}")


def test_cases_cover_the_space():
    """The random layers reach every corner the acceptance names, so a green run means something."""
    cases = [random_case(seed) for seed in range(ORACLE_CASES)]
    seen = lambda attribute: {getattr(c, attribute) for c in cases}
    assert seen("dims") == {1, 2, 3}
    assert seen("transposed") == {False, True}
    assert seen("padding_mode") == {"zeros", "reflect", "replicate", "circular"}
    assert seen("layout") == {"contiguous", "channels_last", "sliced"}
    assert seen("dtype") == {torch.float32, torch.float64}
    assert seen("bias") == {False, True}
    assert seen("frontend") == {"functional", "nn"}
    assert {0, 1, 2, 3, 4} <= seen("batch")
    assert {"same", "valid"} <= {c.padding for c in cases if isinstance(c.padding, str)}
    assert {1, 2, 3} <= {s for c in cases for s in c.stride} and {1, 2, 3} <= {d for c in cases for d in c.dilation}
    assert any(c.groups > 1 and c.in_channels == c.groups for c in cases)  # depthwise
    assert any(op > 0 for c in cases for op in c.output_padding)
    for dims in (1, 2, 3):  # each of the six functions, with groups
        for transposed in (False, True):
            assert any(c.dims == dims and c.transposed == transposed and c.groups > 1 for c in cases)
