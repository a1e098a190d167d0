"""Every formulation against PyTorch on the oracle's random layers it supports; the dispatcher's choices."""

import contextlib
import functools
import itertools

import pytest
import torch
from cases import assert_results_close, case_spec, forward_and_backward, groupconv_result, random_case, torch_reference

import groupconv
from groupconv import ConvSpec, dispatch, formulations, tuning

CASES_PER_FORMULATION = 150
FAST_CASES = 6  # per formulation in the default tier; the full suite runs all
ORACLE_CASES = 2000


@functools.cache
def case(seed: int):
    return random_case(seed)


@functools.cache
def supported_seeds(name: str) -> list[int]:
    """The first oracle layers ``name`` supports, drawn when a test first asks, not at import."""
    module = formulations.load(name)
    supported = (
        seed for seed in range(ORACLE_CASES) if module.supports(case_spec(case(seed)), case(seed).make_input())
    )
    return list(itertools.islice(supported, CASES_PER_FORMULATION))


@pytest.mark.parametrize(
    ("name", "index"),
    [
        (name, i) if i < FAST_CASES else pytest.param(name, i, marks=pytest.mark.slow)
        for name in formulations.NAMES
        for i in range(CASES_PER_FORMULATION)
    ],
)
def test_formulation_matches_pytorch(name, index):
    oracle_case = case(supported_seeds(name)[index])
    operands = oracle_case.make_operands()
    expected = forward_and_backward(torch_reference, oracle_case, *operands)
    with dispatch.use(name):
        actual = forward_and_backward(groupconv_result, oracle_case, *operands)
    assert_results_close(actual, expected, oracle_case, f"PyTorch ({name} forced)")


@pytest.mark.parametrize("name", formulations.NAMES)
def test_each_formulation_is_tested_widely(name):
    """A formulation that claims little would pass the test above vacuously."""
    cases = [case(seed) for seed in supported_seeds(name)]
    assert len(cases) == CASES_PER_FORMULATION
    assert {c.transposed for c in cases} == {False, True}
    assert {c.dtype for c in cases} == {torch.float32, torch.float64}
    assert any(c.groups > 1 for c in cases)


def test_default_supports_every_oracle_case():
    """The dispatcher's heuristic never picks a formulation for a call it does not support."""
    for seed in range(ORACLE_CASES):
        spec, x = case_spec(case(seed)), case(seed).make_input()
        assert dispatch.default(spec, x).supports(spec, x), case(seed)


def test_forcing_an_unsupporting_formulation_fails_loudly():
    spec = ConvSpec(4, 4, 2, padding="same", groups=2)  # asymmetric padding: native kernels can't
    with dispatch.use("native"), pytest.raises(groupconv.GroupConvError, match="does not support"):
        groupconv.functional.conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 2, 2), padding="same", groups=2)
    assert not formulations.load("native").supports(spec, torch.randn(1, 4, 5, 5))


def test_unknown_formulation_names_the_choices():
    with pytest.raises(groupconv.GroupConvError, match="im2col"), dispatch.use("fast"):
        pass


def test_cached_choice_that_cannot_run_the_call_falls_back(tmp_path, monkeypatch):
    """A cache entry naming a formulation that can't run this call is not obeyed."""
    monkeypatch.setenv("GROUPCONV_CACHE", str(tmp_path / "tune.json"))
    x, weight = torch.randn(1, 4, 5, 5), torch.randn(4, 2, 2, 2)
    spec = ConvSpec(4, 4, 2, padding="same", groups=2)
    tuning.cache().put(dispatch.call_key("forward", x, weight, spec), "native")
    assert dispatch.choose("forward", x, weight, spec) is dispatch.default(spec, x)
    assert dispatch.default(spec, x) is not formulations.load("native")
    expected = torch.nn.functional.conv2d(x, weight, padding="same", groups=2)
    torch.testing.assert_close(groupconv.functional.conv2d(x, weight, padding="same", groups=2), expected)


@pytest.mark.parametrize(
    ("groups", "layout", "size", "stride", "expected"),
    [(128, "contiguous", 28, 1, "direct"), (64, "contiguous", 28, 1, "direct"), (256, "contiguous", 28, 1, "direct"),
     (128, "contiguous", 28, 2, "direct"), (64, "contiguous", 28, 2, "native"), (256, "contiguous", 28, 2, "native"),
     (256, "contiguous", 36, 2, "native"),
     (256, "contiguous", 14, 1, "native"), (128, "contiguous", 6, 1, "native"), (32, "contiguous", 28, 1, "native"),
     (128, "channels_last", 28, 1, "direct"), (64, "channels_last", 28, 1, "direct"),
     (64, "channels_last", 28, 2, "native"), (32, "channels_last", 28, 1, "native"),
     (256, "channels_last", 28, 1, "native")],
)  # fmt: skip
def test_default_heuristic(groups, layout, size, stride, expected):
    """Untuned, on CPU input of 200,000 elements or more: 2 channels per group at any stride, and at unit
    stride 1 to 4 on channels-first input (depthwise on output rows of 16 pixels or more) and 4 on
    channels-last, go to groupconv's kernels, the rest to oneDNN."""
    x = torch.randn(8, 256, size, size)  # 6 x 6: 73,728 elements
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    spec = ConvSpec(256, 256, 3, stride=stride, groups=groups)
    assert dispatch.default(spec, x) is formulations.load(expected)


@pytest.mark.parametrize(("width", "expected"), [(16, "direct"), (15, "native")])
def test_default_strided_depthwise_input_gradient(width, expected):
    """A strided depthwise layer's input gradient (PyTorch's runs several times slower) goes to groupconv's
    kernels where grad_output's rows, the output rows, have 16 pixels or more; its forward stays oneDNN's."""
    spec = ConvSpec(256, 256, 3, stride=2, padding=1, groups=256)
    grad_y = torch.randn(8, 256, 64, width)
    assert dispatch.default(spec, grad_y, "input_grad") is formulations.load(expected)
    assert dispatch.default(spec, torch.randn(8, 256, 128, 2 * width)) is formulations.load("native")


@pytest.mark.parametrize(
    ("groups", "layout", "stride", "expected"),
    [(128, "contiguous", 1, "direct"), (64, "contiguous", 1, "direct"), (128, "contiguous", 2, "direct"),
     (128, "channels_last", 1, "direct"), (256, "contiguous", 1, "native"), (64, "channels_last", 1, "native"),
     (256, "channels_last", 1, "native")],
)  # fmt: skip
def test_default_heuristic_for_bfloat16(groups, layout, stride, expected):
    """bfloat16 pays a float32 copy of each operand on groupconv's kernels, against oneDNN's own bfloat16:
    2 per group at any stride and 3-4 on channels-first input go to the kernels, depthwise does not."""
    x = torch.randn(8, 256, 28, 28, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    spec = ConvSpec(256, 256, 3, stride=stride, groups=groups)
    assert dispatch.default(spec, x) is formulations.load(expected)


@pytest.mark.parametrize(
    ("groups", "stride", "layout", "expected"),
    [(4, 1, "contiguous", "pointwise"), (1, 1, "contiguous", "native"), (4, 2, "contiguous", "native"),
     (4, 1, "channels_last", "native")],
)  # fmt: skip
def test_default_heuristic_for_grouped_1x1(groups, stride, layout, expected):
    """Untuned, a large grouped 1x1 layer on channels-first input runs as batched matrix products."""
    x = torch.randn(1, 272, 28, 28)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    assert dispatch.default(ConvSpec(272, 272, 1, stride=stride, groups=groups), x) is formulations.load(expected)


@pytest.mark.parametrize(
    ("layout", "groups", "forced", "pytorch_runs_it"),
    [("contiguous", 32, None, True), ("channels_last", 256, None, True), ("contiguous", 128, None, False),
     ("channels_last", 128, None, False), ("contiguous", 256, None, False), ("contiguous", 32, "native", False)],
)  # fmt: skip
def test_a_layer_pytorch_wins_throughout_is_pytorch_convolution(layout, groups, forced, pytorch_runs_it):
    """Untuned, 8 channels per group, and depthwise on channels-last input, are oneDNN's in every direction,
    so PyTorch's own convolution and autograd run them; narrow groups (groupconv's kernels) and forced
    formulations run groupconv's ops. Either way the results are PyTorch's, in the input's layout."""
    x = torch.randn(1, 256, 28, 28, dtype=torch.float64)  # large enough for groupconv's kernels (see default)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    layer = groupconv.nn.Conv2d(256, 256, 3, groups=groups, padding=1).double()
    with dispatch.use(forced) if forced else contextlib.nullcontext():
        y = layer(x.requires_grad_())
    assert (y.grad_fn.name() == "ConvolutionBackward0") == pytorch_runs_it
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    expected = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1, groups=groups)
    torch.testing.assert_close(y, expected)
    grads = torch.autograd.grad(y, (x, layer.weight, layer.bias), torch.ones_like(y))
    torch.testing.assert_close(grads, torch.autograd.grad(expected, (x, layer.weight, layer.bias), torch.ones_like(y)))
