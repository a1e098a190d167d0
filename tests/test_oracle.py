"""groupconv against PyTorch on 2,000 seeded random layers: outputs and every gradient.

Each layer runs twice over: as groupconv routes it (most small layers go to PyTorch's own
convolution whole), and forced onto groupconv's own operators, so the count also tests
groupconv's compute. The default tier runs the first 15 layers; the full suite all of them.
"""

import contextlib
import dataclasses

import pytest
import torch
from cases import (
    assert_results_close,
    case_spec,
    forward_and_backward,
    groupconv_result,
    per_dim,
    random_case,
    torch_reference,
)

from groupconv import dispatch, formulations

ORACLE_CASES = 2000
FAST_CASES = 15
# groupconv's own compute, in the order tried: its kernels, its 1x1 products, then the reference that runs any layer
OWN_FORMULATIONS = ["direct", "pointwise", formulations.REFERENCE]
SEEDS = [seed if seed < FAST_CASES else pytest.param(seed, marks=pytest.mark.slow) for seed in range(ORACLE_CASES)]


@pytest.mark.parametrize("seed", SEEDS)
def test_groupconv_route_matches_pytorch(seed):
    case = random_case(seed)
    operands = case.make_operands()
    expected = forward_and_backward(torch_reference, case, *operands)
    for call in ("first", "repeated"):  # a repeated call takes the route groupconv.functional.apply remembered
        actual = forward_and_backward(groupconv_result, case, *operands)
        assert_results_close(actual, expected, case, f"PyTorch ({call} call)")


@pytest.mark.parametrize("seed", SEEDS)
def test_own_operators_match_pytorch(seed):
    case = random_case(seed)
    operands = case.make_operands()
    spec, x = case_spec(case), operands[0]
    own = next(name for name in OWN_FORMULATIONS if formulations.load(name).supports(spec, x))
    expected = forward_and_backward(torch_reference, case, *operands)
    with dispatch.use(own):
        actual = forward_and_backward(groupconv_result, case, *operands)
    assert_results_close(actual, expected, case, f"PyTorch ({own} forced)")


BFLOAT16_CASES = 300
BFLOAT16_SEEDS = [s if s < FAST_CASES else pytest.param(s, marks=pytest.mark.slow) for s in range(BFLOAT16_CASES)]


@pytest.mark.parametrize("seed", BFLOAT16_SEEDS)
def test_bfloat16_is_rounded_once_from_the_exact_result(seed):
    """bfloat16 on groupconv's compute (in float32) is within one ulp, at the largest magnitude, of the float64
    result of the same operands; as routed (small layers: PyTorch's own bfloat16 kernels, which round some
    partial sums of a transposed layer's weight gradient), within two."""
    case = dataclasses.replace(random_case(seed), dtype=torch.bfloat16)
    operands = case.make_operands()
    expected = _exact(case, operands)
    spec, x = case_spec(case), operands[0]
    own = next(name for name in OWN_FORMULATIONS if formulations.load(name).supports(spec, x))
    for forced, ulps in ((None, 2), (own, 1)):
        with dispatch.use(forced) if forced else contextlib.nullcontext():
            actual = forward_and_backward(groupconv_result, case, *operands)
        for name, want in expected.items():
            if want is not None:
                assert actual[name].dtype == torch.bfloat16, name
                scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
                what = f"{name} in bfloat16 ({forced or 'as routed'}) for {case}"
                atol = ulps * torch.finfo(torch.bfloat16).eps * scale
                torch.testing.assert_close(actual[name].double(), want, rtol=0, atol=atol, msg=what)


def _exact(case, operands) -> dict:
    """forward_and_backward's results in float64 from the same (bfloat16) operands and output gradient."""
    widened = [None if t is None else t.detach().double().requires_grad_() for t in operands]
    output = torch_reference(dataclasses.replace(case, dtype=torch.float64), *widened)
    leaves = [t for t in widened if t is not None]
    grads = torch.autograd.grad(output, leaves, case.make_grad_output(output.shape).double())
    bias = grads[2] if operands[2] is not None else None
    return dict(output=output.detach(), input=grads[0], weight=grads[1], bias=bias)


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
    assert seen("batch") == {None, 0, 1, 2, 3, 4}
    assert {"same", "valid"} <= {c.padding for c in cases if isinstance(c.padding, str)}
    for name in ("stride", "dilation"):
        assert {1, 2, 3} <= {s for c in cases for s in per_dim(getattr(c, name), c.dims)}, name
        assert any(isinstance(getattr(c, name), int) for c in cases if c.dims > 1), name  # one int for every dim
    assert any(c.groups > 1 and c.in_channels == c.groups for c in cases)  # depthwise
    assert any(op > 0 for c in cases for op in per_dim(c.output_padding, c.dims))
    assert any(c.transposed and c.dims > 1 and c.output_padding and isinstance(c.output_padding, int) for c in cases)
    for dims in (1, 2, 3):  # each of the six functions, with groups, and unbatched
        for transposed in (False, True):
            assert any(c.dims == dims and c.transposed == transposed and c.groups > 1 for c in cases)
            assert any(c.dims == dims and c.transposed == transposed and c.batch is None for c in cases)
    unbatched = [c for c in cases if c.batch is None]
    assert {"contiguous", "sliced"} == {c.layout for c in unbatched}
    assert {"zeros", "reflect", "replicate", "circular"} == {c.padding_mode for c in unbatched}
    assert {"functional", "nn"} == {c.frontend for c in unbatched}
