"""torch.compile: groupconv's layers and functions compile whole (fullgraph) and agree with PyTorch's own convolutions.

The oracle is the same model built from ``torch.nn``'s conv layers and ``torch.nn.functional``, with the same weights.
"""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from tiers import fast_every, fast_first

import groupconv
import groupconv.functional as GF
from groupconv import ops


class SmallGroupedNet(torch.nn.Module):
    """conv (groups=2, circular padding) -> ReLU -> depthwise conv -> grouped transposed conv -> a functional conv."""

    def __init__(self, conv, conv_transpose, functional_conv2d):
        super().__init__()
        self.grouped = conv(4, 8, 3, groups=2, padding=1, padding_mode="circular")
        self.depthwise = conv(8, 8, 3, groups=8, stride=2)
        self.up = conv_transpose(8, 4, 3, stride=2, groups=4, output_padding=1)
        self.weight = torch.nn.Parameter(torch.randn(6, 2, 4, 4))
        self.functional_conv2d = functional_conv2d

    def forward(self, x):
        y = self.up(self.depthwise(torch.relu(self.grouped(x))))
        return self.functional_conv2d(y, self.weight, groups=2, padding="same")  # an even kernel: uneven padding


def _groupconv_and_oracle(dtype=torch.float64):
    torch.manual_seed(0)
    model = SmallGroupedNet(groupconv.nn.Conv2d, groupconv.nn.ConvTranspose2d, GF.conv2d).to(dtype)
    oracle = SmallGroupedNet(torch.nn.Conv2d, torch.nn.ConvTranspose2d, F.conv2d).to(dtype)
    oracle.load_state_dict(model.state_dict())
    return model, oracle


def _outputs_and_gradients(model, x):
    x = x.detach().requires_grad_()
    y = model(x)
    grads = torch.autograd.grad(y.square().sum(), [x, *model.parameters()])
    return y, grads


def _assert_matches_oracle(model, oracle, x):
    got_y, got_grads = _outputs_and_gradients(model, x)
    want_y, want_grads = _outputs_and_gradients(oracle, x)
    torch.testing.assert_close(got_y, want_y)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_model_matches_pytorch(backend):
    model, oracle = _groupconv_and_oracle()
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # fullgraph: any graph break is an error
    _assert_matches_oracle(compiled, oracle, torch.randn(2, 4, 9, 9, dtype=torch.float64))


@pytest.mark.slow
def test_compiled_model_with_dynamic_shapes_matches_pytorch():
    model, oracle = _groupconv_and_oracle()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for shape in [(2, 4, 9, 9), (3, 4, 12, 7)]:
        _assert_matches_oracle(compiled, oracle, torch.randn(shape, dtype=torch.float64))


@pytest.mark.slow
def test_compiled_channels_last_model_matches_pytorch():
    model, oracle = _groupconv_and_oracle(torch.float32)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 4, 9, 9).contiguous(memory_format=torch.channels_last)
    _assert_matches_oracle(compiled, oracle, x)
    assert compiled(x).stride() == model(x).stride()  # the fake implementations' layouts are the real ones


@pytest.mark.slow
def test_double_backward_under_the_eager_backend_matches_pytorch():
    """The gradient of a gradient norm. (AOTAutograd backends refuse double backward, for any model.)"""
    model, oracle = _groupconv_and_oracle()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)

    def grad_of_grad_norm(model):
        (grad_x,) = torch.autograd.grad(model(x).square().sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), [x, *model.parameters()])

    for got, want in zip(grad_of_grad_norm(compiled), grad_of_grad_norm(oracle), strict=True):
        torch.testing.assert_close(got, want)


def test_compiled_graph_runs_groupconv_ops_not_pytorch_convolution():
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    model, _ = _groupconv_and_oracle()
    torch.compile(model, backend=recording_backend, fullgraph=True)(torch.randn(1, 4, 9, 9, dtype=torch.float64))
    (graph,) = graphs
    targets = [node.target for node in graph.graph.nodes if node.op == "call_function"]
    assert targets.count(torch.ops.groupconv.conv_forward.default) == 3
    assert targets.count(torch.ops.groupconv.conv_input_grad.default) == 1  # the transposed layer
    assert not {torch.conv2d, torch.convolution, F.conv2d, F.conv_transpose2d} & set(targets)


@pytest.mark.slow
def test_inductor_compiles_a_grouped_layer_and_its_gradients():
    """The default backend (C++ code generated around groupconv's ops); one small layer to keep it quick."""
    torch.manual_seed(0)
    layer = groupconv.nn.Conv2d(4, 8, 3, groups=4, padding=1)
    oracle = torch.nn.Conv2d(4, 8, 3, groups=4, padding=1)
    oracle.load_state_dict(layer.state_dict())
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    _assert_matches_oracle(
        torch.compile(model, fullgraph=True), torch.nn.Sequential(oracle, torch.nn.ReLU()), torch.randn(2, 4, 6, 6)
    )


def _op_cases():
    """(op, args) on a few shapes: 1-D strided and dilated, 2-D uneven "same" padding, channels-last, 3-D."""
    generator = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    specs_and_inputs = [
        (groupconv.ConvSpec(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, dims=1), make(2, 4, 9)),
        (groupconv.ConvSpec(4, 4, 4, padding="same", groups=4), make(1, 4, 6, 5)),
        (
            groupconv.ConvSpec(6, 4, (2, 3), stride=(2, 1), groups=2),
            make(2, 6, 7, 6).to(memory_format=torch.channels_last),
        ),
        (groupconv.ConvSpec(2, 4, 2, padding=1, groups=2, dims=3), make(1, 2, 3, 4, 3)),
    ]
    for spec, x in specs_and_inputs:
        geometry = ops.encode(spec)
        weight = make(*spec.weight_shape)
        grad_y = make(x.shape[0], spec.out_channels, *spec.output_size(x.shape[2:]))
        yield torch.ops.groupconv.conv_forward.default, (x, weight, *geometry)
        yield torch.ops.groupconv.conv_input_grad.default, (grad_y, weight, *geometry, list(x.shape[2:]))
        yield torch.ops.groupconv.conv_weight_grad.default, (x, grad_y, *geometry)


@pytest.mark.parametrize("op, args", fast_first(_op_cases(), 3))  # the 1-D case's three ops
def test_opcheck(op, args):
    """torch.library's own checks: schema, fake implementation against the real one, autograd registration."""
    torch.library.opcheck(op, args)


LAYERS = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


@pytest.mark.parametrize("name", fast_every(LAYERS, 3))  # Conv1d, ConvTranspose1d
def test_compile_warns_nothing(name):
    """Every torch.compile of a layer used to print a Dynamo UserWarning (an lru_cache-wrapped call)."""
    import warnings

    layer = getattr(groupconv.nn, name)(4, 4, 3, groups=2)
    x = torch.randn(1, 4, *(5,) * int(name[-2]))
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch._dynamo.reset()
        compiled(x)


def test_jit_script_says_to_use_compile_or_export():
    model = torch.nn.Sequential(groupconv.nn.Conv2d(4, 8, 3, groups=2))
    with pytest.raises(TypeError, match=r"torch\.jit\.script cannot compile groupconv\.nn\.Conv2d .*torch\.compile"):
        torch.jit.script(model)


def test_jit_trace_records_groupconvs_op_and_the_saved_trace_computes_the_layer(tmp_path):
    """A layer that runs groupconv's kernels (2 channels per group, a large input) traces as its custom op,
    which chooses its formulation per call, so the trace saves, loads, and gives PyTorch's results."""
    layer = groupconv.nn.Conv2d(16, 16, 3, groups=8, padding=1).double()
    oracle = torch.nn.Conv2d(16, 16, 3, groups=8, padding=1).double()
    oracle.load_state_dict(layer.state_dict())
    traced = torch.jit.trace(layer, torch.randn(2, 16, 100, 100, dtype=torch.float64))
    assert "groupconv::conv_forward" in {node.kind() for node in traced.graph.nodes()}
    torch.jit.save(traced, tmp_path / "layer.pt")
    loaded = torch.jit.load(tmp_path / "layer.pt")
    x = torch.randn(3, 16, 60, 60, dtype=torch.float64, requires_grad=True)
    y, expected = loaded(x), oracle(x)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x), torch.autograd.grad(expected.sum(), x))


def test_jit_trace_of_a_transposed_layer_runs_at_other_sizes():
    """The tracer cannot record a transposed layer's output size as the op's int[]: it records PyTorch's
    transposed convolution, which sizes its output per call, as torch.nn's layer traces."""
    layer = groupconv.nn.ConvTranspose2d(8, 4, 3, stride=2, groups=2).double()
    oracle = torch.nn.ConvTranspose2d(8, 4, 3, stride=2, groups=2).double()
    oracle.load_state_dict(layer.state_dict())
    traced = torch.jit.trace(layer, torch.randn(2, 8, 6, 6, dtype=torch.float64))
    x = torch.randn(3, 8, 9, 5, dtype=torch.float64)
    torch.testing.assert_close(traced(x), oracle(x))


@pytest.mark.parametrize(
    "layer",
    [
        groupconv.nn.Conv2d(8, 8, 3, groups=4, padding=1, padding_mode="reflect", bias=True),
        groupconv.nn.ConvTranspose2d(8, 8, 3, groups=4, stride=2),
        groupconv.nn.Conv1d(8, 8, 3, groups=2),
    ],
    ids=["conv2d_reflect", "transposed", "conv1d"],
)
def test_jit_trace_warns_no_more_than_pytorchs_own_layer(layer):
    """Reading sizes for the checks is no data flow: tracing a layer warns as little as torch.nn's does (nothing)."""
    x = torch.randn(1, 8, *(6,) * layer.spec.dims)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(layer, x)
    torch.testing.assert_close(traced(x), layer(x))


def test_fx_symbolic_trace_sees_through_to_pytorchs_convolution():
    """torch.fx keeps torch.nn's modules as leaves and traces into others: a converted model's layers record
    PyTorch's own convolutions, so FX passes (quantization, say) still get a graph."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 8, 3, padding=1, groups=2, padding_mode="reflect"),
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2, groups=4),
    ).double()
    converted = groupconv.nn.convert(torch.nn.Sequential(*map(copy.deepcopy, model)))
    graph = torch.fx.symbolic_trace(converted)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    y, expected = graph(x), model(x)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x), torch.autograd.grad(expected.sum(), x))
