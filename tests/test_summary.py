"""groupconv.summary against independent counts.

Oracles: ``sum(p.numel() for p in model.parameters())`` for parameters;
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC, convolutions through
PyTorch's own aten.convolution) for MACs, in total and layer by layer; PyTorch's conv
modules for what more groups would save; and hand counts.
"""

from __future__ import annotations

import copy
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import groupconv
from groupconv import GroupConvError
from groupconv.models import BUILTIN, DEFAULT_INPUT
from groupconv.reports.summary import load_model


def as_torch(model: nn.Module) -> nn.Module:
    """A copy whose groupconv layers are PyTorch's own classes again, so FlopCounterMode counts
    aten.convolution with PyTorch's formula rather than groupconv's internal matmuls."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if type(module).__module__ == "groupconv.nn":
            module.__class__ = module._torch_class()
    return twin


def flop_counts(model: nn.Module, input_shape) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's total and per-module FLOPs for one eval-mode forward pass of a PyTorch twin."""
    twin = as_torch(model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        twin(torch.zeros(input_shape))
    prefix = type(twin).__name__ + "."
    per_module = {name.removeprefix(prefix): sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops(), per_module


def record(model: nn.Module, input_shape, what) -> dict:
    """``what(inputs, output)`` of each module's first call in one eval-mode forward pass, by module name."""
    seen: dict = {}

    def hook(name):
        def remember(module, inputs, output):
            seen.setdefault(name, what(inputs, output))

        return remember

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(input_shape))
    for handle in handles:
        handle.remove()
    return seen


def transposed_model() -> nn.Sequential:
    """Dense, grouped, depthwise and transposed layers in 1-D and 2-D, plain torch.nn and groupconv.nn mixed."""
    return nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1),
        groupconv.nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False),
        nn.ConvTranspose2d(12, 8, 4, stride=2, padding=1, groups=4),
        groupconv.nn.ConvTranspose2d(8, 6, 3, stride=2, output_padding=1, groups=2),
        nn.Flatten(2),
        nn.Conv1d(6, 4, 5, groups=2),
        groupconv.nn.ConvTranspose1d(4, 4, 3, dilation=2, groups=4),
        nn.Flatten(),
        nn.Linear(4 * 572, 7),
    )


MODELS = {name: (build, DEFAULT_INPUT[name]) for name, build in BUILTIN.items()}
MODELS["transposed"] = (transposed_model, (2, 3, 6, 5))


@pytest.mark.parametrize("name", MODELS)
def test_totals_match_the_model_and_flop_counter(name):
    build, input_shape = MODELS[name]
    model = build()
    result = groupconv.summary(model, input_shape)
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert result.total_params == sum(row.params for row in result.rows)
    total_flops, per_module = flop_counts(model, input_shape)
    assert result.total_macs * 2 == total_flops
    for row in result.rows:
        assert row.macs * 2 == per_module.get(row.name, 0), row.name
    assert isinstance(result.total_params, int) and isinstance(result.total_macs, int)


def test_the_flop_counter_also_agrees_on_groupconvs_own_compute():
    """groupconv's layers computed by groupconv (not converted): the counter sees its matmuls."""
    model, input_shape = BUILTIN["alexnet-g4"](), DEFAULT_INPUT["alexnet-g4"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(input_shape))
    assert groupconv.summary(model, input_shape).total_macs * 2 == counter.get_total_flops()


@pytest.mark.parametrize("name", ["transposed", "mobilenet", "alexnet-g2"])
def test_rows_describe_each_layer(name):
    build, input_shape = MODELS[name]
    model = build()
    result = groupconv.summary(model, input_shape)
    modules = dict(model.named_modules())
    outputs = record(model, input_shape, lambda inputs, output: tuple(output.shape))
    for row in result.rows:
        module = modules[row.name]
        assert row.type == type(module).__name__
        assert row.output_shape == outputs[row.name]
        assert row.calls == 1
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            assert (row.in_channels, row.out_channels, row.groups) == (
                module.in_channels, module.out_channels, module.groups
            )  # fmt: skip
            assert row.kernel_size == module.kernel_size
        elif isinstance(module, nn.Linear):
            assert (row.in_channels, row.out_channels, row.groups) == (module.in_features, module.out_features, None)
        else:
            assert row.params > 0 and row.macs == 0 and row.groups is None
    counted = {row.name for row in result.rows}
    expected = {n for n, m in modules.items() if any(True for _ in m.parameters(recurse=False))}
    assert counted == expected


def test_every_layer_that_allows_more_groups_is_flagged_with_its_saving():
    model, input_shape = BUILTIN["alexnet-g2"](), DEFAULT_INPUT["alexnet-g2"]
    result = groupconv.summary(model, input_shape)
    input_shapes = record(model, input_shape, lambda inputs, output: tuple(inputs[0].shape))
    for row in result.rows:
        module = dict(model.named_modules())[row.name]
        if not isinstance(module, nn.Conv2d):
            assert row.more_groups == ()
            continue
        larger = [g for g in range(row.groups + 1, row.in_channels + 1)
                  if row.in_channels % g == 0 and row.out_channels % g == 0]  # fmt: skip
        assert [option.groups for option in row.more_groups] == larger
        for option in row.more_groups:
            regrouped = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                  module.padding, groups=option.groups)  # fmt: skip
            total, _ = flop_counts(nn.Sequential(regrouped), input_shapes[row.name])
            assert option.params_saved == row.params - sum(p.numel() for p in regrouped.parameters())
            assert option.macs_saved == row.macs - total // 2
    flagged = [row.name for row in result.rows if row.more_groups]
    assert flagged == ["features.conv2", "features.conv3", "features.conv4", "features.conv5"]  # not conv1: 1 input
    text = str(result)
    assert "4 convolutions could use more groups. For each, the next valid count and the largest," in text
    flags = text.split("as it is:\n")[1].splitlines()
    assert flags[0].split() == ["layer", "groups", "more", "groups", "params", "saved", "MACs", "saved"]
    assert flags[4].split() == ["features.conv3", "1", "2", "110,592", "(50.0%)", "5,419,008", "(50%)"]
    assert flags[5].split() == ["64", "217,728", "(98.4%)", "10,668,672", "(98.4%)"]


def test_shared_layers_count_parameters_once_and_macs_per_call():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    result = groupconv.summary(model, (1, 4, 5, 5))
    assert [row.name for row in result.rows] == ["0"]
    assert result.rows[0].calls == 2
    assert result.total_params == sum(p.numel() for p in model.parameters()) == 4 * 2 * 9 + 4
    assert result.total_macs == 2 * (4 * 25 * 2 * 9)  # two calls of N*O*H*W*Cg*k*k
    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight
    assert groupconv.summary(tied, (2, 3)).total_params == sum(p.numel() for p in tied.parameters()) == 9 + 3 + 3


def test_a_tied_weights_savings_are_shares_of_its_own_weight_and_bias():
    first, second = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    second.weight = first.weight  # the total counts the weight once: in the first layer's row
    result = groupconv.summary(nn.Sequential(first, second), (1, 4, 8, 8))
    assert [row.params for row in result.rows] == [148, 4]
    assert result.total_params == sum(p.numel() for p in nn.Sequential(first, second).parameters())
    own = second.weight.numel() + second.bias.numel()  # 4*4*9 + 4 = 148, whoever holds the weight
    halved, quartered = nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, groups=4)
    saved = [own - sum(p.numel() for p in layer.parameters()) for layer in (halved, quartered)]
    assert saved == [72, 108]
    flags = str(result).split("as it is:\n")[1].splitlines()
    assert flags[4].split() == ["1", "1", "2", "72", f"({100 * 72 / own:.1f}%)", "4,608", "(50%)"]  # 48.6%
    assert flags[5].split() == ["4", "108", f"({100 * 108 / own:.1f}%)", "6,912", "(75%)"]  # 73.0%, not 2700%


def test_layers_called_with_keyword_input_count_their_macs():
    class KeywordCalls(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.linear = nn.Conv2d(3, 6, 3, groups=3), nn.Linear(6, 2)

        def forward(self, x):
            return self.linear(input=self.conv(input=x).mean((2, 3)))

    model = KeywordCalls()
    result = groupconv.summary(model, (1, 3, 8, 8))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 8, 8))
    assert result.total_macs * 2 == counter.get_total_flops()
    assert [row.macs for row in result.rows] == [6 * 6 * 6 * 1 * 9, 6 * 2]  # O*H*W*Cg*k*k; in x out


def test_linear_layers_count_every_leading_dim():
    model = nn.Sequential(nn.Linear(8, 5))
    result = groupconv.summary(model, (2, 3, 8))
    assert result.total_macs == 2 * 3 * 8 * 5
    total_flops, _ = flop_counts(model, (2, 3, 8))
    assert result.total_macs * 2 == total_flops


def test_the_model_is_left_as_it_was():
    model = BUILTIN["resnext"]()
    model.train()
    model.block1.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    groupconv.summary(model, DEFAULT_INPUT["resnext"])
    assert {name: m.training for name, m in model.named_modules()} == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm statistics untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_a_model_that_fails_on_the_input_is_one_clear_error():
    with pytest.raises(GroupConvError) as error:
        groupconv.summary(BUILTIN["alexnet"](), (1, 3, 28, 28))
    assert str(error.value) == (
        "the model failed on an input of shape (1, 3, 28, 28): Given groups=1, weight of size [48, 1, 5, 5], "
        "expected input[1, 3, 28, 28] to have 1 channels, but got 3 channels instead"
    )
    with pytest.raises(GroupConvError, match=r"input_shape\[1\]=0 is invalid"):
        groupconv.summary(BUILTIN["alexnet"](), (1, 0, 28, 28))


def test_the_report_has_a_row_per_layer_and_totals():
    result = groupconv.summary(BUILTIN["alexnet-g2"](), (1, 1, 28, 28), name="alexnet-g2")
    lines = str(result).splitlines()
    assert lines[0] == "alexnet-g2 on input (1, 1, 28, 28)"
    assert lines[2].split() == [
        "layer",
        "type",
        "in",
        "out",
        "groups",
        "kernel",
        "parameters",
        "MACs",
        "output",
        "shape",
    ]
    assert lines[5].split() == ["features.conv2", "Conv2d", "48", "128", "2", "5x5", "76,928", "15,052,800",
                                "(1,", "128,", "14,", "14)"]  # fmt: skip
    assert lines[12].split() == ["total", f"{result.total_params:,}", f"{result.total_macs:,}"]


BUILDER = """
import torch
from groupconv.models import mobilenet

def build():
    return mobilenet(width=0.25)

instance = torch.nn.Conv2d(2, 4, 3, groups=2)
not_a_model = 3

def broken():
    raise RuntimeError("no weights here")
"""


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A module ``summary_models`` in the current directory, imported afresh by each test."""
    (tmp_path / "summary_models.py").write_text(textwrap.dedent(BUILDER))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "summary_models", raising=False)


def test_load_model_by_builtin_name_or_import_path(user_models):
    model, input_shape = load_model("shufflenet")
    assert input_shape == DEFAULT_INPUT["shufflenet"]
    assert {m.groups for m in model.modules() if isinstance(m, nn.Conv2d)} >= {1, 3}
    model, input_shape = load_model("summary_models:build")
    assert input_shape is None and model.fc.in_features == 64
    model, _ = load_model("summary_models:instance")
    assert isinstance(model, nn.Conv2d) and model.groups == 2


@pytest.mark.parametrize(
    "reference, message",
    [
        ("resnet", "unknown model 'resnet': use a built-in name (alexnet, alexnet-g2, alexnet-g4, resnext, shufflenet, "
                   "mobilenet) or package.module:callable"),
        ("no_such_package:build", "cannot import 'no_such_package': ModuleNotFoundError: No module named "
                                  "'no_such_package'"),
        ("summary_models:missing", "summary_models:missing: 'summary_models' has no attribute 'missing'"),
        ("summary_models:not_a_model", "summary_models:not_a_model is a int: name a torch.nn.Module or a function"),
        ("summary_models:broken", "calling summary_models:broken() failed: RuntimeError: no weights here"),
        ("torch:zeros", "calling torch:zeros() failed: TypeError:"),
    ],
)  # fmt: skip
def test_load_model_errors_say_what_is_wrong(reference, message, user_models):
    with pytest.raises(GroupConvError) as error:
        load_model(reference)
    assert str(error.value).startswith(message)


class Unused(nn.Module):
    """A model holding a conv its forward never calls."""

    def __init__(self):
        super().__init__()
        self.used = nn.Conv2d(4, 4, 1, groups=4)
        self.spare = nn.Conv2d(4, 8, 3)

    def forward(self, x):
        return self.used(x)


def test_a_layer_the_forward_pass_skips_counts_parameters_but_no_macs():
    model = Unused()
    result = groupconv.summary(model, (1, 4, 3, 3))
    spare = result.rows[-1]
    assert (spare.name, spare.calls, spare.output_shape, spare.macs) == ("spare", 0, None, 0)
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert [(o.groups, o.macs, o.macs_saved) for o in spare.more_groups] == [(2, None, None), (4, None, None)]
    lines = str(result).splitlines()
    assert lines[-2].split() == ["spare", "1", "2", "144", "(48.6%)", "-"]  # 296 -> 152 parameters; no MACs known
    assert lines[-1].split() == ["4", "216", "(73.0%)", "-"]
    assert result.model == "Unused"
