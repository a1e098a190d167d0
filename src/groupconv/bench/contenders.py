"""The contenders timed on each layer, all built from the same weights and input.

    torch_cf      ``torch.nn`` conv, channels-first (the reference every other is checked against)
    torch_cl      the same module and input in channels-last (2-D and 3-D only)
    groupconv     the ``groupconv.nn`` twin, channels-first, tuned on this exact shape
    groupconv_cl  the twin of the channels-last module on the channels-last input, tuned on that layout
    onnxruntime   one standard ONNX ``Conv``/``ConvTranspose`` node in an InferenceSession (forward only)
    openvino      the same ONNX node compiled by OpenVINO's CPU plugin, in float32 (forward only)

Both libraries run in both layouts, each given its input already in that layout (the
conversion untimed), so each layout compares like with like.

Each contender has a ``forward`` call, returning the output, and (except the ONNX peers) a
``forward_backward`` call, returning the input's and weight's gradients of ``(y * ȳ).sum()``
for a fixed random ȳ.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from collections.abc import Callable

import numpy as np
import torch

from .. import nn as gnn
from .. import tuning
from ..errors import GroupConvError
from ..layouts import CHANNELS_LAST
from ..spec import ConvSpec
from .layers import Layer

NAMES = {
    "torch_cf": "PyTorch channels-first",
    "torch_cl": "PyTorch channels-last",
    "groupconv": "groupconv channels-first",
    "groupconv_cl": "groupconv channels-last",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
}


@dataclasses.dataclass
class Contender:
    """A way to compute one layer: ``forward() -> y`` and ``forward_backward() -> (x̄, w̄)`` or None."""

    name: str
    forward: Callable[[], torch.Tensor]
    forward_backward: Callable[[], tuple[torch.Tensor, ...]] | None = None


def build(layer: Layer, tuned: bool = True, seed: int = 0) -> list[Contender]:
    """Every contender for ``layer``, PyTorch channels-first first; weights and data from ``seed``;
    groupconv tuned on the layer's shape and layout unless not ``tuned`` (then it runs its heuristic choice)."""
    torch.manual_seed(seed)
    module = gnn.module_of(layer.spec)
    x = torch.randn(layer.input_shape)
    grad_y = torch.randn(layer.spec.output_shape(layer.input_shape))
    contenders = [
        module_contender("torch_cf", module, x, grad_y),
        twin_contender("groupconv", module, x, grad_y, tuned),
    ]
    memory_format = CHANNELS_LAST.get(layer.spec.dims)
    if memory_format is not None:
        channels_last = copy.deepcopy(module).to(memory_format=memory_format)
        x_cl, grad_y_cl = (tensor.contiguous(memory_format=memory_format) for tensor in (x, grad_y))
        contenders += [
            module_contender("torch_cl", channels_last, x_cl, grad_y_cl),
            twin_contender("groupconv_cl", channels_last, x_cl, grad_y_cl, tuned),
        ]
    onnx_model = onnx_conv_model(layer.spec, module.weight.detach().numpy(), tuple(x.shape), _numpy(module.bias))
    contenders += [onnxruntime_contender(onnx_model, x), openvino_contender(onnx_model, x)]
    return contenders


def twin_contender(name: str, module: torch.nn.Module, x: torch.Tensor, grad_y: torch.Tensor, tuned: bool) -> Contender:
    """The ``groupconv.nn`` twin of a copy of ``module``, tuned first on ``x`` (its shape and layout:
    the tuning cache keeps each layout's choice apart) unless not ``tuned``; calls already in the cache
    (the benchmark's own, fresh for each layer) are not timed again."""
    twin = gnn.convert(copy.deepcopy(module))
    if tuned:
        tuning.tune(twin, x, layout=False)  # the layout is the contender's: each is timed in both
    return module_contender(name, twin, x, grad_y)


def module_contender(name: str, module: torch.nn.Module, x: torch.Tensor, grad_y: torch.Tensor) -> Contender:
    """A module's forward (no autograd) and forward+backward on ``x``; gradients are cleared
    before each call so none accumulates."""
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        leaf.grad = module.weight.grad = None
        module(leaf).backward(grad_y)
        return leaf.grad, module.weight.grad

    return Contender(name, forward, forward_backward)


def onnxruntime_contender(onnx_model: bytes, x: torch.Tensor) -> Contender:
    """An ONNX model run by ONNX Runtime on as many threads as torch uses."""
    onnxruntime = _import("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # ONNX Runtime's idle threads spin by default, stealing the cores from whichever contender runs next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return Contender("onnxruntime", lambda: torch.from_numpy(session.run(None, feed)[0]))


def openvino_contender(onnx_model: bytes, x: torch.Tensor) -> Contender:
    """An ONNX model compiled by OpenVINO's CPU plugin for latency, in float32, on as many threads as torch uses."""
    openvino = _import("openvino")
    core = openvino.Core()
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",  # it would otherwise run bf16 on a CPU that has it
    }
    compiled = core.compile_model(core.read_model(model=onnx_model, weights=b""), "CPU", config)
    request, output, feed = compiled.create_infer_request(), compiled.output(0), {0: x.numpy()}
    return Contender("openvino", lambda: torch.from_numpy(request.infer(feed)[output].copy()))


def onnx_conv_model(
    spec: ConvSpec, weight: np.ndarray, input_shape: tuple[int, ...], bias: np.ndarray | None = None
) -> bytes:
    """A serialized ONNX model of one ``Conv`` (or ``ConvTranspose``) node: input ``x``,
    output ``y``, the weight (and bias) initializers. Zero padding only, as ONNX's conv has."""
    onnx = _import("onnx")
    TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper

    attributes = dict(
        group=spec.groups,
        kernel_shape=list(spec.kernel_size),
        strides=list(spec.stride),
        dilations=list(spec.dilation),
        pads=[lo for lo, _ in spec.padding_pairs] + [hi for _, hi in spec.padding_pairs],
    )
    if spec.transposed:
        attributes["output_padding"] = list(spec.output_padding)
    initializers = {"w": weight} if bias is None else {"w": weight, "b": bias}
    node = helper.make_node("ConvTranspose" if spec.transposed else "Conv", ["x", *initializers], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "grouped_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(spec.output_shape(input_shape)))],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(array), name) for name, array in initializers.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().numpy()


def _import(name: str):
    """ONNX, ONNX Runtime and OpenVINO are the ``bench`` extra's: say how to install them when missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise GroupConvError(
            f"groupconv bench times ONNX Runtime and OpenVINO too, and {name} is not installed; "
            "install it with: pip install 'groupconv[bench]'"
        ) from None
