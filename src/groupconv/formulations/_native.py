"""groupconv's C++ operators (``torch.ops.groupconv_native``), loaded once, with their fake kernels.

The extension ``groupconv._C`` is built when the package is installed (setup.py). If it is
missing (no compiler at install time, a source checkout never built), :data:`reason` says why in
one line, :data:`ops` is None, and the formulations that need it support nothing, so groupconv
runs on PyTorch's kernels.
"""

from __future__ import annotations

import torch

from ..layouts import CHANNELS_LAST, memory_format

ops = None
reason: str | None = None
isa: str | None = None  # the instruction set the kernels run with: AVX512, AVX2 or DEFAULT

try:
    from .. import _C
except (ImportError, OSError) as error:  # OSError: a stale build against another torch
    reason = f"groupconv's native kernels are off ({type(error).__name__}: {error}); reinstall groupconv to build them"
else:
    if hasattr(torch.ops.groupconv_native, "relayout"):  # the newest operator: absent from an older build
        ops = torch.ops.groupconv_native
        isa = _C.isa
    else:
        reason = "groupconv's native kernels are off (an older build lacks relayout); reinstall groupconv to build them"


def _conv_size(size: int, before: int, after: int, dilation: int, kernel: int, stride: int) -> int:
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


if ops is not None:

    @torch.library.register_fake("groupconv_native::conv_forward")
    def _forward_fake(x, weight, stride, padding_before, padding_after, dilation, groups):
        torch._check(x.dim() == weight.dim(), lambda: "conv_forward: input and weight ranks differ")
        torch._check(weight.shape[1] * groups == x.shape[1], lambda: "conv_forward: channels do not match groups")
        size = [
            _conv_size(*args)
            for args in zip(x.shape[2:], padding_before, padding_after, dilation, weight.shape[2:], stride)
        ]
        return x.new_empty((x.shape[0], weight.shape[0], *size)).contiguous(memory_format=memory_format(x))

    @torch.library.register_fake("groupconv_native::conv_input_grad")
    def _input_grad_fake(grad_y, weight, input_size, stride, padding_before, padding_after, dilation, groups):
        torch._check(grad_y.dim() == weight.dim(), lambda: "conv_input_grad: grad_output and weight ranks differ")
        shape = (grad_y.shape[0], weight.shape[1] * groups, *input_size)
        return grad_y.new_empty(shape).contiguous(memory_format=memory_format(grad_y))

    @torch.library.register_fake("groupconv_native::relayout")
    def _relayout_fake(x, channels_last):
        torch._check(x.dim() in (4, 5), lambda: "relayout: input needs 4 or 5 dimensions")
        layout = CHANNELS_LAST[x.dim() - 2] if channels_last else torch.contiguous_format
        return torch.empty_like(x, memory_format=layout)

    # the same values in other strides: the gradient passes through as it is
    torch.library.register_autograd("groupconv_native::relayout", lambda ctx, grad: (grad, None))

    @torch.library.register_fake("groupconv_native::conv_weight_grad")
    def _weight_grad_fake(x, grad_y, kernel_size, stride, padding_before, padding_after, dilation, groups):
        torch._check(x.dim() == grad_y.dim(), lambda: "conv_weight_grad: input and grad_output ranks differ")
        return x.new_empty((grad_y.shape[1], x.shape[1] // groups, *kernel_size))


def relayout(t: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``t`` in ``layout`` (channels-last or contiguous), by the kernels' transpose where it applies: CPU float32
    or float64 in 2-D or 3-D layout, outside ``torch.compile``. PyTorch's own copy between the two layouts runs at
    a fraction of a plain copy's rate (docs/design.md, "Planner")."""
    if t.is_contiguous(memory_format=layout):
        return t  # a route in the input's own layout: no copy, no op call, no autograd node
    fast = (
        ops is not None
        and t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and t.dim() in (4, 5)
        and not torch.compiler.is_compiling()
    )
    return ops.relayout(t, layout is not torch.contiguous_format) if fast else t.contiguous(memory_format=layout)
