"""Memory layouts: which one a tensor is in, and tensors made in it.

A tensor is channels-last when it is so and not also contiguous (as tensors with one channel
or pixel are), and not one whose strides PyTorch reads as channels-first; a convolution
computes and answers in :func:`convolution_format`, PyTorch's rule.

    >>> import torch
    >>> memory_format(torch.zeros(2, 3, 4, 5).contiguous(memory_format=torch.channels_last))
    torch.channels_last
    >>> memory_format(torch.zeros(2, 3, 4, 5)[..., ::2])
    torch.contiguous_format
"""

from __future__ import annotations

import warnings

import torch

CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}  # by spatial dims: 1-D has none


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """``t``'s channels-last format if it is channels-last, not also contiguous, and PyTorch's
    ``suggest_memory_format`` agrees; else contiguous."""
    channels_last = CHANNELS_LAST.get(t.dim() - 2)
    if (
        channels_last is not None
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=channels_last)
        and (min(t.shape) > 1 or _strides_like_channels_last(t.shape, t.stride()))  # only size 0 or 1 is ambiguous
    ):
        return channels_last
    return torch.contiguous_format


def sizes(t: torch.Tensor) -> tuple[int, ...]:
    """``t.shape`` as ints, for validation: torch.jit's tracer (ONNX export with ``dynamo=False``) gives tensors,
    and torch.export (ONNX export's default) symbolic sizes, checked at the example input's values."""
    if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
        return t.shape  # eager: ints already (a tuple), read at no cost on every call of a small layer
    if torch.compiler.is_dynamo_compiling():
        return tuple(t.shape)  # dynamo traces the checks on symbolic sizes itself
    with warnings.catch_warnings():  # the tracer's warning that a size is read as a constant: a check is one
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(size.node.hint if isinstance(size, torch.SymInt) else int(size) for size in t.shape)


def convolution_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The layout PyTorch's convolution of (batched) ``x`` by ``weight`` computes and answers in: channels-last
    when the strides of either read as channels-last (c10's ``suggest_memory_format``: a depthwise weight's
    too, though it is also contiguous) and its kernel for them computes channels-last; else contiguous."""
    channels_last = CHANNELS_LAST.get(x.dim() - 2)
    if channels_last is None or not _computes_channels_last(x.device.type, x.dtype, x.dim() - 2):
        return torch.contiguous_format
    if any(_strides_like_channels_last(sizes(t), t.stride()) for t in (x, weight) if t.dim() == x.dim()):
        return channels_last
    return torch.contiguous_format


@torch.compiler.assume_constant_result  # torch.compile calls it as it is: it asks torch.backends, which dynamo skips
def _computes_channels_last(device: str, dtype: torch.dtype, dims: int) -> bool:
    """Whether PyTorch's kernel for such operands computes channels-last: cuDNN never in float64; on CPU, every
    2-D kernel, and a 3-D one only on oneDNN, for float32 and for the half types this CPU has instructions for."""
    if device == "cuda":
        return dtype != torch.float64
    if device != "cpu" or dims == 2:
        return True
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if dtype == torch.float16:
        return torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return dtype == torch.float32


def _strides_like_channels_last(sizes, strides) -> bool:
    """c10's ``is_channels_last_strides_2d/3d``: strides rising from the channels through W, H (D) to the
    batch. Where size-1 dims make it ambiguous it says channels-first, as PyTorch does: a channels-last
    weight with such an input sends its kernels down another path (float64 weight gradients wrong in 2.13)."""
    if strides[1] == 0:
        return False
    least = 0
    for d in (1, *range(len(sizes) - 1, 1, -1), 0):
        if sizes[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * sizes[d] if sizes[d] > 1 else strides[d]
    return True


def named(layout: str, dims: int) -> torch.memory_format | None:
    """The memory format called ``layout`` ("channels_first" or "channels_last") for ``dims`` spatial dims;
    None where there is none (1-D channels-last)."""
    return torch.contiguous_format if layout == "channels_first" else CHANNELS_LAST.get(dims)


def empty(shape, like: torch.Tensor, layout: torch.memory_format | None = None) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype and device, in ``like``'s layout unless ``layout``."""
    layout = memory_format(like) if layout is None else layout
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout)
