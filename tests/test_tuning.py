"""The autotuner and its on-disk cache: choices, corruption, version changes, concurrent writers."""

import json
import multiprocessing

import pytest
import torch

import groupconv
from groupconv import ConvSpec, dispatch, formulations, routing, tuning


@pytest.fixture(autouse=True)
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    monkeypatch.setenv("GROUPCONV_CACHE", str(path))
    monkeypatch.delenv("GROUPCONV_TUNE", raising=False)
    return path


def small_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        groupconv.nn.Conv2d(4, 8, 3, groups=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        groupconv.nn.Conv2d(8, 8, 3, groups=8),
    )


DIRECTIONS = {"forward", "input_grad", "weight_grad", "layer"}  # "layer": a whole layer's route, timed when split


def convolutions(calls: list[tuning.Tuned]) -> list[tuning.Tuned]:
    """The tuned convolution calls, without the layer routes."""
    return [call for call in calls if call.direction != "layer"]


def test_tune_times_every_direction_and_caches_the_fastest(cache_file):
    model, x = small_model(), torch.randn(2, 4, 9, 9)
    running_mean = model[1].running_mean.clone()
    report = groupconv.tune(model, x)
    directions = sorted(call.direction for call in convolutions(report.calls))
    assert directions == ["forward", "forward", "input_grad", "input_grad", "weight_grad", "weight_grad"]
    for call in convolutions(report.calls):
        timed = {name: s for name, s in call.seconds.items() if s is not None}
        fastest = min(timed, key=timed.get)
        clear_win = timed[fastest] <= tuning.PYTORCH_MARGIN * timed["native"]
        assert call.chosen == (fastest if clear_win else "native")
        assert {"im2col", "native"} <= set(timed)
    entries = json.loads(cache_file.read_text())["entries"]
    assert entries == {call.key: call.chosen for call in report.calls}
    assert model.training and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(model[1].running_mean, running_mean)  # ran in eval mode


@pytest.mark.parametrize(("split_ms", "chosen"), [(0.97, "native"), (0.9, "split")])
def test_pytorch_keeps_a_call_unless_beaten_by_the_margin(monkeypatch, split_ms, chosen):
    """Timings in ms by formulation: im2col 5, native 1, split as given; the others are slower."""
    times = {"native": 1.0, "split": split_ms, "im2col": 5.0}

    def medians(runs, device):
        return {name: times.get(name, 9) for name in runs}

    monkeypatch.setattr(tuning, "_interleaved_medians", medians)
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), ConvSpec(4, 4, 3, groups=2)
    assert tuning.tune_call("key", "forward", x, weight, spec) == chosen


def test_a_cached_choice_is_used(cache_file):
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3)
    spec = ConvSpec(4, 4, 3, groups=2)
    assert dispatch.choose("forward", x, weight, spec) is not formulations.load("split")
    tuning.cache().put(dispatch.call_key("forward", x, weight, spec), "split")
    assert dispatch.choose("forward", x, weight, spec) is formulations.load("split")
    different_dtype = dispatch.call_key("forward", x.double(), weight.double(), spec)
    assert tuning.cache().get(different_dtype) is None


def test_tuning_disabled_leaves_no_cache(cache_file):
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)
    layer(torch.randn(1, 4, 6, 6)).sum().backward()
    assert not cache_file.exists()


def test_environment_variable_turns_tuning_on(cache_file, monkeypatch):
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)
    layer(torch.randn(1, 4, 6, 6, requires_grad=True)).sum().backward()
    keys = json.loads(cache_file.read_text())["entries"]
    # sum()'s gradient is an expanded (strided) tensor: its input_grad may be a second key beside the contiguous one
    assert {"forward", "input_grad", "weight_grad"} <= {key.split()[0] for key in keys} <= DIRECTIONS


@pytest.mark.parametrize("content", ["{not json", "[]", '{"fingerprint": {}}', "\x00\x01"])
def test_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(cache_file, content):
    cache_file.write_text(content)
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)
    with pytest.warns(UserWarning, match="not a tuning cache"):
        expected = torch.nn.functional.conv2d(x := torch.randn(1, 4, 6, 6), layer.weight, layer.bias, groups=2)
        torch.testing.assert_close(layer(x), expected)
    groupconv.tune(layer, x)
    assert len([key for key in json.loads(cache_file.read_text())["entries"] if not key.startswith("layer ")]) == 3


def test_cache_of_another_version_is_ignored_and_rebuilt(cache_file):
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), ConvSpec(4, 4, 3, groups=2)
    key = dispatch.call_key("forward", x, weight, spec)
    foreign = {**tuning.fingerprint(), "torch": "1.0.0"}
    cache_file.write_text(json.dumps({"fingerprint": foreign, "entries": {key: "split"}}))
    with pytest.warns(UserWarning, match="another machine or version"):
        assert dispatch.choose("forward", x, weight, spec) is not formulations.load("split")
    tuning.cache().put("some other call", "native")
    document = json.loads(cache_file.read_text())
    assert document == {"fingerprint": tuning.fingerprint(), "entries": {"some other call": "native"}}


def test_unknown_formulation_in_the_cache_is_ignored(cache_file):
    cache_file.write_text(json.dumps({"fingerprint": tuning.fingerprint(), "entries": {"k": "fastest_ever"}}))
    with pytest.warns(UserWarning, match="unknown entries"):
        assert tuning.cache().get("k") is None


def _write_entries(path: str, worker: int, count: int) -> None:
    cache = tuning.Cache(tuning.Path(path))
    for i in range(count):
        cache.put(f"worker {worker} call {i}", formulations.NAMES[i % len(formulations.NAMES)])


def test_concurrent_writers_lose_nothing(cache_file):
    workers, count = 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_entries, args=(str(cache_file), w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    entries = json.loads(cache_file.read_text())["entries"]
    assert set(entries) == {f"worker {w} call {i}" for w in range(workers) for i in range(count)}
    assert not list(cache_file.parent.glob(".tune-*"))  # no temporary file left behind


def test_a_formulation_that_disagrees_is_never_chosen(cache_file, monkeypatch):
    split = formulations.load("split")
    monkeypatch.setattr(split, "forward", lambda x, weight, spec: torch.zeros(1, 4, 4, 4))
    monkeypatch.setattr(formulations, "NAMES", ("split", "im2col"))
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), ConvSpec(4, 4, 3, groups=2)
    with pytest.warns(UserWarning, match="'split' disagrees"):
        chosen = tuning.tune_call("k", "forward", x, weight, spec)
    assert chosen == "im2col"


def test_retune_times_cached_calls_again(cache_file):
    layer, x = groupconv.nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 6, 6)
    key = next(call.key for call in groupconv.tune(layer, x).calls if call.direction == "forward")
    tuning.cache().put(key, "split")
    assert convolutions(groupconv.tune(layer, x).calls) == []  # all cached: no call timed (only the layer's route)
    assert tuning.cache().get(key) == "split"
    report = groupconv.tune(layer, x, retune=True)
    assert sorted(call.direction for call in convolutions(report.calls)) == ["forward", "input_grad", "weight_grad"]
    forward = next(call for call in report.calls if call.direction == "forward")
    assert tuning.cache().get(key) == forward.chosen


def test_a_new_cache_entry_changes_the_route_a_layer_takes(cache_file):
    """apply remembers each call's route per cache: a new entry must not meet a stale decision."""
    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=8), torch.randn(1, 8, 6, 6, requires_grad=True)
    for _ in range(2):  # the second call takes the remembered route
        assert layer(x).grad_fn.name() == "ConvolutionBackward0"
    grad_y = torch.empty(1, 8, 4, 4)
    tuning.cache().put(dispatch.call_key("forward", x, layer.weight, layer.spec), "im2col")
    tuning.cache().put(dispatch.call_key("input_grad", grad_y, layer.weight, layer.spec, (6, 6)), "im2col")
    y = layer(x)
    assert y.grad_fn.name() != "ConvolutionBackward0"
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, layer.weight, layer.bias, groups=8))


@pytest.mark.parametrize(("pytorch_s", "groupconv_s", "route"), [(1.0, 2.0, "pytorch"), (2.0, 1.0, "groupconv")])
def test_a_layer_split_across_formulations_is_timed_whole(monkeypatch, pytorch_s, groupconv_s, route):
    """When a layer's directions are not all PyTorch's, its forward+backward is timed both ways,
    and the faster route is cached and taken."""
    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=4, padding=1), torch.randn(2, 8, 6, 6, requires_grad=True)
    spec, grad_y = layer.spec, torch.randn(2, 8, 6, 6)
    tuning.cache().put(dispatch.call_key("forward", x, layer.weight, spec), "im2col")
    tuning.cache().put(dispatch.call_key("input_grad", grad_y, layer.weight, spec, (6, 6)), "native")
    tuning.cache().put(dispatch.call_key("weight_grad", x, grad_y, spec), "native")
    times = {"pytorch": pytorch_s, "groupconv": groupconv_s}
    monkeypatch.setattr(tuning, "_interleaved_medians", lambda runs, device: {name: times[name] for name in runs})
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    y = layer(x)
    layer_keys = [key for key in tuning.cache().entries if key.startswith("layer ")]
    assert [tuning.cache().get(key) for key in layer_keys] == [route]
    assert (y.grad_fn.name() == "ConvolutionBackward0") == (route == "pytorch")
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1, groups=4))


def test_tune_covers_a_training_step_whose_input_needs_no_gradient(monkeypatch):
    """tune runs the model with and without an input gradient, so a training step finds every
    call and layer route it makes already tuned."""
    model, x = small_model(), torch.randn(2, 4, 9, 9)
    first = model[0]  # its forward groupconv's: a layer split between formulations, tuned whole
    tuning.cache().put(dispatch.call_key("forward", x, first.weight, first.spec), "im2col")
    groupconv.tune(model, x)
    untuned = []
    monkeypatch.setattr(tuning, "tune_call", lambda key, *args: untuned.append(key))
    monkeypatch.setattr(tuning, "tune_layer", lambda key, *args: untuned.append(key))
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    y = model.eval()(x)
    y.backward(torch.randn_like(y))
    assert untuned == []


def test_a_channels_first_layer_tuned_to_channels_last_kernels_runs_them_whole(cache_file):
    """Every direction tuned to native_channels_last: PyTorch runs the layer on a channels-last copy,
    and the answer comes back channels-first, the first time and when the route is remembered."""
    layer, x = groupconv.nn.Conv2d(8, 8, 3, groups=4, padding=1), torch.randn(2, 8, 6, 6, requires_grad=True)
    grad_y = torch.empty(2, 8, 6, 6)
    for direction, a, b, *rest in [("forward", x, layer.weight), ("input_grad", grad_y, layer.weight, (6, 6)),
                                   ("weight_grad", x, grad_y)]:  # fmt: skip
        tuning.cache().put(dispatch.call_key(direction, a, b, layer.spec, *rest), "native_channels_last")
    expected = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1, groups=4)
    expected_grad = torch.autograd.grad(expected.sum(), x)
    for _ in range(2):
        y = layer(x)
        assert y.grad_fn.next_functions[0][0].name() == "ConvolutionBackward0"  # then the copy to channels-first
        assert y.is_contiguous()
        torch.testing.assert_close(y, expected.detach())
        torch.testing.assert_close(torch.autograd.grad(y.sum(), x), expected_grad)


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
    ops_calls = []
    compute = dispatch.compute
    monkeypatch.setattr(dispatch, "compute", lambda *args: ops_calls.append(args[0]) or compute(*args))
    for _ in range(2):  # the second call takes the remembered route
        with torch.set_grad_enabled(gradients):
            y, expected = layer(x), oracle(x)
        torch.testing.assert_close(y, expected)
        if gradients:
            got = torch.autograd.grad(y.sum(), (x, layer.weight, layer.bias))
            torch.testing.assert_close(got, torch.autograd.grad(expected.sum(), (x, oracle.weight, oracle.bias)))
    assert ops_calls == ([] if whole else ["input_grad", "input_grad"])


@pytest.mark.parametrize("output_by", ["im2col", "native"])
@pytest.mark.parametrize(("pytorch_s", "groupconv_s", "route"), [(1.0, 2.0, "pytorch"), (2.0, 1.0, "groupconv")])
def test_a_transposed_layer_is_timed_whole(monkeypatch, output_by, pytorch_s, groupconv_s, route):
    """Split across formulations or not (PyTorch's transposed convolution is not the native input
    gradient). Its output is the convolution's input gradient, its input's gradient the convolution's
    forward, its weight's the convolution's weight gradient of (output's gradient, input)."""
    layer = groupconv.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, groups=2, bias=False)  # grad_fn: the conv
    x, grad_y = torch.randn(2, 8, 5, 5, requires_grad=True), torch.randn(2, 4, 9, 9)
    convolution = routing.convolution(layer.spec, layer.weight)
    tuning.cache().put(dispatch.call_key("input_grad", x, layer.weight, convolution, (9, 9)), output_by)
    tuning.cache().put(dispatch.call_key("forward", grad_y, layer.weight, convolution), "native")
    tuning.cache().put(dispatch.call_key("weight_grad", grad_y, x, convolution), "native")
    times = {"pytorch": pytorch_s, "groupconv": groupconv_s}
    monkeypatch.setattr(tuning, "_interleaved_medians", lambda runs, device: {name: times[name] for name in runs})
    monkeypatch.setattr(tuning, "tune_call", lambda *args: pytest.fail(f"a direction was timed: {args[0]}"))
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    y = layer(x)
    layer_keys = [key for key in tuning.cache().entries if key.startswith("layer ")]
    assert [tuning.cache().get(key) for key in layer_keys] == [route]
    assert (y.grad_fn.name() == "ConvolutionBackward0") == (route == "pytorch")
    expected = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad_y), torch.autograd.grad(expected, x, grad_y))


def test_a_layer_and_its_transposed_twin_of_the_same_shapes_keep_their_routes_apart(monkeypatch):
    """Depthwise, stride 1: a convolution and its transposed twin take the same input and weight shapes,
    and the same convolution's directions, but not their layer routes: their outputs are different directions."""
    conv = groupconv.nn.Conv2d(4, 4, 3, groups=4, padding=1, bias=False)
    transposed = groupconv.nn.ConvTranspose2d(4, 4, 3, groups=4, padding=1, bias=False)
    x = torch.randn(1, 4, 6, 6)  # then both layers' gradients are their weight's alone
    for direction, *rest in [("forward",), ("input_grad", (6, 6))]:  # each layer's output: both layers split
        tuning.cache().put(dispatch.call_key(direction, x, conv.weight, conv.spec, *rest), "im2col")
    monkeypatch.setattr(tuning, "tune_call", lambda *args: "native")
    monkeypatch.setattr(tuning, "_interleaved_medians", lambda runs, device: {"pytorch": 2.0, "groupconv": 1.0})
    monkeypatch.setenv("GROUPCONV_TUNE", "1")
    for layer in (conv, transposed):
        layer(x)
    assert sum(key.startswith("layer ") for key in tuning.cache().entries) == 2
