"""ConvSpec's arithmetic and the statements of *A Deeper Understanding of Grouped Convolution*,
against independent oracles.

Oracles: torch.nn modules (weight shapes, parameter counts, which groups they accept),
torch.nn.functional (output shapes, 'same' padding), torch.utils.flop_counter
(multiply-accumulates; it counts 2 per MAC and no bias adds) and hand computation.
Nothing here compares groupconv with itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import groupconv
import groupconv.functional as GF
from groupconv import ConvSpec, GroupConvError, max_groups, valid_groups

TORCH_CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
TORCH_CONV_T = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def torch_flops(fn, *args) -> tuple[int, object]:
    """(FlopCounterMode's total, fn's result): the count is 2 per multiply-accumulate."""
    with FlopCounterMode(display=False) as counter:
        result = fn(*args)
    return counter.get_total_flops(), result


def torch_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- The Grouped Convolution post's worked examples -------------------------------------------------


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "groups", "weight_shape"),
    [(4, 8, 1, (8, 4, 3, 3)), (4, 8, 2, (8, 2, 3, 3)), (3, 9, 3, (9, 1, 3, 3))],
)
def test_document_weight_shapes(in_channels, out_channels, groups, weight_shape):
    """`conv.weight.shape` as printed in the Grouped Convolution post, for groupconv, torch.nn and groupconv.nn."""
    spec = ConvSpec(in_channels, out_channels, kernel_size=(3, 3), groups=groups)
    assert spec.weight_shape == weight_shape
    assert tuple(torch.nn.Conv2d(in_channels, out_channels, (3, 3), groups=groups).weight.shape) == weight_shape
    assert tuple(groupconv.nn.Conv2d(in_channels, out_channels, (3, 3), groups=groups).weight.shape) == weight_shape


@pytest.mark.parametrize(("groups", "params"), [(1, 3 * 3 * 4 * 8), (2, 3 * 3 * 2 * 8)])
def test_document_parameter_counts(groups, params):
    """'3 * 3 * 4 * 8 = 288' learnable parameters, and 144 with groups=2 (kernels only)."""
    assert params == {1: 288, 2: 144}[groups]
    spec = ConvSpec(4, 8, (3, 3), groups=groups, bias=False)
    assert spec.num_params == params
    assert torch_params(torch.nn.Conv2d(4, 8, (3, 3), groups=groups, bias=False)) == params
    # with the bias PyTorch adds by default: one more parameter per output channel
    assert ConvSpec(4, 8, (3, 3), groups=groups).num_params == params + 8


def test_document_groups_halve_the_parameters():
    """'the depth of filters will be reduced by factors of 2 (groups=2)'."""
    dense, grouped = ConvSpec(4, 8, 3, groups=1, bias=False), ConvSpec(4, 8, 3, groups=2, bias=False)
    assert grouped.num_params * 2 == dense.num_params
    assert (grouped.in_per_group, grouped.out_per_group) == (2, 4)  # 2 channels per group, 4 filters per group


def test_document_3_to_9_channels_allows_at_most_3_groups():
    """(1, 3, 64, 64) -> (1, 9, 64, 64): at most 3 groups, each channel meeting 9/3 = 3 filters."""
    assert max_groups(3, 9) == 3
    assert valid_groups(3, 9) == [1, 3]
    spec = ConvSpec(3, 9, 3, padding=1, groups=3)
    assert spec.out_per_group == 3
    assert spec.output_shape((1, 3, 64, 64)) == (1, 9, 64, 64)
    assert tuple(F.conv2d(torch.randn(1, 3, 64, 64), torch.randn(9, 1, 3, 3), padding=1, groups=3).shape) == (
        1,
        9,
        64,
        64,
    )


@pytest.mark.parametrize(("in_channels", "out_channels"), [(3, 9), (4, 8), (10, 20), (6, 4), (12, 18), (7, 5)])
def test_valid_groups_are_exactly_those_torch_accepts(in_channels, out_channels):
    """'we must ensure that the number of input channels and the number of output channels
    are both divisible by K': the groups torch.nn.Conv2d accepts are valid_groups, and the
    largest is the gcd."""
    accepted = []
    for groups in range(1, max(in_channels, out_channels) + 2):
        try:
            torch.nn.Conv2d(in_channels, out_channels, 1, groups=groups)
        except ValueError:
            with pytest.raises(GroupConvError):
                ConvSpec(in_channels, out_channels, 1, groups=groups)
        else:
            accepted.append(groups)
            assert ConvSpec(in_channels, out_channels, 1, groups=groups).groups == groups
    assert valid_groups(in_channels, out_channels) == accepted
    assert max_groups(in_channels, out_channels) == max(accepted) == math.gcd(in_channels, out_channels)


@given(st.integers(1, 400), st.integers(1, 400))
@settings(max_examples=200, deadline=None)
def test_max_groups_is_the_gcd_and_valid_groups_the_common_divisors(in_channels, out_channels):
    """'the maximum number of groups you can have is the Greatest Common Divisor'."""
    brute_force = [
        g for g in range(1, min(in_channels, out_channels) + 1) if in_channels % g == 0 and out_channels % g == 0
    ]
    assert valid_groups(in_channels, out_channels) == brute_force  # ascending, no duplicates
    assert max_groups(in_channels, out_channels) == math.gcd(in_channels, out_channels) == brute_force[-1]


def test_document_groups_see_only_their_own_input_channels():
    """'the first of c2/groups kernels will convolute in the first group of input channels':
    changing the second group's input channels leaves the first group's outputs unchanged,
    and changes the second group's."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 4, 8, 8), torch.randn(8, 2, 3, 3)
    x2 = x.clone()
    x2[:, 2:] = torch.randn(1, 2, 8, 8)
    y, y2 = GF.conv2d(x, w, groups=2), GF.conv2d(x2, w, groups=2)
    torch.testing.assert_close(y[:, :4], y2[:, :4], rtol=0, atol=0)
    assert not torch.allclose(y[:, 4:], y2[:, 4:])
    # and the grouped conv is the concatenation of two torch convs on the halves
    halves = [F.conv2d(x[:, 2 * i : 2 * i + 2], w[4 * i : 4 * i + 4]) for i in range(2)]
    torch.testing.assert_close(y, torch.cat(halves, dim=1))


# --- ConvSpec against torch.nn modules and torch.nn.functional, random layers ----------


@st.composite
def layers(draw):
    """(ConvSpec keyword arguments, input shape): any 1/2/3-D layer torch.nn accepts."""
    dims = draw(st.integers(1, 3))
    transposed = draw(st.booleans())
    groups = draw(st.integers(1, 4))
    if draw(st.booleans()):  # depthwise now and then
        cin, cout = groups, groups * draw(st.integers(1, 2))
    else:
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))

    def per_dim(lo, hi):
        tup = draw(st.tuples(*[st.integers(lo, hi)] * dims))
        return (tup[0], (tup[0],) * dims) if draw(st.booleans()) else (tup, tup)  # (as given, per dim)

    kernel_size, _k = per_dim(1, 4 if dims < 3 else 3)
    stride, s = per_dim(1, 3)
    dilation, d = per_dim(1, 3)
    kwargs = dict(kernel_size=kernel_size, stride=stride, dilation=dilation, groups=groups, bias=draw(st.booleans()))
    if transposed:
        kwargs["padding"] = per_dim(0, 3)[0]
        kwargs["output_padding"] = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
    else:
        padding = draw(st.sampled_from(["int", "int", "same", "valid"]))
        if padding == "same":
            kwargs["stride"] = 1
            kwargs["padding"] = "same"
        elif padding == "valid":
            kwargs["padding"] = "valid"
        else:
            kwargs["padding"] = per_dim(0, 3)[0]
        kwargs["padding_mode"] = draw(st.sampled_from(PADDING_MODES))
    batch = draw(st.sampled_from([(), (1,), (2,)]))  # () is unbatched
    size = draw(st.tuples(*[st.integers(1, 8 if dims < 3 else 5)] * dims))
    return dims, transposed, cin, cout, kwargs, (*batch, cin, *size)


def torch_module(dims, transposed, cin, cout, kwargs):
    return (TORCH_CONV_T if transposed else TORCH_CONV)[dims](cin, cout, **kwargs)


@given(layers())
@FAST
def test_weight_bias_and_param_count_match_torch_modules(layer):
    dims, transposed, cin, cout, kwargs, _ = layer
    spec = ConvSpec(cin, cout, transposed=transposed, dims=dims, **kwargs)
    module = torch_module(dims, transposed, cin, cout, kwargs)
    assert spec.weight_shape == tuple(module.weight.shape)
    assert spec.bias_shape == (None if module.bias is None else tuple(module.bias.shape))
    assert spec.num_params == torch_params(module)


@given(layers())
@FAST
def test_output_shape_macs_and_flops_match_torch(layer):
    """Shapes as torch.nn gives them; MACs as FlopCounterMode counts them (flops / 2);
    and where torch refuses the input, ConvSpec refuses it too, with a GroupConvError."""
    dims, transposed, cin, cout, kwargs, input_shape = layer
    spec = ConvSpec(cin, cout, transposed=transposed, dims=dims, **kwargs)
    module = torch_module(dims, transposed, cin, cout, kwargs)
    try:
        flops, out = torch_flops(module, torch.randn(input_shape))
    except (RuntimeError, ValueError):
        out = None
    # torch gives a transposed convolution an empty output where its size formula gives 0;
    # groupconv counts an output size <= 0 as an error, for both kinds of convolution
    if out is None or 0 in out.shape[-dims:]:
        with pytest.raises(GroupConvError):
            spec.output_shape(input_shape)
        with pytest.raises(GroupConvError):
            spec.macs(input_shape)
        return
    assert spec.output_shape(input_shape) == tuple(out.shape)
    assert spec.macs(input_shape) * 2 == flops
    bias_adds = out.numel() if kwargs["bias"] else 0
    assert spec.flops(input_shape) == flops + bias_adds


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_same_padding_output_shape_matches_functional(dims, kernel, dilation):
    """padding='same' keeps the size, even kernels and dilation included, as torch does."""
    size = (7, 6, 5)[:dims]
    spec = ConvSpec(2, 4, kernel, padding="same", dilation=dilation, groups=2, dims=dims)
    x, w = torch.randn(1, 2, *size), torch.randn(4, 1, *(kernel,) * dims)
    expected = tuple(CONV_FN[dims](x, w, padding="same", dilation=dilation, groups=2).shape)
    assert expected == (1, 4, *size)
    assert spec.output_shape(x.shape) == expected
    assert spec.output_shape(x.shape[1:]) == expected[1:]  # unbatched


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_valid_padding_output_shape_matches_functional(dims):
    size = (9, 8, 7)[:dims]
    kernel = (4, 3, 2)[:dims]
    spec = ConvSpec(3, 6, kernel, padding="valid", stride=2, groups=3, dims=dims)
    x, w = torch.randn(2, 3, *size), torch.randn(6, 1, *kernel)
    expected = tuple(CONV_FN[dims](x, w, padding="valid", stride=2, groups=3).shape)
    assert spec.output_shape(x.shape) == expected
    assert spec.padding_pairs == ((0, 0),) * dims


@pytest.mark.parametrize(
    ("stride", "output_padding", "dilation"), [(2, 1, 1), (3, 2, 1), (1, 1, 2), ((2, 3), (1, 0), (1, 2))]
)
def test_transposed_output_padding_shape_matches_functional(stride, output_padding, dilation):
    x, w = torch.randn(1, 4, 5, 6), torch.randn(4, 3, 3, 2)
    out = F.conv_transpose2d(x, w, stride=stride, padding=1, output_padding=output_padding, groups=2, dilation=dilation)
    spec = ConvSpec(
        4,
        6,
        (3, 2),
        stride=stride,
        padding=1,
        output_padding=output_padding,
        groups=2,
        dilation=dilation,
        transposed=True,
    )
    assert spec.output_shape(x.shape) == tuple(out.shape)
    assert spec.output_shape(x.shape[1:]) == tuple(out.shape[1:])


# --- padding_pairs: the 'same' split --------------------------------------------------


def _flat(pairs):
    """F.pad's argument: the last dim's (before, after) first."""
    return [p for pair in reversed(pairs) for p in pair]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(("kernel", "dilation"), [(2, 1), (4, 1), (3, 1), (2, 3), (4, 2), (3, 2), (5, 1)])
def test_same_padding_pairs_are_torch_split(dims, kernel, dilation):
    """F.conv(x, w, padding='same') == F.conv(F.pad(x, padding_pairs), w): the odd extra
    goes after (left = total // 2), exactly as PyTorch splits it."""
    torch.manual_seed(dims * 100 + kernel * 10 + dilation)
    x = torch.randn(1, 2, *(7, 6, 5)[:dims], dtype=torch.float64)
    w = torch.randn(2, 1, *(kernel,) * dims, dtype=torch.float64)
    spec = ConvSpec(2, 2, kernel, padding="same", dilation=dilation, groups=2, dims=dims)
    total = dilation * (kernel - 1)
    assert spec.padding_pairs == ((total // 2, total - total // 2),) * dims  # hand computation
    same = CONV_FN[dims](x, w, padding="same", dilation=dilation, groups=2)
    explicit = CONV_FN[dims](F.pad(x, _flat(spec.padding_pairs)), w, dilation=dilation, groups=2)
    torch.testing.assert_close(explicit, same, rtol=0, atol=1e-12)
    if total % 2:  # the mirror-image split is a different convolution: the check can fail
        swapped = [(hi, lo) for lo, hi in spec.padding_pairs]
        mirrored = CONV_FN[dims](F.pad(x, _flat(swapped)), w, dilation=dilation, groups=2)
        assert not torch.allclose(mirrored, same)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(("kernel", "dilation"), [(2, 1), (4, 1), (3, 2), ((2, 3), (1, 2))])
def test_same_padding_pairs_match_torch_modules_padding_mode(padding_mode, kernel, dilation):
    """torch.nn.Conv2d(padding='same', padding_mode=m) pads with F.pad(x, padding_pairs, m)."""
    torch.manual_seed(1)
    module = torch.nn.Conv2d(
        4, 6, kernel, padding="same", dilation=dilation, groups=2, padding_mode=padding_mode
    ).double()
    spec = ConvSpec(4, 6, kernel, padding="same", dilation=dilation, groups=2, padding_mode=padding_mode)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    expected = F.conv2d(
        F.pad(x, _flat(spec.padding_pairs), mode=mode), module.weight, module.bias, dilation=dilation, groups=2
    )
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)
    assert spec.output_shape(x.shape) == tuple(module(x).shape) == (2, 6, 7, 6)


def test_padding_pairs_for_explicit_padding():
    assert ConvSpec(2, 2, 3, padding=(1, 2)).padding_pairs == ((1, 1), (2, 2))
    assert ConvSpec(2, 2, 3, padding=3, dims=3).padding_pairs == ((3, 3),) * 3
    assert ConvSpec(2, 2, 3, padding="valid", dims=1).padding_pairs == ((0, 0),)


# --- MACs and FLOPs: hand computation and FlopCounterMode --------------------------------


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "groups"),
    [(8, 8, 1), (8, 8, 2), (8, 8, 4), (8, 8, 8), (8, 16, 8), (6, 9, 3)],  # dense ... depthwise
)
@pytest.mark.parametrize("transposed", [False, True])
def test_macs_match_flop_counter(in_channels, out_channels, groups, transposed):
    torch.manual_seed(0)
    x = torch.randn(2, in_channels, 9, 7)
    if transposed:
        w = torch.randn(in_channels, out_channels // groups, 3, 2)
        flops, out = torch_flops(lambda: F.conv_transpose2d(x, w, stride=2, padding=1, groups=groups))
    else:
        w = torch.randn(out_channels, in_channels // groups, 3, 2)
        flops, out = torch_flops(lambda: F.conv2d(x, w, stride=2, padding=1, groups=groups))
    spec = ConvSpec(
        in_channels, out_channels, (3, 2), stride=2, padding=1, groups=groups, transposed=transposed, bias=False
    )
    assert spec.macs(x.shape) * 2 == flops
    assert spec.flops(x.shape) == flops  # no bias: no adds beyond the MACs'
    assert spec.output_shape(x.shape) == tuple(out.shape)


def test_macs_and_flops_by_hand():
    # conv: N * O * prod(L) * Cg * prod(K) = 1 * 8 * 32*32 * 2 * 3*3
    spec = ConvSpec(4, 8, 3, padding=1, groups=2)
    assert spec.macs((1, 4, 32, 32)) == 147456
    assert spec.flops((1, 4, 32, 32)) == 2 * 147456 + 8 * 32 * 32  # + one bias add per output element
    assert ConvSpec(4, 8, 3, padding=1, groups=2, bias=False).flops((1, 4, 32, 32)) == 2 * 147456
    # groups=2 halves the work of groups=1, as it halves the parameters
    assert ConvSpec(4, 8, 3, padding=1, groups=1).macs((1, 4, 32, 32)) == 2 * 147456
    # unbatched counts as a batch of one
    assert spec.macs((4, 32, 32)) == 147456
    # transposed: N * C * prod(S) * Og * prod(K) = 2 * 4 * 5 * 2 * 2 (weight (4, 2, 2))
    assert ConvSpec(4, 4, 2, stride=2, groups=2, transposed=True, dims=1).macs((2, 4, 5)) == 160
    # depthwise 3-D: N * O * prod(L) * 1 * prod(K) = 1 * 3 * (2*2*2) * 1 * 27
    assert ConvSpec(3, 3, 3, groups=3, dims=3).macs((1, 3, 4, 4, 4)) == 648


def test_numpy_sizes_count_exactly():
    """NumPy's int64 wraps at 2**63; the counts are Python ints."""
    huge = (1, 1, np.int64(2**32), np.int64(2**32))
    assert ConvSpec(1, 1, 1, bias=False).macs(huge) == 2**64
    shape = ConvSpec(4, 8, 3, groups=2).output_shape(np.array([1, 4, 32, 32]))
    assert shape == (1, 8, 30, 30) and all(type(size) is int for size in shape)


@pytest.mark.parametrize("input_shape", [5, "1,4,32,32", None])
def test_an_input_shape_that_is_no_sequence_is_named(input_shape):
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        ConvSpec(4, 8, 3).output_shape(input_shape)


def test_document_alexnet_grouping_cuts_macs():
    """Filter groups in a conv layer divide its MACs by the group count (the anchors' AlexNet
    table: groups in conv2/4/5 cut total MACs from 1135M to 724M)."""
    # AlexNet conv2: 96 -> 256 channels, 5x5, padding 2, 27x27 input
    dense = ConvSpec(96, 256, 5, padding=2).macs((1, 96, 27, 27))
    grouped = ConvSpec(96, 256, 5, padding=2, groups=2).macs((1, 96, 27, 27))
    assert dense == 256 * 27 * 27 * 96 * 25 == 447897600
    assert grouped * 2 == dense
    flops, _ = torch_flops(
        lambda: F.conv2d(torch.randn(1, 96, 27, 27), torch.randn(256, 48, 5, 5), padding=2, groups=2)
    )
    assert grouped * 2 == flops


@pytest.mark.parametrize(
    ("channels", "factors"),
    [
        (2**63 - 1, {7: 2, 73: 1, 127: 1, 337: 1, 92737: 1, 649657: 1}),
        (2**61 - 1, {2**61 - 1: 1}),  # a Mersenne prime
        ((2**31 - 1) ** 2, {2**31 - 1: 2}),
        (2147483647 * 4294967291, {2147483647: 1, 4294967291: 1}),  # two primes near 2**31 and 2**32
    ],
)
def test_valid_groups_of_64_bit_channels_come_from_the_factorisation(channels, factors):
    """Listing divisors by trial up to the gcd would never end for these; the divisors' count
    follows from the factorisation (the product of each power + 1) and each divides the gcd."""
    groups = valid_groups(channels, channels)
    assert len(groups) == math.prod(power + 1 for power in factors.values())
    assert groups == sorted(set(groups)) and groups[0] == 1 and groups[-1] == channels
    assert all(channels % g == 0 for g in groups)
    assert set(factors) <= set(groups)


def test_a_one_entry_kernel_size_is_not_expanded_as_a_stride_is():
    """torch.nn builds a (1,) kernel of a Conv2d as a 1-D weight; ATen expands a one-entry stride."""
    with pytest.raises(GroupConvError, match=r"kernel_size=\(1,\) has 1 entries; a 2-D convolution"):
        ConvSpec(2, 2, (1,), dims=2)
    assert ConvSpec(2, 2, 3, stride=(2,)).stride == (2, 2)
