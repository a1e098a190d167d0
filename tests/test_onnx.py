"""ONNX export: a plain ``torch.onnx.export`` of groupconv layers gives standard Conv / ConvTranspose nodes,
and ONNX Runtime computes what groupconv computes."""

import pytest
import torch

import groupconv
import groupconv.functional as GF

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the default (dynamo) exporter needs it


class Net2d(torch.nn.Module):
    """Grouped (reflect-padded), depthwise (circular) and grouped transposed layers, and a functional conv."""

    convs = ("Conv", 2), ("Conv", 8), ("ConvTranspose", 4), ("Conv", 2)  # (ONNX op, groups), in order

    def __init__(self):
        super().__init__()
        self.grouped = groupconv.nn.Conv2d(4, 8, 3, groups=2, padding=1, padding_mode="reflect")
        self.depthwise = groupconv.nn.Conv2d(8, 8, 3, groups=8, stride=2, padding=1, padding_mode="circular")
        self.up = groupconv.nn.ConvTranspose2d(8, 4, 3, stride=2, groups=4, output_padding=1)
        self.weight = torch.nn.Parameter(torch.randn(6, 2, 4, 4))

    def forward(self, x):
        y = self.up(torch.relu(self.depthwise(torch.relu(self.grouped(x)))))
        return GF.conv2d(y, self.weight, groups=2, padding="same")  # an even kernel: uneven padding

    example_input = staticmethod(lambda: torch.randn(2, 4, 9, 9))


class Net1d3d(torch.nn.Module):
    """A dilated 1-D grouped conv and a strided 3-D grouped transposed conv."""

    convs = ("Conv", 3), ("ConvTranspose", 2)

    def __init__(self):
        super().__init__()
        self.conv1d = groupconv.nn.Conv1d(6, 12, 3, groups=3, dilation=2, padding=2)
        self.conv3d = groupconv.nn.ConvTranspose3d(4, 6, 2, stride=2, groups=2, bias=False)

    def forward(self, x):
        y = self.conv1d(x)  # (N, 12, 8), seen as (N, 4, 3, 2, 4) by the 3-D layer
        return self.conv3d(y.view(y.shape[0], 4, 3, 2, 4))

    example_input = staticmethod(lambda: torch.randn(2, 6, 8))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:You are using the legacy TorchScript")
@pytest.mark.parametrize("net", [Net2d, Net1d3d])
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("ran_before", [False, True], ids=["fresh", "ran-before"])
def test_export_gives_standard_conv_nodes_that_onnxruntime_runs_alike(net, dynamo, ran_before, tmp_path):
    """ran_before: the model ran eagerly first, so groupconv.functional.apply remembers its layers' routes."""
    torch.manual_seed(0)
    model, x = net().eval(), net.example_input()
    path = tmp_path / "model.onnx"
    with torch.no_grad():
        for _ in range(2 if ran_before else 0):
            model(x)
        torch.onnx.export(model, (x,), path, dynamo=dynamo)
        expected = model(x)

    graph = onnx.load(path).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}  # no groupconv (or other custom) nodes
    convs = [node for node in graph.node if "Conv" in node.op_type]
    assert [(node.op_type, _group(node)) for node in convs] == list(net.convs)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


def _group(node) -> int:
    return next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)


def test_export_with_a_dynamic_batch_runs_other_batch_sizes(tmp_path):
    torch.manual_seed(0)
    model, path = Net2d().eval(), tmp_path / "model.onnx"
    torch.onnx.export(model, (Net2d.example_input(),), path, dynamic_shapes=({0: "batch"},))

    x = torch.randn(5, 4, 9, 9)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-5, atol=1e-5)
