"""groupconv.explain against independent oracles.

Oracles: torch.nn's conv modules (weight shapes, parameter counts, which groups they
accept), autograd (which input channels and weight rows each output channel depends
on), torch.utils.flop_counter (MACs = FLOPs / 2), tensor sizes in bytes, and the
numbers of *A Deeper Understanding of Grouped Convolution*. Nothing here compares explain with itself or with ConvSpec.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import groupconv
from groupconv import ConvSpec, GroupConvError
from groupconv.reports.explain import check_groups, describe, group_options

TORCH_CONV = {
    (False, 1): torch.nn.Conv1d,
    (False, 2): torch.nn.Conv2d,
    (False, 3): torch.nn.Conv3d,
    (True, 1): torch.nn.ConvTranspose1d,
    (True, 2): torch.nn.ConvTranspose2d,
    (True, 3): torch.nn.ConvTranspose3d,
}
# (spec arguments, input shape): dense, grouped, depthwise, transposed, 1-D and 3-D, strided and padded
LAYERS = [
    (dict(in_channels=4, out_channels=8, kernel_size=3, groups=2), (1, 4, 32, 32)),
    (dict(in_channels=3, out_channels=9, kernel_size=3, groups=3, bias=False), (2, 3, 11, 9)),
    (dict(in_channels=12, out_channels=12, kernel_size=3, groups=12, padding=1, stride=2), (1, 12, 9, 9)),
    (dict(in_channels=6, out_channels=4, kernel_size=(3, 2), groups=2, transposed=True, stride=2), (2, 6, 5, 4)),
    (dict(in_channels=8, out_channels=6, kernel_size=5, groups=2, dims=1, dilation=2, padding=3), (3, 8, 20)),
    (dict(in_channels=4, out_channels=6, kernel_size=2, groups=2, dims=3, transposed=True, output_padding=1,
          stride=2), (1, 4, 3, 4, 2)),
    (dict(in_channels=5, out_channels=7, kernel_size=1), (1, 5, 6, 6)),
]  # fmt: skip


def torch_layer(in_channels, out_channels, kernel_size, transposed=False, dims=2, **arguments) -> torch.nn.Module:
    """The PyTorch module with these ConvSpec-style arguments, built (and validated) by PyTorch."""
    cls = TORCH_CONV[transposed, dims]
    return cls(in_channels, out_channels, kernel_size, **arguments).double()


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("groups, params, weight_shape", [(1, 288, (8, 4, 3, 3)), (2, 144, (8, 2, 3, 3))])
def test_the_documents_4_to_8_example(groups, params, weight_shape):
    report = groupconv.explain(ConvSpec(4, 8, 3, groups=groups, bias=False))
    assert report.params == report.params_without_bias == params
    assert report.weight_shape == weight_shape
    assert report.valid_groups == (1, 2, 4) and report.max_groups == 4


def test_the_documents_3_to_9_example():
    report = groupconv.explain(ConvSpec(3, 9, 3, groups=3), (1, 3, 64, 64))
    assert report.valid_groups == (1, 3) and report.max_groups == 3
    assert report.weight_shape == (9, 1, 3, 3)
    assert [option.weight_shape for option in report.options] == [(9, 3, 3, 3), (9, 1, 3, 3)]


@pytest.mark.parametrize("arguments, input_shape", LAYERS)
def test_counts_and_shapes_match_pytorch(arguments, input_shape):
    spec = ConvSpec(**arguments)
    report = groupconv.explain(spec, input_shape, dtype="float64")
    layer = torch_layer(**arguments)
    x = torch.zeros(input_shape, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        y = layer(x)
    assert report.weight_shape == tuple(layer.weight.shape)
    assert report.params == num_params(layer)
    assert report.params_without_bias == layer.weight.numel()
    cost = report.cost
    assert cost.output_shape == tuple(y.shape)
    assert cost.macs * 2 == counter.get_total_flops()
    assert cost.flops == counter.get_total_flops() + (y.numel() if spec.bias else 0)  # the counter skips bias adds
    assert cost.input_bytes == x.numel() * x.element_size()
    assert cost.output_bytes == y.numel() * y.element_size()
    assert cost.weight_bytes == sum(p.numel() * p.element_size() for p in layer.parameters())
    assert cost.total_bytes == cost.input_bytes + cost.weight_bytes + cost.output_bytes
    assert cost.intensity == pytest.approx(cost.flops / cost.total_bytes)


@pytest.mark.parametrize("arguments, input_shape", LAYERS)
def test_group_slices_are_what_autograd_sees(arguments, input_shape):
    """Output channel o depends on exactly its group's input channels and weight rows."""
    spec = ConvSpec(**arguments)
    report = groupconv.explain(spec)
    layer = torch_layer(**arguments)
    x = torch.randn(input_shape, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert len(report.group_slices) == spec.groups
    for piece in report.group_slices:
        for o in range(*piece.output_channels):
            grad_x, grad_w = torch.autograd.grad(y[:, o].sum(), [x, layer.weight], retain_graph=True)
            inputs_read = grad_x.abs().sum(dim=[d for d in range(grad_x.dim()) if d != 1]).nonzero().flatten()
            weight_rows = grad_w.flatten(1).abs().sum(1).nonzero().flatten()
            assert inputs_read.tolist() == list(range(*piece.input_channels))
            assert set(weight_rows.tolist()) <= set(range(*piece.weight_rows))
        start, stop = piece.weight_rows
        assert piece.weight_shape == tuple(layer.weight[start:stop].shape)
    covered = [o for piece in report.group_slices for o in range(*piece.output_channels)]
    assert covered == list(range(spec.out_channels))


@pytest.mark.parametrize("arguments, input_shape", LAYERS)
def test_options_are_every_group_count_pytorch_accepts(arguments, input_shape):
    spec = ConvSpec(**arguments)
    report = groupconv.explain(spec, input_shape)
    accepted = []
    for groups in range(1, max(spec.in_channels, spec.out_channels) + 1):
        try:
            torch_layer(**{**arguments, "groups": groups})
        except ValueError:
            continue
        accepted.append(groups)
    assert [option.groups for option in report.options] == accepted == list(report.valid_groups)
    dense = torch_layer(**{**arguments, "groups": 1})
    for option in report.options:
        layer = torch_layer(**{**arguments, "groups": option.groups})
        with FlopCounterMode(display=False) as counter:
            layer(torch.zeros(input_shape, dtype=torch.float64))
        assert option.weight_shape == tuple(layer.weight.shape)
        assert option.params == num_params(layer)
        assert option.macs * 2 == counter.get_total_flops()
        assert option.params_saved == num_params(dense) - num_params(layer)
    assert report.options[0].macs_saved == 0
    assert report.options[-1].macs == report.options[0].macs // report.max_groups


def test_group_options_save_against_any_baseline():
    spec = ConvSpec(8, 8, 3, groups=2, bias=False)
    options = group_options(spec, [(1, 8, 5, 5)] * 2, against=2)  # two calls
    by_groups = {option.groups: option for option in options}
    assert by_groups[2].params_saved == 0 and by_groups[2].macs_saved == 0
    assert by_groups[8].params_saved == 8 * 4 * 9 - 8 * 1 * 9
    assert by_groups[8].macs == 2 * (8 * 9 * 1 * 9)  # N=1, O=8, 3x3 output, Cg=1, 3x3 kernel, twice
    assert by_groups[1].params_saved < 0  # fewer groups cost more


def test_without_an_input_shape_there_are_no_costs():
    report = groupconv.explain(ConvSpec(4, 8, 3, groups=2))
    assert report.cost is None
    assert all(option.macs is None and option.macs_saved is None for option in report.options)
    assert "give an input shape (--input N,C,H,W)" in str(report)
    assert "MACs" not in str(report).split("Valid groups")[1]


def test_the_report_names_each_fact():
    text = str(groupconv.explain(ConvSpec(4, 8, 3, groups=2), (1, 4, 32, 32)))
    assert text.splitlines()[0] == "Conv2d(4, 8, kernel_size=3, groups=2) on input (1, 4, 32, 32)"
    for line in [
        "      0  0-1          0-3            weight[0:4], [4, 2, 3, 3]",
        "      1  2-3          4-7            weight[4:8], [4, 2, 3, 3]",
        "parameters  152 = 144 weights + 8 bias (144 without bias)",
        "output      (1, 8, 30, 30)",
        "MACs        129,600",
        "FLOPs       266,400 = 2 x 129,600 MACs + 7,200 bias adds",
        "       1  4 -> 8     [8, 4, 3, 3]      288         296      -  259,200      -",
        "       2  2 -> 4     [8, 2, 3, 3]      144         152  48.6%  129,600    50%  this layer",
        "       4  1 -> 2     [8, 1, 3, 3]       72          80  73.0%   64,800    75%  depthwise",
    ]:
        assert line in text.splitlines()


def test_many_groups_are_listed_with_the_middle_elided():
    text = str(groupconv.explain(ConvSpec(512, 512, 3, groups=512, transposed=True, bias=False)))
    lines = text.splitlines()
    assert "    ...  ...          ...            ..." in lines
    assert "    511  511          511            weight[511:512], [1, 1, 3, 3]" in lines
    assert sum(line.startswith("      ") and "weight[" in line for line in lines) == 3
    assert "each of the 512 input channels has 1 3x3 kernel, one per output channel of its group" in text


def test_a_million_groups_are_explained_without_building_each():
    """The report shows four groups; 2**40 of them (below) could not all be built."""
    report = groupconv.explain(ConvSpec(10**6, 10**6, 1, groups=10**6))
    text = str(report)
    assert len(report.group_slices) == 10**6
    last = report.group_slices[-1]
    assert (last.group, last.input_channels, last.output_channels, last.weight_rows, last.weight_shape) == (
        999_999,
        (999_999, 10**6),
        (999_999, 10**6),
        (999_999, 10**6),
        (1, 1, 1, 1),
    )
    rows = [line.split(maxsplit=3) for line in text.splitlines()]
    assert ["999999", "999999", "999999", "weight[999999:1000000], [1, 1, 1, 1]"] in rows
    n = 2**40 - 1  # a count no list could hold
    text = str(groupconv.explain(ConvSpec(n + 1, n + 1, 1, groups=n + 1)))
    assert [str(n), str(n), str(n), f"weight[{n}:{n + 1}], [1, 1, 1, 1]"] in [
        line.split(maxsplit=3) for line in text.splitlines()
    ]


def test_the_json_still_lists_every_group():
    data = groupconv.explain(ConvSpec(4, 8, 3, groups=2)).to_dict()
    assert data["group_slices"] == (
        {"group": 0, "input_channels": (0, 2), "output_channels": (0, 4), "weight_rows": (0, 4),
         "weight_shape": (4, 2, 3, 3)},
        {"group": 1, "input_channels": (2, 4), "output_channels": (4, 8), "weight_rows": (4, 8),
         "weight_shape": (4, 2, 3, 3)},
    )  # fmt: skip
    assert groupconv.explain(ConvSpec(4, 8, 3, groups=2)) == groupconv.explain(ConvSpec(4, 8, 3, groups=2))


def test_json_of_more_groups_than_it_can_list_is_refused_in_one_line(capsys):
    """2**40 groups cannot be listed one by one: the CLI says so at once instead of running out of memory."""
    from groupconv.cli.main import main

    n = 2**40
    with pytest.raises(SystemExit) as exited:
        main(["explain", "--in", str(n), "--out", str(n), "--kernel", "3", "--groups", str(n), "--json"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"groups={n} are too many to list" in error
    assert len(groupconv.explain(ConvSpec(2**16, 2**16, 1, groups=2**16)).to_dict()["group_slices"]) == 2**16


def test_what_is_not_a_layer_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError) as error:
        groupconv.explain((4, 8, 3))
    assert str(error.value) == "spec must be a groupconv.ConvSpec, e.g. ConvSpec(4, 8, 3); got tuple (4, 8, 3)"
    with pytest.raises(TypeError, match=r"^input_shape must be a sequence of ints such as \(1, 4, 32, 32\), got 5$"):
        groupconv.explain(ConvSpec(4, 8, 3), input_shape=5)


@pytest.mark.parametrize(
    "channels, groups, message",
    [
        ((4, 8), 3, "groups=3 is invalid: in_channels=4 and out_channels=8 are not divisible by 3; nearest valid: "
                    "2 or 4 (valid groups: 1, 2, 4; the largest is gcd(4, 8) = 4)"),
        ((6, 9), 2, "groups=2 is invalid: out_channels=9 is not divisible by 2; nearest valid: 1 or 3 "
                    "(valid groups: 1, 3; the largest is gcd(6, 9) = 3)"),
        ((64, 64), 100, "groups=100 is invalid: in_channels=64 and out_channels=64 are not divisible by 100; "
                        "nearest valid: 64 (valid groups: 1, 2, 4, 8, 16, 32, 64; the largest is gcd(64, 64) = 64)"),
    ],
)  # fmt: skip
def test_an_invalid_group_count_says_why_and_what_is_near(channels, groups, message):
    with pytest.raises(GroupConvError) as error:
        check_groups(*channels, groups)
    assert str(error.value) == message
    with pytest.raises(ValueError):  # PyTorch agrees it is invalid
        torch.nn.Conv2d(*channels, 3, groups=groups)


def test_a_valid_group_count_passes_and_nonsense_is_rejected():
    check_groups(4, 8, 4)
    with pytest.raises(GroupConvError, match="groups=0 is invalid: groups must be an int >= 1"):
        check_groups(4, 8, 0)
    with pytest.raises(GroupConvError, match="in_channels=0 is invalid"):
        check_groups(0, 8, 1)
    with pytest.raises(GroupConvError, match="dtype='int8' is not supported; use one of 'float64', 'float32'"):
        groupconv.explain(ConvSpec(4, 8, 3), (1, 4, 8, 8), dtype="int8")


@pytest.mark.parametrize("arguments, input_shape", LAYERS)
def test_describe_is_a_pytorch_constructor_call_for_the_same_layer(arguments, input_shape):
    spec = ConvSpec(**arguments)
    layer = eval("torch.nn." + describe(spec), {"torch": torch})  # our own string: a constructor call, on purpose
    expected = torch_layer(**arguments)
    assert type(layer) is type(expected)
    for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(layer, name) == getattr(expected, name), name
    assert (layer.bias is None) == (not spec.bias)
    assert describe(ConvSpec(4, 4, 3, padding="same", padding_mode="reflect")) == (
        "Conv2d(4, 4, kernel_size=3, padding='same', padding_mode='reflect')"
    )


def test_the_explanation_serialises_to_plain_json():
    report = groupconv.explain(ConvSpec(6, 4, (3, 2), groups=2, transposed=True, stride=2), (2, 6, 5, 4))
    data = report.to_dict()
    assert data["schema"] == "groupconv.explain/1"
    assert data["spec"]["kernel_size"] == (3, 2) and data["spec"]["transposed"] is True
    assert data["group_slices"][1] == {
        "group": 1,
        "input_channels": (3, 6),
        "output_channels": (2, 4),
        "weight_rows": (3, 6),
        "weight_shape": (3, 2, 3, 2),
    }
    assert data["cost"]["macs"] == math.prod((2, 6, 5, 4)) * 2 * 6  # N*C*prod(S) inputs, each meets Og=2 kernels of 6
