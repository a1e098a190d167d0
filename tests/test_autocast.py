"""torch.autocast: groupconv's layers and functions give the dtypes PyTorch's convolutions give.

The oracle is the same layer from ``torch.nn`` (or ``torch.nn.functional``) under the same autocast.
"""

import pytest
import torch
import torch.nn.functional as F

import groupconv
import groupconv.functional as GF

LAYERS = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]
DTYPES = [torch.bfloat16, torch.float16]


def _pair(name: str):
    """A torch.nn layer and its groupconv twin with the same weights."""
    torch.manual_seed(0)
    oracle = getattr(torch.nn, name)(4, 6, 3, groups=2)
    twin = getattr(groupconv.nn, name)(4, 6, 3, groups=2)
    twin.load_state_dict(oracle.state_dict())
    return oracle, twin


def _run(layer, x, dtype):
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        y = layer(x)
    y.float().square().sum().backward()
    return y, x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYERS)
def test_layers_follow_autocast_like_pytorch(name, dtype):
    oracle, twin = _pair(name)
    dims = int(name[-2])
    x = torch.randn(2, 4, *(5,) * dims)
    want, got = _run(oracle, x, dtype), _run(twin, x, dtype)
    assert [t.dtype for t in got] == [t.dtype for t in want]
    assert got[0].dtype == dtype
    for g, w in zip(got, want, strict=True):  # both round the same low-precision operands
        torch.testing.assert_close(g.float(), w.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_follows_autocast_and_keeps_float64(dtype):
    """Autocast casts float32 operands; float64 ones are not eligible, in PyTorch and here."""
    x, w = torch.randn(1, 4, 6, 6), torch.randn(8, 2, 3, 3)
    with torch.autocast("cpu", dtype=dtype):
        assert GF.conv2d(x, w, groups=2).dtype == F.conv2d(x, w, groups=2).dtype == dtype
        assert GF.conv2d(x.double(), w.double(), groups=2).dtype == torch.float64


def test_autocast_is_not_skipped_by_a_remembered_route():
    """apply remembers a call's route by its shapes and dtypes; a float32 call remembered outside
    autocast must not run in float32 inside it, nor the other way round."""
    conv = groupconv.nn.Conv2d(4, 8, 3, groups=2)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        before = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = conv(x)
        after = conv(x)
    assert (before.dtype, inside.dtype, after.dtype) == (torch.float32, torch.bfloat16, torch.float32)


def test_disabled_autocast_changes_nothing():
    conv = groupconv.nn.Conv2d(4, 8, 3, groups=2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert conv(torch.randn(1, 4, 6, 6)).dtype == torch.float32
