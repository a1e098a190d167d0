"""The autotuner: whole-layer routes, the margin, determinism, refusing overflowing data, the report."""

import json
import threading

import pytest
import torch
import torch.nn.functional as F
from cases import spy_on_formulations

import groupconv
from groupconv import ConvSpec, GroupConvError, dispatch, formulations, routing, timing, tuning
from groupconv.timing import Timing


@pytest.fixture(autouse=True)
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    monkeypatch.setenv("GROUPCONV_CACHE", str(path))
    monkeypatch.delenv("GROUPCONV_TUNE", raising=False)
    monkeypatch.setattr(tuning, "_routes_taken", {})  # each test sees the routes its own layers took
    return path


def entries(path) -> dict[str, str]:
    """This environment's entries in the cache file."""
    sections = json.loads(path.read_text())["sections"]
    return next(s["entries"] for s in sections.values() if s["fingerprint"] == tuning.fingerprint())


def steady(ms: float, spread: float = 0.02) -> Timing:
    """A timing of ``ms`` milliseconds whose quartiles lie ``spread`` either side."""
    return Timing(ms / 1e3, ms * (1 - spread) / 1e3, ms * (1 + spread) / 1e3, ms * (1 - spread) / 1e3, 9)


def fake_timer(monkeypatch, ms_of):
    """Replace the timer: each contender runs once (as the warm-up does: groupconv's routes tune their
    directions then), and is given ``ms_of(name)`` milliseconds, steady."""
    timed = []

    def interleaved(contenders, settings=timing.FULL, clock=None):
        for run in contenders.values():
            run()
        timed.append(list(contenders))
        return {name: steady(ms_of(name)) for name in contenders}

    monkeypatch.setattr(tuning.timing, "interleaved", interleaved)
    return timed


def small_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        groupconv.nn.Conv2d(4, 8, 3, groups=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        groupconv.nn.Conv2d(8, 8, 3, groups=8),
    )


def layer_keys() -> list[str]:
    return [key for key in tuning.cache().entries if key.startswith("layer ")]


def test_tune_times_every_route_of_every_layer_and_caches_what_it_chose(cache_file, monkeypatch):
    fake_timer(monkeypatch, lambda name: {"pytorch_channels_last": 1.0}.get(name, 2.0))
    model, x = small_model(), torch.randn(2, 4, 9, 9)
    running_mean = model[1].running_mean.clone()
    report = groupconv.tune(model, x, layout=False)
    # inference (each layer forward alone), the first layer with and without an input gradient, the second
    # (its input always needs one): 5 layer routes
    assert len(report.layers) == 5
    assert sum(layer.directions == ("forward",) for layer in report.layers) == 2
    for layer in report.layers:
        assert set(layer.timings) == set(tuning.ROUTES) and layer.chosen == "pytorch_channels_last"
        assert layer.layout == "channels_first" and layer.pytorch_best == "pytorch_channels_last"
    assert {call.direction for call in report.calls} == {"forward", "input_grad", "weight_grad", "layer"}
    assert entries(cache_file) == {call.key: call.chosen for call in report.calls}
    assert model.training and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(model[1].running_mean, running_mean)  # ran in eval mode


def test_the_layer_takes_its_tuned_route_and_computes_the_same(monkeypatch):
    """Each of the four routes, on a channels-first input, against F.conv2d: output and both gradients."""
    layer = groupconv.nn.Conv2d(8, 8, 3, groups=4, padding=1).double()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(x, layer.weight, layer.bias, padding=1, groups=4)
    expected_grads = torch.autograd.grad(expected.sum(), (x, layer.weight))
    for route in tuning.ROUTES:
        tuning.cache().put(dispatch.call_key("layer", x, layer.weight, layer.spec, *DIRECTIONS), route)
        for _ in range(2):  # the second call takes the remembered route
            y = layer(x)
            assert y.is_contiguous()
            torch.testing.assert_close(y, expected)
            torch.testing.assert_close(torch.autograd.grad(y.sum(), (x, layer.weight)), expected_grads)
        assert tuning.decisions_summary()["routes"][0]["route"] == route


DIRECTIONS = ("forward", "input_grad", "weight_grad")


def test_a_shufflenet_style_layer_goes_to_pytorch_channels_last_on_channels_first_input(monkeypatch):
    """1x1, 4 groups of 68 channels: where PyTorch channels-last is the faster route whole, tuning picks it
    for channels-first input, and the layer runs PyTorch's convolution on a channels-last copy."""
    fake_timer(monkeypatch, lambda name: {"pytorch_channels_first": 3.0, "pytorch_channels_last": 1.0}.get(name, 2.5))
    layer, x = groupconv.nn.Conv2d(272, 272, 1, groups=4, bias=False), torch.randn(1, 272, 4, 4)
    report = groupconv.tune(layer, x, layout=False)
    assert {layer.chosen for layer in report.layers} == {"pytorch_channels_last"}
    y = layer(x.requires_grad_())
    assert y.is_contiguous() and y.grad_fn.next_functions[0][0].name() == "ConvolutionBackward0"
    torch.testing.assert_close(y, F.conv2d(x, layer.weight, groups=4))


CF, CL, OPS = "pytorch_channels_first", "pytorch_channels_last", "groupconv_channels_first"


@pytest.mark.parametrize(
    ("ms", "chosen"),
    [({CF: 1.0, CL: 0.97, OPS: 0.96}, CF), ({CF: 1.0, CL: 0.9, OPS: 0.88}, CL), ({CF: 1.0, CL: 0.9, OPS: 0.5}, OPS)],
)
def test_a_route_replaces_pytorchs_own_only_when_faster_beyond_the_margin(ms, chosen):
    """Within 5% is a tie, and a tie keeps the route tried first: PyTorch's own, then PyTorch's other layout."""
    assert tuning.decide({name: steady(value) for name, value in ms.items()}, CF) == chosen


def test_a_faster_median_within_the_spread_does_not_win():
    noisy = Timing(0.8e-3, 0.5e-3, 1.5e-3, 0.5e-3, 9)  # median 20% faster, quartiles overlapping
    assert tuning.decide({"native": steady(1.0), "split": noisy}, "native") == "native"


def test_timed_in_the_same_rounds_a_drift_does_not_hide_a_steady_gain():
    """The load rises round by round, so the two spreads overlap; 10% faster in every round still wins."""
    load = [1.0, 1.3, 1.7, 2.2, 2.8, 3.5, 4.3]
    incumbent = Timing.of([ms * 1e-3 for ms in load])
    assert incumbent.q25_s < 0.9 * incumbent.q75_s
    assert tuning.decide({"native": incumbent, "direct": Timing.of([ms * 0.9e-3 for ms in load])}, "native") == "direct"


def test_timed_in_the_same_rounds_a_gain_in_some_rounds_only_does_not_win():
    incumbent = Timing.of([1e-3] * 8)
    sometimes = Timing.of([0.5e-3, 1.1e-3] * 4)  # median 20% faster, slower every other round
    assert tuning.decide({"native": incumbent, "direct": sometimes}, "native") == "native"


def test_repeated_tuning_with_jittered_timings_chooses_the_same_routes(monkeypatch):
    """Timings that move by up to 4% between runs (within the margin) leave every choice where it was."""
    base = {CF: 1.0, CL: 0.6, OPS: 0.62}
    generator = torch.Generator().manual_seed(0)

    def jittered(name: str) -> float:
        return base.get(name, 1.5) * (1 + 0.04 * (2 * torch.rand(1, generator=generator).item() - 1))

    choices = []
    for _ in range(4):
        fake_timer(monkeypatch, jittered)
        report = groupconv.tune(small_model(), torch.randn(2, 4, 9, 9), retune=True, layout=False)
        choices.append([layer.chosen for layer in report.layers])
    assert all(run == choices[0] for run in choices)


@pytest.mark.slow
def test_repeated_real_tuning_agrees_on_most_layers_or_within_the_margin():
    """Real timings: 95% of the layers choose alike in two runs, and every disagreement is a near-tie
    (the two routes within each other's margin in the timings of one run or the other)."""
    model, x = small_model(), torch.randn(4, 4, 16, 16)
    first, second = (groupconv.tune(model, x, retune=True, layout=False).layers for _ in range(2))
    assert [a.key for a in first] == [b.key for b in second]
    disagree = [(a, b) for a, b in zip(first, second) if a.chosen != b.chosen]
    for a, b in disagree:
        assert any(
            not timing.beats(run.timings[one], run.timings[other])
            for run in (a, b)
            for one, other in ((a.chosen, b.chosen), (b.chosen, a.chosen))
        )
    assert len(disagree) <= 0.05 * len(first) or all(disagree)


@pytest.mark.parametrize("scale", [1e38, float("inf"), float("nan")])
def test_an_overflowing_example_batch_stops_tuning_and_caches_nothing(cache_file, scale):
    model = small_model()
    with pytest.raises(
        GroupConvError, match=r"^cannot tune: example_input .*; tune on a batch of real, normalised data"
    ):
        groupconv.tune(model, torch.randn(2, 4, 9, 9) * scale)
    assert not cache_file.exists() and tuning.cache().entries == {}


def test_an_overflow_found_in_a_direction_caches_nothing(cache_file, monkeypatch):
    """Even where the forward on the example is finite, a direction whose reference overflows stops tuning."""
    im2col = formulations.load("im2col")
    monkeypatch.setattr(im2col, "weight_grad", lambda x, grad_y, spec: torch.full((8, 2, 3, 3), float("inf")))
    with pytest.raises(GroupConvError, match="overflows"):
        groupconv.tune(small_model(), torch.randn(2, 4, 9, 9), layout=False)
    assert not cache_file.exists()


def test_a_formulation_that_disagrees_is_never_chosen(monkeypatch):
    split = formulations.load("split")
    monkeypatch.setattr(split, "forward", lambda x, weight, spec: torch.zeros(1, 4, 4, 4))
    monkeypatch.setattr(formulations, "NAMES", ("native", "split", "im2col"))
    fake_timer(monkeypatch, lambda name: {"split": 0.1, "im2col": 0.5}.get(name, 1.0))
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), ConvSpec(4, 4, 3, groups=2)
    with pytest.warns(UserWarning, match="'split' disagrees"):
        assert tuning.tune_call("k", "forward", x, weight, spec) == "im2col"


def test_a_cached_choice_is_used():
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3)
    spec = ConvSpec(4, 4, 3, groups=2)
    assert dispatch.choose("forward", x, weight, spec) is not formulations.load("split")
    tuning.cache().put(dispatch.call_key("forward", x, weight, spec), "split")
    assert dispatch.choose("forward", x, weight, spec) is formulations.load("split")
    assert tuning.cache().get(dispatch.call_key("forward", x.double(), weight.double(), spec)) is None


def test_tuning_disabled_leaves_no_cache(cache_file):
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)
    layer(torch.randn(1, 4, 6, 6)).sum().backward()
    assert not cache_file.exists()


@pytest.mark.slow
def test_environment_variable_turns_tuning_on(cache_file, monkeypatch):
    fake_timer(monkeypatch, lambda name: 1.0)
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)
    layer(torch.randn(1, 4, 6, 6, requires_grad=True)).sum().backward()
    assert {key.split()[0] for key in entries(cache_file)} == {"layer", "forward", "input_grad", "weight_grad"}


@pytest.mark.parametrize(
    ("value", "on"), [("true", True), ("ON", True), ("false", False), ("no", False), ("off", False), ("0", False)]
)
def test_environment_variable_reads_yes_and_no(monkeypatch, value, on):
    """GROUPCONV_TUNE=false turned tuning on (any value but 0 did)."""
    monkeypatch.setenv("GROUPCONV_TUNE", value)
    assert tuning.enabled() is on


def test_an_environment_variable_that_is_neither_yes_nor_no_is_off_with_a_warning(monkeypatch):
    monkeypatch.setenv("GROUPCONV_TUNE", "sometimes")
    tuning._switch.cache_clear()  # it warns once per value and process
    with pytest.warns(UserWarning, match=r"GROUPCONV_TUNE='sometimes' is neither 1 nor 0; tuning stays off \(set 1"):
        assert not tuning.enabled()


@pytest.mark.slow
def test_retune_times_cached_calls_again(monkeypatch):
    timed = fake_timer(monkeypatch, lambda name: 1.0)
    layer, x = groupconv.nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 6, 6)
    first = len(groupconv.tune(layer, x, layout=False).calls)
    assert first and groupconv.tune(layer, x, layout=False).calls == []  # all cached: nothing timed
    assert len(groupconv.tune(layer, x, retune=True, layout=False).calls) == first
    assert len(timed) == 2 * first


def test_tune_covers_a_training_step_in_either_layout(monkeypatch):
    """tune runs the model without autograd and with and without an input gradient, channels-first and
    channels-last, so inference and a training step find every layer route they take already tuned."""
    fake_timer(monkeypatch, lambda name: 1.0)
    model, x = small_model(), torch.randn(2, 4, 9, 9)
    report = groupconv.tune(model, x)
    assert report.layout.chosen == "channels_first"  # a tie keeps the input's layout
    monkeypatch.setattr(tuning, "tune_layer", lambda key, *args: pytest.fail(f"untuned: {key}"))
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    for memory_format in (torch.contiguous_format, torch.channels_last):
        model.to(memory_format=memory_format)
        y = model.eval()(x.contiguous(memory_format=memory_format))
        y.backward(torch.randn_like(y))
        with torch.no_grad():
            model(x.contiguous(memory_format=memory_format))
    assert all(route["tuned"] for route in tuning.decisions_summary()["routes"])


@pytest.mark.parametrize(
    ("channels_last_ms", "chosen"), [(1.0, "channels_last"), (1.92, "channels_last"), (1.98, "channels_first")]
)
def test_the_model_layout_is_timed_and_applied_on_request(monkeypatch, channels_last_ms, chosen):
    fake_timer(monkeypatch, lambda name: {"channels_first": 2.0, "channels_last": channels_last_ms}.get(name, 1.0))
    model = small_model()
    report = groupconv.tune(model, torch.randn(2, 4, 9, 9), apply_layout=True)
    assert (report.layout.chosen, report.layout.applied) == (chosen, True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) == (chosen == "channels_last")
    assert report.layout.chosen in str(report) and report.to_dict()["layout"]["chosen"] == chosen


class ModeRecorder(torch.nn.Module):
    """Notes whether it ran in train mode, each call."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x


def test_the_model_layout_is_timed_in_the_models_own_mode_with_its_buffers_kept(monkeypatch):
    """A training step runs batch statistics: its layout is timed so, the running statistics put back after."""
    fake_timer(monkeypatch, lambda name: 1.0)
    recorder = ModeRecorder()
    model = torch.nn.Sequential(small_model(), recorder)
    running = [buffer.clone() for buffer in model.buffers()]
    groupconv.tune(model, torch.randn(2, 4, 9, 9))
    # the layers are tuned in eval mode, then the model's step (its twin in the other layout runs a copy)
    assert recorder.modes[-1] and not any(recorder.modes[:-1])
    assert model.training
    for buffer, before in zip(model.buffers(), running, strict=True):
        torch.testing.assert_close(buffer, before)


def test_a_model_train_mode_refuses_on_the_example_has_its_layout_timed_in_eval_mode(monkeypatch):
    """Batch norm of one value per channel fails in train mode: the layout is judged as inference runs."""
    fake_timer(monkeypatch, lambda name: {"channels_last": 1.0}.get(name, 2.0))
    pooled = torch.nn.Sequential(groupconv.nn.Conv2d(4, 4, 3, groups=2), torch.nn.AdaptiveAvgPool2d(1))
    model = torch.nn.Sequential(pooled, torch.nn.Flatten(), torch.nn.BatchNorm1d(4))
    with pytest.raises(ValueError):
        model(torch.randn(1, 4, 9, 9))
    report = groupconv.tune(model, torch.randn(1, 4, 9, 9))
    assert report.layout.chosen == "channels_last" and model.training


def test_a_one_channel_input_still_times_both_model_layouts(monkeypatch):
    """Its channels-last copy is also contiguous, so the layouts are named by the model's parameters."""
    fake_timer(monkeypatch, lambda name: {"channels_last": 1.0}.get(name, 2.0))
    model = torch.nn.Sequential(groupconv.nn.Conv2d(1, 4, 3), groupconv.nn.Conv2d(4, 4, 3, groups=2))
    report = groupconv.tune(model, torch.randn(2, 1, 9, 9))
    assert set(report.layout.timings) == {"channels_first", "channels_last"}
    assert report.layout.chosen == "channels_last"


def test_a_new_cache_entry_changes_the_route_a_layer_takes():
    """apply remembers each call's route per cache: a new entry must not meet a stale decision."""
    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=8), torch.randn(1, 8, 6, 6, requires_grad=True)
    for _ in range(2):  # the second call takes the remembered route
        assert layer(x).grad_fn.name() == "ConvolutionBackward0"
    tuning.cache().put(dispatch.call_key("layer", x, layer.weight, layer.spec, *DIRECTIONS), "groupconv_channels_first")
    y = layer(x)
    assert y.grad_fn.name() != "ConvolutionBackward0"
    torch.testing.assert_close(y, F.conv2d(x, layer.weight, layer.bias, groups=8))


@pytest.mark.parametrize(
    ("input_shape", "gradients", "whole"),
    [((2, 8, 5, 5), True, True), ((2, 8, 5, 5), False, True), ((32, 8, 40, 40), False, False)],
)
def test_an_untuned_transposed_layer_runs_whole_through_pytorch_unless_large_and_forward_only(
    monkeypatch, input_shape, gradients, whole
):
    """PyTorch's transposed convolution for a small input or with gradients; the ops (PyTorch's input
    gradient: faster forward on large inputs) for a large forward only. Results match either way."""
    layer = groupconv.nn.ConvTranspose2d(8, 12, 4, stride=2, padding=1, output_padding=1, groups=2).double()
    oracle = torch.nn.ConvTranspose2d(8, 12, 4, stride=2, padding=1, output_padding=1, groups=2).double()
    oracle.load_state_dict(layer.state_dict())
    x = torch.randn(input_shape, dtype=torch.float64, requires_grad=gradients)
    ops_calls = spy_on_formulations(monkeypatch)
    for _ in range(2):  # the second call takes the remembered route
        with torch.set_grad_enabled(gradients):
            y, expected = layer(x), oracle(x)
        torch.testing.assert_close(y, expected)
        if gradients:
            got = torch.autograd.grad(y.sum(), (x, layer.weight, layer.bias))
            torch.testing.assert_close(got, torch.autograd.grad(expected.sum(), (x, oracle.weight, oracle.bias)))
    assert ops_calls == ([] if whole else ["input_grad", "input_grad"])


@pytest.mark.parametrize("route", ["pytorch_channels_last", "groupconv_channels_first"])
def test_a_transposed_layer_is_timed_whole_and_runs_its_route(monkeypatch, route):
    """Its output is the convolution's input gradient, its input's gradient the convolution's forward,
    its weight's the convolution's weight gradient of (output's gradient, input)."""
    fake_timer(monkeypatch, lambda name: 1.0 if name == route else 3.0)
    layer = groupconv.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, groups=2).double()
    x, grad_y = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True), torch.randn(2, 4, 9, 9).double()
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    y = layer(x)
    assert [tuning.cache().get(key) for key in layer_keys()] == [route]
    expected = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad_y), torch.autograd.grad(expected, x, grad_y))


def test_a_layer_and_its_transposed_twin_of_the_same_shapes_keep_their_routes_apart(monkeypatch):
    """Depthwise, stride 1: a convolution and its transposed twin take the same shapes, not the same output
    direction, so the directions in their layer keys differ."""
    fake_timer(monkeypatch, lambda name: 1.0)
    conv = groupconv.nn.Conv2d(4, 4, 3, groups=4, padding=1, bias=False)
    transposed = groupconv.nn.ConvTranspose2d(4, 4, 3, groups=4, padding=1, bias=False)
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    for layer in (conv, transposed):
        layer(torch.randn(1, 4, 6, 6))
    assert len(layer_keys()) == 2


def test_the_report_and_the_decisions_summary_name_each_layers_route(monkeypatch):
    fake_timer(monkeypatch, lambda name: {"groupconv_channels_first": 0.5}.get(name, 1.0))
    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=4), torch.randn(2, 8, 6, 6)
    report = groupconv.tune(layer, x, layout=False)
    text = str(report)
    assert "groupconv_channels_first" in text and "2.00x" in text
    rows = report.to_dict()["calls"]
    assert {row["chosen"] for row in rows if row["direction"] == "layer"} == {"groupconv_channels_first"}
    layer(x)
    summary = tuning.decisions_summary()
    assert summary["tuned"] >= 1 and {route["route"] for route in summary["routes"]} == {"groupconv_channels_first"}


def test_near_ties_resolve_to_pytorchs_own_route_for_a_channels_last_input(monkeypatch):
    fake_timer(monkeypatch, lambda name: 1.0)
    layer = groupconv.nn.Conv2d(8, 8, 3, groups=4).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    report = groupconv.tune(layer, x, layout=False)
    assert {layer.chosen for layer in report.layers} == {"pytorch_channels_last"}
    assert routing.route(layer.spec, x, layer.weight)(x, layer.weight, None).is_contiguous(
        memory_format=torch.channels_last
    )


def test_a_training_runs_metrics_record_the_routes_its_layers_took():
    from groupconv.training.train import provenance

    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=4), torch.randn(2, 8, 6, 6)
    layer(x)
    routes = json.loads(json.dumps(provenance()["routes"]))["routes"]  # as metrics.json holds them
    assert [(route["route"], route["tuned"]) for route in routes] == [("pytorch_channels_first", False)]


def test_a_scratch_cache_leaves_the_users_cache_as_it_was(cache_file):
    tuning.cache().put("mine", "native")
    before = cache_file.read_bytes()
    with tuning.scratch_cache() as scratch:
        assert scratch != cache_file and tuning.cache().get("mine") is None
        tuning.cache().put("benchmark's", "direct")
        assert entries(scratch) == {"benchmark's": "direct"}
    assert not scratch.exists() and tuning.cache_path() == cache_file
    assert cache_file.read_bytes() == before and tuning.cache().get("benchmark's") is None


def test_tuning_inside_a_checkpointed_layer_leaves_the_recompute_alike(monkeypatch):
    """torch.utils.checkpoint compares the tensors a layer saved with those its recompute saves: the timing's
    own tensors must not be taken for the layer's."""
    fake_timer(monkeypatch, lambda name: 1.0)
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2, padding=1).double()
    oracle = torch.nn.Conv2d(4, 4, 3, groups=2, padding=1).double()
    oracle.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    y = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x), torch.autograd.grad(oracle(x).sum(), x))


def test_tuning_leaves_the_random_state_as_it_was(monkeypatch):
    """A seeded run draws the same numbers after its layers were tuned as an untuned run does."""
    fake_timer(monkeypatch, lambda name: 1.0)
    model, x = small_model(), torch.randn(2, 4, 8, 8)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    groupconv.tune(model, x, retune=True)
    torch.testing.assert_close(torch.rand(3), expected)


def test_a_model_mixing_2d_and_3d_layers_is_tuned_in_its_own_layout(monkeypatch):
    """model.to(channels_last) refuses a 3-D layer's weight: the layout is not compared, the layers are tuned."""
    fake_timer(monkeypatch, lambda name: 1.0)

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.flat, self.deep = groupconv.nn.Conv2d(4, 4, 3, groups=2), groupconv.nn.Conv3d(1, 2, 1)

        def forward(self, x):
            return self.deep(self.flat(x).unsqueeze(1))

    report = groupconv.tune(Mixed(), torch.randn(1, 4, 6, 6))
    assert report.layout is None and report.layers


def test_a_model_under_a_reentrant_checkpoint_is_tuned_and_keeps_its_gradients(monkeypatch):
    """A reentrant checkpoint refuses autograd.grad: tune runs backward as a training step does, and puts
    back the ``.grad`` the parameters had."""
    fake_timer(monkeypatch, lambda name: 1.0)

    class Checkpointed(torch.nn.Sequential):
        def forward(self, x):
            return torch.utils.checkpoint.checkpoint(super().forward, x, use_reentrant=True)

    model = Checkpointed(*small_model())
    grads = [torch.full_like(p, 7.0) for p in model.parameters()]
    for parameter, grad in zip(model.parameters(), grads):
        parameter.grad = grad
    report = groupconv.tune(model, torch.randn(2, 4, 9, 9))
    assert {route.directions for route in report.layers} >= {("forward",), ("forward", "input_grad", "weight_grad")}
    assert all(parameter.grad is grad for parameter, grad in zip(model.parameters(), grads))


def test_a_model_that_cannot_be_copied_is_tuned_in_its_own_layout_with_a_warning(monkeypatch):
    """Timing the other layout needs a copy of the model; one holding a lock has none."""
    fake_timer(monkeypatch, lambda name: 1.0)
    model = small_model()
    model.lock = threading.Lock()
    with pytest.warns(UserWarning, match=r"cannot copy the model .*TypeError.*its layout is not judged"):
        report = groupconv.tune(model, torch.randn(2, 4, 9, 9))
    assert report.layout is None and report.layers


@pytest.mark.parametrize("example_input", [(torch.randn(1, 4, 6, 6),), None, 1.0])
def test_an_example_input_that_is_no_tensor_is_named(example_input):
    with pytest.raises(TypeError, match="example_input must be a tensor that model takes, got"):
        groupconv.tune(small_model(), example_input)


def test_a_model_that_takes_token_ids_is_tuned_for_inference_and_training(monkeypatch):
    """An integer input has no gradient: its model's layers are tuned without one (it raised before)."""
    fake_timer(monkeypatch, lambda name: 1.0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 8), Transposed(), groupconv.nn.Conv1d(8, 8, 3, groups=4))
    report = groupconv.tune(model, torch.randint(0, 10, (2, 16)))
    assert {layer.directions for layer in report.layers} == {("forward",), ("forward", "input_grad", "weight_grad")}


class Transposed(torch.nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


def test_a_model_of_torch_nn_convolutions_is_said_to_need_converting(monkeypatch):
    """Its convolutions run on PyTorch, so nothing is tuned: said in a warning, not silently."""
    fake_timer(monkeypatch, lambda name: 1.0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2), groupconv.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.warns(UserWarning, match=r"1 conv module\(s\) of the model are torch\.nn's.*groupconv\.nn\.convert"):
        report = groupconv.tune(model, torch.randn(1, 4, 9, 9), layout=False)
    assert len(report.layers) == 2  # the converted layer, for inference and for training


def test_a_report_with_nothing_timed_says_why():
    """It printed the table's headers alone."""
    report = groupconv.tune(torch.nn.Sequential(torch.nn.Linear(4, 4)), torch.randn(2, 4))
    assert str(report).startswith("No convolution timed: the model has none of groupconv's, or all are cached")
