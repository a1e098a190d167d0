"""The block cache behind numba_direct's outputs: reuse only once every tensor on a block is gone."""

import pytest
import torch

from groupconv.formulations import _memory

SHAPE = (8, 256, 28, 28)  # 6.4 MB of float32: a block


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(_memory, "_blocks", {})
    monkeypatch.setattr(_memory, "_cached", [0])


def test_a_freed_output_block_is_handed_out_again():
    first = _memory.empty(SHAPE, torch.float32)
    address = first.data_ptr()
    del first
    assert _memory.cached_bytes() == 4 * 8 * 256 * 28 * 28
    again = _memory.empty(SHAPE, torch.float32)
    assert again.data_ptr() == address
    assert _memory.cached_bytes() == 0


def test_a_block_is_not_reused_while_a_view_of_it_lives():
    first = _memory.empty(SHAPE, torch.float32)
    first.fill_(1.0)
    view = first[1:3].transpose(0, 1)
    del first
    second = _memory.empty(SHAPE, torch.float32)
    second.fill_(2.0)
    assert torch.all(view == 1.0)  # untouched by the second output
    del view
    assert _memory.empty(SHAPE, torch.float32).data_ptr() != second.data_ptr()


def test_the_cache_holds_at_most_its_limit(monkeypatch):
    monkeypatch.setattr(_memory, "CACHE_BYTES", 10 << 20)  # room for one 6.4 MB block
    outputs = [_memory.empty(SHAPE, torch.float32) for _ in range(3)]
    del outputs
    assert _memory.cached_bytes() == 4 * 8 * 256 * 28 * 28


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3), SHAPE, (0, 4)])
def test_outputs_have_the_shape_and_dtype_asked_for(shape, dtype):
    tensor = _memory.empty(shape, dtype)
    assert tensor.shape == shape and tensor.dtype == dtype and tensor.is_contiguous()
    tensor.fill_(3.0)  # writable
    assert torch.all(tensor == 3.0)


def test_small_outputs_bypass_the_cache():
    del_me = _memory.empty((4, 4), torch.float32)
    del del_me
    assert _memory.cached_bytes() == 0
