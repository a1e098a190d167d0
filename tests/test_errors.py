"""Every bad input gets a GroupConvError (a ValueError), an OperandTypeError or a TypeError whose message names
the argument, its value and the fix, through every frontend where the input applies:
ConvSpec, groupconv.functional's conv*d / conv_transpose*d, and groupconv.nn's modules
(at construction and in forward). Never a RuntimeError or IndexError from inside the computation.

NaN and inf in the data are not errors: they propagate as in torch.nn.functional.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import groupconv
import groupconv.functional as GF
from groupconv import ConvSpec, GroupConvError

FUNCTIONS = {
    (1, False): GF.conv1d,
    (2, False): GF.conv2d,
    (3, False): GF.conv3d,
    (1, True): GF.conv_transpose1d,
    (2, True): GF.conv_transpose2d,
    (3, True): GF.conv_transpose3d,
}
TORCH_FUNCTIONS = {
    (1, False): F.conv1d,
    (2, False): F.conv2d,
    (3, False): F.conv3d,
    (1, True): F.conv_transpose1d,
    (2, True): F.conv_transpose2d,
    (3, True): F.conv_transpose3d,
}
MODULES = {
    (1, False): groupconv.nn.Conv1d,
    (2, False): groupconv.nn.Conv2d,
    (3, False): groupconv.nn.Conv3d,
    (1, True): groupconv.nn.ConvTranspose1d,
    (2, True): groupconv.nn.ConvTranspose2d,
    (3, True): groupconv.nn.ConvTranspose3d,
}
TORCH_MODULES = {
    (1, False): torch.nn.Conv1d,
    (2, False): torch.nn.Conv2d,
    (3, False): torch.nn.Conv3d,
    (1, True): torch.nn.ConvTranspose1d,
    (2, True): torch.nn.ConvTranspose2d,
    (3, True): torch.nn.ConvTranspose3d,
}


def _usable_groups(groups) -> int:
    """``groups`` where the test can build a weight for it, else 1 (the call will reject it)."""
    ok = isinstance(groups, int) and not isinstance(groups, bool) and groups > 0
    return groups if ok else 1


def call(frontend: str, *, dims=2, transposed=False, cin=4, cout=8, kernel_size=3, size=8, **layer):
    """Build (and for 'functional', run) a layer through one frontend.

    'spec': ConvSpec(...); 'nn': groupconv.nn's module, run on an input (1, cin, size...) (as torch.nn does, it
    checks some arguments, a transposed layer's output_padding, only then); 'functional': groupconv.functional on
    such an input and a weight of the layer's shape (kernel_size an int).
    """
    if frontend == "spec":
        return ConvSpec(cin, cout, kernel_size, dims=dims, transposed=transposed, **layer)
    if frontend == "nn":
        return MODULES[dims, transposed](cin, cout, kernel_size, **layer)(torch.randn(1, cin, *(size,) * dims))
    assert "padding_mode" not in layer and isinstance(kernel_size, int)
    groups = _usable_groups(layer.get("groups", 1))
    kernel = (kernel_size,) * dims
    weight = torch.randn(cin, cout // groups, *kernel) if transposed else torch.randn(cout, cin // groups, *kernel)
    return FUNCTIONS[dims, transposed](torch.randn(1, cin, *(size,) * dims), weight, **layer)


CONSTRUCT = ["spec", "nn", "functional"]


def message(text: str) -> str:
    return re.escape(text)


def test_group_conv_error_is_a_value_error():
    assert issubclass(GroupConvError, ValueError)
    with pytest.raises(ValueError, match="groups=0 is invalid"):  # code written for PyTorch's errors
        ConvSpec(4, 8, 3, groups=0)


# --- Layer arguments: every frontend ---------------------------------------------------

ARGUMENT_CASES = [
    # (id, layer arguments, exception, message)
    ("groups=0", dict(groups=0), GroupConvError, "groups=0 is invalid: groups must be an int >= 1"),
    ("groups=-2", dict(groups=-2), GroupConvError, "groups=-2 is invalid: groups must be an int >= 1"),
    ("groups=2.0", dict(groups=2.0), TypeError, "groups must be an int, got 2.0 of type float"),
    ("groups='2'", dict(groups="2"), TypeError, "groups must be an int, got '2' of type str"),
    ("groups=True", dict(groups=True), TypeError, "groups must be an int, got True of type bool"),
    ("groups=None", dict(groups=None), TypeError, "groups must be an int, got None of type NoneType"),
    ("stride=0", dict(stride=0), GroupConvError, "stride=0 is invalid: stride must be an int >= 1"),
    ("stride=-1", dict(stride=-1), GroupConvError, "stride=-1 is invalid: stride must be an int >= 1"),
    ("stride=(1,0)", dict(stride=(1, 0)), GroupConvError, "stride[1]=0 is invalid: stride[1] must be an int >= 1"),
    ("stride=1.5", dict(stride=1.5), TypeError, "stride must be an int, got 1.5 of type float"),
    ("dilation=0", dict(dilation=0), GroupConvError, "dilation=0 is invalid: dilation must be an int >= 1"),
    (
        "dilation=(2,-1)",
        dict(dilation=(2, -1)),
        GroupConvError,
        "dilation[1]=-1 is invalid: dilation[1] must be an int >= 1",
    ),
    ("padding=-1", dict(padding=-1), GroupConvError, "padding=-1 is invalid: padding must be an int >= 0"),
    (
        "padding=(0,-2)",
        dict(padding=(0, -2)),
        GroupConvError,
        "padding[1]=-2 is invalid: padding[1] must be an int >= 0",
    ),
    ("padding=None", dict(padding=None), TypeError, "padding must be an int, got None of type NoneType"),
    (
        "stride-too-long",
        dict(stride=(1, 1, 1)),
        GroupConvError,
        "stride=(1, 1, 1) has 3 entries; a 2-D convolution needs one int or 2 ints",
    ),
    (
        "dilation-list-too-long",
        dict(dilation=[1, 1, 1]),
        GroupConvError,
        "dilation=(1, 1, 1) has 3 entries; a 2-D convolution needs one int or 2 ints",
    ),
    ("stride-empty", dict(stride=()), GroupConvError, "stride=() has 0 entries; a 2-D convolution needs"),
]
CONV_ARGUMENT_CASES = [
    (
        "padding='full'",
        dict(padding="full"),
        GroupConvError,
        "padding='full' is not supported; use an int, 2 ints, 'same' or 'valid'",
    ),
    ("padding='SAME'", dict(padding="SAME"), GroupConvError, "padding='SAME' is not supported; use an int, 2 ints"),
    (
        "same-stride-2",
        dict(padding="same", stride=2),
        GroupConvError,
        "padding='same' is not supported for strided convolutions (stride=(2, 2)); use stride=1 or an explicit padding",
    ),
    (
        "same-stride-(1,2)",
        dict(padding="same", stride=(1, 2)),
        GroupConvError,
        "padding='same' is not supported for strided convolutions (stride=(1, 2))",
    ),
]
TRANSPOSED_ARGUMENT_CASES = [
    (
        "output_padding=stride",
        dict(stride=2, output_padding=2),
        GroupConvError,
        "output_padding=(2, 2) must be smaller than either stride=(2, 2) or dilation=(1, 1) in every dim, "
        "but dim 0 has 2; use output_padding < 2",
    ),
    (
        "output_padding-one-dim",
        dict(output_padding=(0, 1)),
        GroupConvError,
        "output_padding=(0, 1) must be smaller than either stride=(1, 1) or dilation=(1, 1) in every dim, "
        "but dim 1 has 1",
    ),
    (
        "output_padding=dilation",
        dict(stride=(2, 3), dilation=(3, 2), output_padding=(1, 3)),
        GroupConvError,
        "but dim 1 has 3; use output_padding < 3",
    ),
    (
        "output_padding=-1",
        dict(output_padding=-1),
        GroupConvError,
        "=-1 is invalid: output_padding",  # the module has it as (-1, -1), so says output_padding[0]
    ),
    (
        "output_padding-too-long",
        dict(output_padding=(0, 0, 0)),
        GroupConvError,
        "output_padding=(0, 0, 0) has 3 entries; a 2-D convolution needs one int or 2 ints",
    ),
    (
        "padding='same'",
        dict(padding="same"),
        GroupConvError,
        "padding='same' is not supported for a transposed convolution; give padding as int(s)",
    ),
    (
        "padding='valid'",
        dict(padding="valid"),
        GroupConvError,
        "padding='valid' is not supported for a transposed convolution; give padding as int(s)",
    ),
]


def _ids(cases):
    return [case[0] for case in cases]


@pytest.mark.parametrize("frontend", CONSTRUCT)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(("case", "layer", "error", "text"), ARGUMENT_CASES, ids=_ids(ARGUMENT_CASES))
def test_bad_argument(frontend, transposed, case, layer, error, text):
    with pytest.raises(error, match=message(text)):
        call(frontend, transposed=transposed, **layer)


@pytest.mark.parametrize("frontend", CONSTRUCT)
@pytest.mark.parametrize(("case", "layer", "error", "text"), CONV_ARGUMENT_CASES, ids=_ids(CONV_ARGUMENT_CASES))
def test_bad_convolution_argument(frontend, case, layer, error, text):
    with pytest.raises(error, match=message(text)):
        call(frontend, **layer)


@pytest.mark.parametrize("frontend", CONSTRUCT)
@pytest.mark.parametrize(
    ("case", "layer", "error", "text"), TRANSPOSED_ARGUMENT_CASES, ids=_ids(TRANSPOSED_ARGUMENT_CASES)
)
def test_bad_transposed_argument(frontend, case, layer, error, text):
    with pytest.raises(error, match=message(text)):
        call(frontend, transposed=True, **layer)


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("frontend", CONSTRUCT)
def test_tuple_of_the_wrong_length_names_the_dims(dims, frontend):
    with pytest.raises(GroupConvError, match=message(f"stride=(1, 1) has 2 entries; a {dims}-D convolution needs")):
        call(frontend, dims=dims, stride=(1, 1), size=6)
    with pytest.raises(GroupConvError, match=message(f"padding=(1, 1) has 2 entries; a {dims}-D convolution needs")):
        call(frontend, dims=dims, transposed=True, padding=(1, 1), size=6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("argument", ["stride", "padding", "dilation"])
def test_a_one_entry_sequence_stands_for_every_dim_as_in_pytorch(argument, transposed):
    x, w = torch.randn(1, 4, 9, 9), torch.randn(4, 2, 3, 3)
    kwargs = {argument: [2], "groups": 2}
    ours, theirs = FUNCTIONS[2, transposed], TORCH_FUNCTIONS[2, transposed]
    torch.testing.assert_close(ours(x, w, **kwargs), theirs(x, w, **kwargs))
    reference = TORCH_MODULES[2, transposed](4, 4, 3, **{argument: (2,)}, groups=2)
    layer = MODULES[2, transposed](4, 4, 3, **{argument: (2,)}, groups=2)
    layer.load_state_dict(reference.state_dict())
    torch.testing.assert_close(layer(x), reference(x))


@pytest.mark.parametrize("frontend", ["spec", "nn"])
@pytest.mark.parametrize(
    ("kernel_size", "error", "text"),
    [
        (0, GroupConvError, "kernel_size=0 is invalid: kernel_size must be an int >= 1"),
        ((3, 0), GroupConvError, "kernel_size[1]=0 is invalid"),
        ((3, 3, 3), GroupConvError, "kernel_size=(3, 3, 3) has 3 entries; a 2-D convolution needs one int or 2 ints"),
        ("3", TypeError, "kernel_size must be an int, got '3' of type str"),
        (3.0, TypeError, "kernel_size must be an int, got 3.0 of type float"),
    ],
)
def test_bad_kernel_size(frontend, kernel_size, error, text):
    """kernel_size is an argument of ConvSpec and the modules (functional reads it from the weight)."""
    with pytest.raises(error, match=message(text)):
        call(frontend, kernel_size=kernel_size)


@pytest.mark.parametrize("frontend", ["spec", "nn"])
@pytest.mark.parametrize("padding_mode", ["mirror", "Zeros", "constant", ""])
def test_unknown_padding_mode(frontend, padding_mode):
    text = f"padding_mode={padding_mode!r} is not supported; use one of 'zeros', 'reflect', 'replicate', 'circular'"
    with pytest.raises(GroupConvError, match=message(text)):
        call(frontend, padding_mode=padding_mode)


@pytest.mark.parametrize("frontend", ["spec", "nn"])
@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_transposed_needs_zeros_padding_mode(frontend, padding_mode, dims):
    text = f"padding_mode={padding_mode!r} is not supported for a transposed convolution; use 'zeros'"
    with pytest.raises(GroupConvError, match=message(text)):
        call(frontend, dims=dims, transposed=True, padding_mode=padding_mode)


def test_output_padding_is_only_for_transposed():
    with pytest.raises(GroupConvError, match=message("output_padding=(1, 1) is only for transposed convolution")):
        ConvSpec(4, 8, 3, output_padding=1)


# --- Channels and groups ------------------------------------------------------------


@pytest.mark.parametrize("frontend", ["spec", "nn"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(
    ("cin", "cout", "groups", "text"),
    [
        (
            10,
            20,
            4,
            "groups=4 is invalid: in_channels=10 is not divisible by 4; nearest valid: 2 or 5 "
            "(valid groups: 1, 2, 5, 10; the largest is gcd(10, 20) = 10)",
        ),
        (
            4,
            6,
            4,
            "groups=4 is invalid: out_channels=6 is not divisible by 4; nearest valid: 2 (valid groups: 1, 2; "
            "the largest is gcd(4, 6) = 2)",
        ),
        (
            3,
            9,
            9,
            "groups=9 is invalid: in_channels=3 is not divisible by 9; nearest valid: 3 (valid groups: 1, 3; "
            "the largest is gcd(3, 9) = 3)",
        ),
        (
            7,
            5,
            2,
            "groups=2 is invalid: in_channels=7 and out_channels=5 are not divisible by 2; nearest valid: 1 "
            "(valid groups: 1; the largest is gcd(7, 5) = 1)",
        ),
    ],
)
def test_channels_not_divisible_by_groups_lists_valid_groups(frontend, transposed, cin, cout, groups, text):
    with pytest.raises(GroupConvError, match=message(text)):
        call(frontend, transposed=transposed, cin=cin, cout=cout, groups=groups)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_functional_weight_not_divisible_by_groups(dims):
    """Functional calls read the channels from the weight, whose dim 0 (out_channels for a convolution,
    in_channels for a transposed one) must split into groups: PyTorch's first check, and its wording."""
    k = (1,) * dims
    for transposed, text in (
        (False, "Given groups=2, weight of size [7, 2, {k}] is not divisible by 2 at dimension 0 (out_channels=7)"),
        (True, "Given groups=2, weight of size [7, 3, {k}] is not divisible by 2 at dimension 0 (in_channels=7)"),
    ):
        x, weight = torch.randn(1, 7 if transposed else 4, *(3,) * dims), torch.randn(7, 3 if transposed else 2, *k)
        with pytest.raises(RuntimeError, match="divisible by 2 at dimension 0"):
            TORCH_FUNCTIONS[dims, transposed](x, weight, groups=2)
        fix = "; use a group count that divides 7 (nearest: 1 or 7)"
        with pytest.raises(GroupConvError, match=message(text.format(k=", ".join("1" * dims)) + fix)):
            FUNCTIONS[dims, transposed](x, weight, groups=2)


CHANNEL_MISMATCH = (
    "Given groups=2, weight of size [8, 2, 3, 3], expected input[1, 6, 32, 32] to have 4 channels, "
    "but got 6 channels instead"
)


def test_input_channels_mismatch_functional_has_pytorch_wording():
    with pytest.raises(GroupConvError, match=message(CHANNEL_MISMATCH)):
        GF.conv2d(torch.randn(1, 6, 32, 32), torch.randn(8, 2, 3, 3), groups=2)
    # the very message PyTorch gives (there a RuntimeError)
    with pytest.raises(RuntimeError, match=message(CHANNEL_MISMATCH)):
        F.conv2d(torch.randn(1, 6, 32, 32), torch.randn(8, 2, 3, 3), groups=2)


def test_input_channels_mismatch_nn_forward():
    conv = groupconv.nn.Conv2d(4, 8, 3, groups=2)
    with pytest.raises(GroupConvError, match=message(CHANNEL_MISMATCH)):
        conv(torch.randn(1, 6, 32, 32))
    with pytest.raises(
        GroupConvError,
        match=message(
            "Given groups=2, weight of size [8, 2, 3, 3], expected input[6, 32, 32] to have 4 channels, but got 6"
        ),
    ):
        conv(torch.randn(6, 32, 32))  # unbatched


@pytest.mark.parametrize("method", ["output_shape", "macs", "flops"])
def test_input_channels_mismatch_spec(method):
    spec = ConvSpec(4, 8, 3, groups=2)
    with pytest.raises(GroupConvError, match=message(CHANNEL_MISMATCH)):
        getattr(spec, method)((1, 6, 32, 32))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("frontend", ["functional", "nn"])
def test_input_channels_mismatch_transposed_and_other_dims(dims, frontend):
    x = torch.randn(2, 6, *(4,) * dims)
    weight_shape = [4, 3, *(2,) * dims]
    text = (
        f"Given groups=2, weight of size {weight_shape}, expected input{list(x.shape)} to have 4 channels, "
        f"but got 6 channels instead"
    )
    with pytest.raises(GroupConvError, match=message(text)):
        if frontend == "functional":
            FUNCTIONS[dims, True](x, torch.randn(weight_shape), groups=2)
        else:
            MODULES[dims, True](4, 6, 2, groups=2)(x)


# --- The input: rank, size -------------------------------------------------------------

RANK_TEXT = {
    1: "a 1-D convolution expects 3 (N, C, L) or 2 unbatched (C, L)",
    2: "a 2-D convolution expects 4 (N, C, H, W) or 3 unbatched (C, H, W)",
    3: "a 3-D convolution expects 5 (N, C, D, H, W) or 4 unbatched (C, D, H, W)",
}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("frontend", ["spec", "nn", "functional"])
@pytest.mark.parametrize("extra", [-2, 1, 2])
def test_wrong_number_of_input_dimensions(dims, transposed, frontend, extra):
    shape = [1, 4, 5, 5, 5, 5, 5][: dims + 2 + extra] if dims + 2 + extra > 0 else []
    text = f"input of size {shape} has {len(shape)} dimensions; {RANK_TEXT[dims]}"
    with pytest.raises(GroupConvError, match=message(text)):
        if frontend == "spec":
            ConvSpec(4, 4, 1, dims=dims, transposed=transposed).output_shape(shape)
        elif frontend == "nn":
            MODULES[dims, transposed](4, 4, 1)(torch.randn(shape))
        else:
            FUNCTIONS[dims, transposed](torch.randn(shape), torch.randn(4, 4, *(1,) * dims))


def test_scalar_input():
    with pytest.raises(GroupConvError, match=message("input of size [] has 0 dimensions; " + RANK_TEXT[2])):
        GF.conv2d(torch.tensor(1.0), torch.randn(8, 4, 3, 3))


OUTPUT_TOO_SMALL = (
    "input of size [1, 4, 2, 2] gives an output of size 0 in spatial dim 0 (input 2, padding (0, 0), "
    "kernel reach 3 = dilation*(kernel_size-1)+1, stride 1); use a larger input, more padding or a smaller kernel"
)


@pytest.mark.parametrize("frontend", ["spec", "nn", "functional"])
def test_output_size_not_positive(frontend):
    x = torch.randn(1, 4, 2, 2)
    with pytest.raises(GroupConvError, match=message(OUTPUT_TOO_SMALL)):
        if frontend == "spec":
            ConvSpec(4, 8, 3, groups=2).output_shape(x.shape)
        elif frontend == "nn":
            groupconv.nn.Conv2d(4, 8, 3, groups=2)(x)
        else:
            GF.conv2d(x, torch.randn(8, 2, 3, 3), groups=2)


def test_output_size_not_positive_with_dilation_and_later_dim():
    x = torch.randn(1, 2, 9, 4)
    with pytest.raises(
        GroupConvError,
        match=message("gives an output of size 0 in spatial dim 1 (input 4, padding (0, 0), kernel reach 5"),
    ):
        GF.conv2d(x, torch.randn(2, 2, 3, 3), dilation=2)
    with pytest.raises(GroupConvError, match=message("output of size 0 in spatial dim 0")):
        ConvSpec(2, 2, 3, dilation=2, dims=1).macs((1, 2, 4))


@pytest.mark.parametrize(("length", "size"), [(1, -1), (2, 0)])
@pytest.mark.parametrize("frontend", ["spec", "nn", "functional"])
def test_transposed_output_size_not_positive(frontend, length, size):
    """(S - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 <= 0."""
    x = torch.randn(1, 2, length)
    text = (
        f"input of size [1, 2, {length}] gives an output of size {size} in spatial dim 0 "
        f"(input {length}, padding (1, 1), kernel reach 1"
    )
    with pytest.raises(GroupConvError, match=message(text)):
        if frontend == "spec":
            ConvSpec(2, 2, 1, padding=1, transposed=True, dims=1).output_shape(x.shape)
        elif frontend == "nn":
            groupconv.nn.ConvTranspose1d(2, 2, 1, padding=1)(x)
        else:
            GF.conv_transpose1d(x, torch.randn(2, 2, 1), padding=1)


def test_transposed_output_size_hint_points_the_right_way():
    with pytest.raises(GroupConvError, match=message("use a larger input, less padding or a larger kernel")):
        GF.conv_transpose1d(torch.randn(1, 2, 1), torch.randn(2, 2, 1), padding=1)


@pytest.mark.parametrize("frontend", ["spec", "nn", "functional"])
def test_empty_spatial_input(frontend):
    x = torch.randn(1, 4, 0, 8)
    with pytest.raises(GroupConvError, match=message("input of size [1, 4, 0, 8] is empty in spatial dim 0")):
        if frontend == "spec":
            ConvSpec(4, 8, 3, padding=1).output_shape(x.shape)
        elif frontend == "nn":
            groupconv.nn.Conv2d(4, 8, 3, padding=1)(x)
        else:
            GF.conv2d(x, torch.randn(8, 4, 3, 3), padding=1)


@pytest.mark.parametrize(
    ("shape", "error", "text"),
    [
        ((-1, 4, 8, 8), GroupConvError, "-1 is invalid"),
        ((1, 4, 8.0, 8.0), TypeError, "must be an int, got 8.0"),
        (torch.zeros(1, 4, 8, 8), TypeError, "got an array of shape (1, 4, 8, 8); pass its .shape"),
    ],
    ids=["negative", "float", "tensor"],
)
def test_spec_input_shape_entries_are_checked(shape, error, text):
    spec = ConvSpec(4, 8, 3)
    with pytest.raises(error, match=message(text)):
        spec.output_shape(shape)
    with pytest.raises(error, match=message(text)):
        spec.macs(shape)
    if error is TypeError:
        with pytest.raises(error, match=message(text)):
            groupconv.summary(torch.nn.Conv2d(4, 8, 3), shape)


# --- Padding modes that need enough input -------------------------------------------------


@pytest.mark.parametrize("frontend", ["spec", "nn"])
def test_reflect_padding_larger_than_input(frontend):
    text = (
        "padding_mode='reflect' needs padding < input size, but spatial dim 0 has size 3 and padding 3; "
        "use padding_mode='replicate' or less padding"
    )
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(GroupConvError, match=message(text)):
        if frontend == "spec":
            ConvSpec(4, 8, 3, padding=3, padding_mode="reflect").output_shape(x.shape)
        else:
            groupconv.nn.Conv2d(4, 8, 3, padding=3, padding_mode="reflect")(x)
    with pytest.raises(RuntimeError):  # PyTorch refuses it too, less helpfully
        torch.nn.Conv2d(4, 8, 3, padding=3, padding_mode="reflect")(x)


def test_reflect_same_padding_larger_than_input():
    conv = groupconv.nn.Conv1d(2, 2, 5, padding="same", padding_mode="reflect")
    with pytest.raises(
        GroupConvError,
        match=message("padding_mode='reflect' needs padding < input size, but spatial dim 0 has size 2 and padding 2"),
    ):
        conv(torch.randn(1, 2, 2))
    assert conv(torch.randn(1, 2, 3)).shape == (1, 2, 3)  # padding 2 < 3 is fine


@pytest.mark.parametrize("frontend", ["spec", "nn"])
def test_circular_padding_larger_than_input(frontend):
    text = (
        "padding_mode='circular' needs padding <= input size, but spatial dim 1 has size 3 and padding 4; "
        "use less padding"
    )
    x = torch.randn(1, 4, 5, 3)
    with pytest.raises(GroupConvError, match=message(text)):
        if frontend == "spec":
            ConvSpec(4, 8, 3, padding=(1, 4), padding_mode="circular").output_shape(x.shape)
        else:
            groupconv.nn.Conv2d(4, 8, 3, padding=(1, 4), padding_mode="circular")(x)


# --- Tensors: type, dtype, rank, size -------------------------------------------------------


@pytest.mark.parametrize("frontend", ["functional", "nn"])
@pytest.mark.parametrize(
    ("input_dtype", "weight_dtype"), [(torch.float64, torch.float32), (torch.float16, torch.float32)]
)
def test_mismatched_input_and_weight_dtypes(frontend, input_dtype, weight_dtype):
    x = torch.randn(1, 4, 8, 8, dtype=input_dtype)
    text = f"weight has dtype {weight_dtype} but input has {input_dtype}; convert one, e.g. weight.to(input.dtype)"
    with pytest.raises(TypeError, match=message(text)):
        if frontend == "functional":
            GF.conv2d(x, torch.randn(8, 2, 3, 3, dtype=weight_dtype), groups=2)
        else:
            groupconv.nn.Conv2d(4, 8, 3, groups=2, dtype=weight_dtype)(x)


def test_mismatched_bias_dtype():
    with pytest.raises(TypeError, match=message("bias has dtype torch.float64 but input has torch.float32")):
        GF.conv_transpose2d(
            torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), torch.randn(8, dtype=torch.float64), groups=2
        )


@pytest.mark.parametrize("frontend", ["functional", "nn"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_input(frontend, dtype):
    x = torch.ones(1, 4, 8, 8, dtype=dtype)
    text = f"input has dtype {dtype}; convolution needs floating point: use input.float()"
    with pytest.raises(TypeError, match=message(text)):
        if frontend == "functional":
            GF.conv2d(x, torch.ones(8, 4, 3, 3, dtype=dtype))
        else:
            groupconv.nn.Conv2d(4, 8, 3)(x)


def test_integer_weight_and_bias():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(
        TypeError, match=message("weight has dtype torch.int32; convolution needs floating point: use weight.float()")
    ):
        GF.conv2d(x, torch.ones(8, 4, 3, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match=message("bias has dtype torch.int64; convolution needs floating point")):
        GF.conv2d(x, torch.randn(8, 4, 3, 3), torch.zeros(8, dtype=torch.int64))


@pytest.mark.parametrize(
    ("name", "args", "text"),
    [
        ("input", ([[1.0]], torch.randn(8, 4, 3, 3)), "input must be a torch.Tensor, got list"),
        ("weight", (torch.randn(1, 4, 8, 8), [[1.0]]), "weight must be a torch.Tensor, got list"),
        ("weight", (torch.randn(1, 4, 8, 8), None), "weight must be a torch.Tensor, got NoneType"),
        (
            "bias",
            (torch.randn(1, 4, 8, 8), torch.randn(8, 4, 3, 3), [0.0] * 8),
            "bias must be a torch.Tensor, got list",
        ),
    ],
)
@pytest.mark.parametrize("transposed", [False, True])
def test_operands_that_are_not_tensors(name, args, text, transposed):
    if transposed and name != "input":
        args = (args[0], torch.randn(4, 8, 3, 3) if name == "bias" else args[1], *args[2:])
    with pytest.raises(TypeError, match=message(text)):
        FUNCTIONS[2, transposed](*args)


def test_nn_input_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=message("input must be a torch.Tensor, got list")):
        groupconv.nn.Conv2d(4, 8, 3)([[1.0]])
    with pytest.raises(TypeError, match=message("input must be a torch.Tensor, got list")):
        groupconv.nn.ConvTranspose2d(4, 8, 3)([[1.0]])


def test_nn_transposed_output_size_with_input_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=message("input must be a torch.Tensor, got list")):
        groupconv.nn.ConvTranspose2d(4, 8, 3, stride=2)([[1.0]], output_size=[12, 12])


@pytest.mark.parametrize(
    ("dims", "transposed", "weight_shape", "text"),
    [
        (
            2,
            False,
            (8, 2, 3),
            "weight of size [8, 2, 3] has 3 dimensions; a 2-D convolution expects "
            "(out_channels, in_channels/groups, kH, kW)",
        ),
        (
            1,
            False,
            (8, 2, 3, 3),
            "weight of size [8, 2, 3, 3] has 4 dimensions; a 1-D convolution expects "
            "(out_channels, in_channels/groups, kL)",
        ),
        (
            3,
            False,
            (8, 2),
            "weight of size [8, 2] has 2 dimensions; a 3-D convolution expects "
            "(out_channels, in_channels/groups, kD, kH, kW)",
        ),
        (
            2,
            True,
            (4, 2, 3, 3, 3),
            "weight of size [4, 2, 3, 3, 3] has 5 dimensions; a 2-D transposed convolution "
            "expects (in_channels, out_channels/groups, kH, kW)",
        ),
        (2, False, (), "weight of size [] has 0 dimensions"),
    ],
)
def test_weight_of_the_wrong_rank(dims, transposed, weight_shape, text):
    x = torch.randn(1, 4, *(8,) * dims)
    with pytest.raises(GroupConvError, match=message(text)):
        FUNCTIONS[dims, transposed](x, torch.randn(weight_shape), groups=2)


@pytest.mark.parametrize(
    ("weight_shape", "text"),
    [
        (
            (0, 2, 3, 3),
            "Given weight of size [0, 2, 3, 3]: out_channels=0 is invalid: out_channels must be an int >= 1",
        ),
        ((8, 2, 0, 3), "Given weight of size [8, 2, 0, 3]: kernel_size[0]=0 is invalid"),
        ((8, 0, 3, 3), "Given weight of size [8, 0, 3, 3]: in_channels=0 is invalid"),
    ],
)
def test_weight_with_an_empty_dimension(weight_shape, text):
    with pytest.raises(GroupConvError, match=message(text)):
        GF.conv2d(torch.randn(1, 4, 8, 8), torch.randn(weight_shape), groups=2)


def test_nn_weight_replaced_by_one_of_the_wrong_shape():
    """torch's layer convolves whatever weight it holds with its settings: a misfit is the input's error."""
    conv, oracle = groupconv.nn.Conv2d(4, 8, 3, groups=2), torch.nn.Conv2d(4, 8, 3, groups=2)
    conv.weight = oracle.weight = torch.nn.Parameter(torch.randn(8, 4, 3, 3))
    text = "Given groups=2, weight of size [8, 4, 3, 3], expected input[1, 4, 8, 8] to have 8 channels, but got 4"
    with pytest.raises(RuntimeError, match=message(text)):
        oracle(torch.randn(1, 4, 8, 8))
    with pytest.raises(GroupConvError, match=message(text)):
        conv(torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize("bias_shape", [(7,), (8, 1), (), (16,)])
@pytest.mark.parametrize("transposed", [False, True])
def test_bias_of_the_wrong_size(bias_shape, transposed):
    x = torch.randn(1, 4, 8, 8)
    weight = torch.randn(4, 4, 3, 3) if transposed else torch.randn(8, 2, 3, 3)
    text = f"bias of size {list(bias_shape)} does not fit the layer: expected [8], one per output channel"
    with pytest.raises(GroupConvError, match=message(text)):
        FUNCTIONS[2, transposed](x, weight, torch.randn(bias_shape), groups=2)


def test_nn_bias_replaced_by_one_of_the_wrong_size():
    conv = groupconv.nn.ConvTranspose1d(4, 6, 3, groups=2)
    conv.bias = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(GroupConvError, match=message("bias of size [4] does not fit the layer: expected [6]")):
        conv(torch.randn(1, 4, 5))


def test_nn_transposed_output_size_out_of_range():
    conv = groupconv.nn.ConvTranspose2d(4, 8, 3, stride=2)
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(
        GroupConvError,
        match=message(
            "output_size=[30, 30]: requested an output size of [30, 30], "
            "but valid sizes range from [11, 11] to [12, 12]"
        ),
    ):
        conv(x, output_size=[30, 30])
    with pytest.raises(GroupConvError, match=message("output_size=[1, 2, 3]:")):
        conv(x, output_size=[1, 2, 3])
    with pytest.raises(GroupConvError, match=message("input of size [5, 5] has 2 dimensions")):
        conv(torch.randn(5, 5), output_size=[12, 12])
    assert conv(x, output_size=[12, 11]).shape == (1, 8, 12, 11)


# --- ConvSpec and the helpers alone -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        (dict(dims=4), GroupConvError, "dims=4 is invalid: groupconv supports 1-, 2- and 3-D convolution"),
        (dict(dims=0), GroupConvError, "dims=0 is invalid: dims must be an int >= 1"),
        (dict(dims=2.0), TypeError, "dims must be an int, got 2.0 of type float"),
        (dict(in_channels=0), GroupConvError, "in_channels=0 is invalid: in_channels must be an int >= 1"),
        (dict(in_channels=-4), GroupConvError, "in_channels=-4 is invalid"),
        (dict(out_channels=0), GroupConvError, "out_channels=0 is invalid: out_channels must be an int >= 1"),
        (dict(in_channels=4.0), TypeError, "in_channels must be an int, got 4.0 of type float"),
        (dict(out_channels="8"), TypeError, "out_channels must be an int, got '8' of type str"),
        (dict(bias=1), TypeError, "bias must be a bool, got 1"),
        (dict(bias=None), TypeError, "bias must be a bool, got None"),
        (dict(transposed="yes"), TypeError, "transposed must be a bool, got 'yes'"),
        (dict(padding_mode=None), GroupConvError, "padding_mode=None is not supported; use one of 'zeros'"),
    ],
)
def test_spec_bad_fields(kwargs, error, text):
    layer = dict(in_channels=4, out_channels=8, kernel_size=3) | kwargs
    with pytest.raises(error, match=message(text)):
        ConvSpec(**layer)


@pytest.mark.parametrize("function", [groupconv.max_groups, groupconv.valid_groups])
@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        ((0, 3), GroupConvError, "in_channels=0 is invalid: in_channels must be an int >= 1"),
        ((3, -1), GroupConvError, "out_channels=-1 is invalid: out_channels must be an int >= 1"),
        ((3.0, 3), TypeError, "in_channels must be an int, got 3.0 of type float"),
        ((3, True), TypeError, "out_channels must be an int, got True of type bool"),
    ],
)
def test_max_groups_and_valid_groups_bad_channels(function, args, error, text):
    with pytest.raises(error, match=message(text)):
        function(*args)


def test_nn_accepts_the_bias_values_torch_accepts():
    for bias in (0, 1):
        ours, theirs = groupconv.nn.Conv2d(4, 8, 3, bias=bias), torch.nn.Conv2d(4, 8, 3, bias=bias)
        assert (ours.bias is None) == (theirs.bias is None)


# --- Junk arguments: only GroupConvError or TypeError, else PyTorch's result ----------------------
#
# Each example starts from a layer and operands PyTorch accepts, then replaces up to two of
# its arguments with junk: so both the error paths and the accepted paths are exercised.

JUNK_SCALARS = [
    0,
    -1,
    -3,
    1,
    2,
    3,
    0.0,
    1.0,
    2.0,
    1.5,
    math.nan,
    math.inf,
    "same",
    "valid",
    "2",
    "full",
    "",
    None,
    True,
    False,
    (),
    [],
    {},
    object(),
]  # bytes: see test_bytes_are_not_a_tuple_of_ints
junk = st.one_of(
    st.integers(-3, 5),
    st.sampled_from(JUNK_SCALARS),
    st.lists(st.integers(-2, 4), max_size=4).map(tuple),
    st.lists(st.integers(-2, 4), max_size=4),
    st.lists(st.sampled_from(JUNK_SCALARS), min_size=1, max_size=3).map(tuple),
)
small_shape = st.lists(st.integers(0, 5), max_size=6)
junk_tensor = st.one_of(
    small_shape.map(torch.randn),
    small_shape.map(lambda shape: torch.ones(shape, dtype=torch.int64)),
    small_shape.map(lambda shape: torch.randn(shape, dtype=torch.float64)),
    st.sampled_from([None, 1.0, [[1.0]], "tensor"]),
)
JUNK_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALLOWED = (GroupConvError, TypeError)


def _raises_only_allowed(fn):
    """fn()'s result, or None when it raised an allowed error; a leaked error fails the test."""
    try:
        return fn()
    except ALLOWED as error:
        assert str(error), f"{type(error).__name__} without a message"
        return None
    except Exception as error:
        pytest.fail(f"leaked {type(error).__name__}: {error}")


@st.composite
def valid_layers(draw, transposed: bool):
    """A 2-D layer and operands that torch.nn.functional accepts: (input, weight, bias, kwargs)."""
    groups, cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dilation = draw(st.sampled_from([1, 2, (1, 2)]))
    d = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    stride = draw(st.sampled_from([1, 2, (2, 1)]))
    s = stride if isinstance(stride, tuple) else (stride, stride)
    size = [draw(st.integers(dk * (k - 1) + 1, 6 + dk * (k - 1))) for k, dk in zip(kernel, d)]
    x = torch.randn(*draw(st.sampled_from([(), (1,), (2,)])), groups * cin_g, *size)
    kwargs = dict(stride=stride, dilation=dilation, groups=groups)
    if transposed:
        weight = torch.randn(groups * cin_g, cout_g, *kernel)
        kwargs["padding"] = draw(st.sampled_from([0, 1, (0, 1)]))
        kwargs["output_padding"] = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
    else:
        weight = torch.randn(groups * cout_g, cin_g, *kernel)
        kwargs["padding"] = draw(st.sampled_from([0, 1, (1, 0), "valid"] + (["same"] if s == (1, 1) else [])))
    bias = draw(st.sampled_from([None, torch.randn(groups * cout_g)]))
    return x, weight, bias, kwargs


@pytest.mark.slow
@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data())
@JUNK_SETTINGS
def test_functional_junk_raises_only_allowed_errors(transposed, data):
    x, weight, bias, kwargs = data.draw(valid_layers(transposed), label="valid layer")
    operands = dict(input=x, weight=weight, bias=bias)
    for name in data.draw(st.sets(st.sampled_from([*operands, *kwargs]), max_size=2), label="junk fields"):
        if name in operands:
            operands[name] = data.draw(junk_tensor, label=name)
        else:
            kwargs[name] = data.draw(junk, label=name)
    ours = _raises_only_allowed(lambda: FUNCTIONS[2, transposed](**operands, **kwargs))
    if ours is not None:  # accepted: PyTorch accepts it too, with the same result
        theirs = TORCH_FUNCTIONS[2, transposed](**operands, **kwargs)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@given(data=st.data())
@JUNK_SETTINGS
def test_spec_junk_raises_only_allowed_errors(data):
    draw = data.draw
    transposed = draw(st.booleans(), label="transposed")
    groups = draw(st.integers(1, 3))
    layer = dict(
        in_channels=groups * draw(st.integers(1, 2)),
        out_channels=groups * draw(st.integers(1, 2)),
        kernel_size=draw(st.integers(1, 3)),
        stride=draw(st.integers(1, 2)),
        padding=draw(st.integers(0, 2)),
        dilation=draw(st.integers(1, 2)),
        groups=groups,
        bias=draw(st.booleans()),
        transposed=transposed,
        padding_mode="zeros" if transposed else draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
        output_padding=0,
        dims=draw(st.integers(1, 3)),
    )
    for name in draw(st.sets(st.sampled_from(sorted(layer)), max_size=2), label="junk fields"):
        layer[name] = draw(junk, label=name)
    spec = _raises_only_allowed(lambda: ConvSpec(**layer))
    if spec is None:
        return
    if math.prod(spec.weight_shape) > 10**5:
        return  # too large a weight for torch to build here
    # accepted: torch.nn builds the same layer
    torch_layer = {k: v for k, v in layer.items() if k not in ("transposed", "dims")}
    if not spec.transposed:
        torch_layer.pop("output_padding")
    module = TORCH_MODULES[spec.dims, spec.transposed](**torch_layer)
    assert spec.weight_shape == tuple(module.weight.shape)
    assert spec.num_params == sum(p.numel() for p in module.parameters())
    # any input shape gives a shape PyTorch agrees with, or an allowed error
    shape = draw(
        st.one_of(
            small_shape,
            st.tuples(
                st.sampled_from([(), (2,)]), st.lists(st.integers(1, 6), min_size=spec.dims, max_size=spec.dims)
            ).map(lambda b: [*b[0], spec.in_channels, *b[1]]),
        ),
        label="input shape",
    )
    out = _raises_only_allowed(lambda: spec.output_shape(shape))
    macs = _raises_only_allowed(lambda: spec.macs(shape))
    assert (out is None) == (macs is None)
    one_padding_entry = isinstance(layer["padding"], (tuple, list)) and len(layer["padding"]) == 1
    if spec.dims > 1 and spec.padding_mode != "zeros" and one_padding_entry:
        return  # torch.nn then pads the last dim only, and F.pad refuses it: PyTorch cannot run the layer
    if out is not None:
        assert out == tuple(module(torch.randn(shape)).shape)


@pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
def test_bytes_are_not_a_tuple_of_ints(name):
    with pytest.raises(TypeError, match=message(f"{name} must be an int, got b'\\x01\\x01' of type bytes")):
        GF.conv2d(torch.randn(1, 4, 8, 8), torch.randn(8, 4, 3, 3), **{name: b"\x01\x01"})
    with pytest.raises((TypeError, RuntimeError)):  # PyTorch rejects it too
        F.conv2d(torch.randn(1, 4, 8, 8), torch.randn(8, 4, 3, 3), **{name: b"\x01\x01"})


@pytest.mark.parametrize("name", ["stride", "padding"])
def test_ints_beyond_int64_are_rejected(name):
    with pytest.raises(GroupConvError, match=message(f"{name}={2**63}")):
        GF.conv2d(torch.randn(1, 4, 8, 8), torch.randn(8, 4, 3, 3), **{name: 2**63})


# --- NaN and inf are data, not errors ----------------------------------------------------------


def _assert_same_special_values(ours, theirs):
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.isposinf(), theirs.isposinf())
    assert torch.equal(ours.isneginf(), theirs.isneginf())
    finite = theirs.isfinite()
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("transposed", [False, True])
def test_nan_and_inf_in_the_input_propagate_as_in_pytorch(dims, transposed):
    torch.manual_seed(dims + 10 * transposed)
    x = torch.randn(2, 4, *(5,) * dims, dtype=torch.float64)
    flat = x.view(-1)
    flat[torch.randperm(flat.numel())[:6]] = torch.tensor(
        [math.nan, math.inf, -math.inf, math.inf, math.nan, -math.inf], dtype=torch.float64
    )
    weight = torch.randn(*((4, 3) if transposed else (6, 2)), *(2,) * dims, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    kwargs = dict(stride=2, padding=1, groups=2)
    ours = FUNCTIONS[dims, transposed](x, weight, bias, **kwargs)
    theirs = TORCH_FUNCTIONS[dims, transposed](x, weight, bias, **kwargs)
    assert ours.isnan().any() and ours.isinf().any()
    _assert_same_special_values(ours, theirs)


@pytest.mark.parametrize("transposed", [False, True])
def test_nan_and_inf_in_weight_and_bias_propagate_as_in_pytorch(transposed):
    torch.manual_seed(3)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64)  # 4 -> 4 channels, groups=2, either way
    weight[0, 0, 1, 1] = math.nan
    weight[3, 1, 0, 2] = math.inf
    bias = torch.tensor([0.0, -math.inf, 0.0, math.nan], dtype=torch.float64)
    ours = FUNCTIONS[2, transposed](x, weight, bias, groups=2)
    theirs = TORCH_FUNCTIONS[2, transposed](x, weight, bias, groups=2)
    _assert_same_special_values(ours, theirs)
    assert ours.isfinite().any() and not ours.isfinite().all()


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_nan_in_the_input_with_padding_modes_matches_torch_nn(padding_mode):
    torch.manual_seed(4)
    theirs = torch.nn.Conv2d(4, 8, 3, padding=(2, 1), groups=2, padding_mode=padding_mode).double()
    ours = groupconv.nn.Conv2d(4, 8, 3, padding=(2, 1), groups=2, padding_mode=padding_mode).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64)
    x[0, 0, 0, 0] = math.nan  # reflected/replicated/wrapped into other border positions
    x[0, 3, 5, 4] = -math.inf
    _assert_same_special_values(ours(x).detach(), theirs(x).detach())


def test_a_call_that_ran_before_is_still_checked_when_its_operands_change():
    """apply remembers routes per call; operands that differ in any checked respect are checked anew."""
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3)
    for _ in range(2):
        groupconv.functional.conv2d(x, weight, groups=2)
    with pytest.raises(TypeError, match=r"weight has dtype torch\.float64"):
        groupconv.functional.conv2d(x, weight.double(), groups=2)
    with pytest.raises(GroupConvError, match="channels"):
        groupconv.functional.conv2d(torch.randn(1, 6, 6, 6), weight, groups=2)
    with pytest.raises(TypeError, match=r"bias must be a torch\.Tensor"):
        groupconv.functional.conv2d(x, weight, bias=[0.0] * 4, groups=2)


@pytest.mark.parametrize(
    ("input_size", "weight_size", "kwargs"),
    [
        ((1, 4, 2, 2), (8, 2, 3, 3), {"groups": 2}),  # input smaller than the kernel
        ((1, 6, 8, 8), (8, 2, 3, 3), {"groups": 2}),  # channels that do not fit the weight
        ((1, 4, 8, 8), (8, 2, 3, 3), {"groups": 3}),  # groups that divide nothing
        ((1, 4, 8, 8), (8, 2, 3, 3), {"groups": 2, "stride": 0}),
        ((4, 8, 8), (8, 2, 3, 3, 3), {"groups": 2}),  # a weight of the wrong rank
        ((1, 4, 8, 8), (8, 2, 3, 3), {"groups": 2, "bias": torch.zeros(8, dtype=torch.float64)}),
    ],
)
def test_code_that_catches_pytorchs_runtime_errors_catches_groupconvs(input_size, weight_size, kwargs):
    """A bad call raises RuntimeError in torch.nn.functional; groupconv's error is one as well."""
    x, w = torch.randn(input_size), torch.randn(weight_size)
    with pytest.raises(RuntimeError):
        F.conv2d(x, w, **kwargs)
    with pytest.raises(RuntimeError):
        GF.conv2d(x, w, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"stride": torch.tensor(2)}, {"padding": (torch.tensor(1), 0)}, {"dilation": torch.tensor([2])}],
    ids=["stride", "padding", "dilation"],
)
def test_a_one_element_integer_tensor_stands_for_an_int_as_in_pytorch(kwargs):
    x, w = torch.randn(1, 4, 9, 9), torch.randn(8, 2, 3, 3)
    torch.testing.assert_close(GF.conv2d(x, w, groups=2, **kwargs), F.conv2d(x, w, groups=2, **kwargs))
    with pytest.raises(TypeError, match=r"stride must be an int, got tensor\(2\.\) of type Tensor"):
        GF.conv2d(x, w, stride=torch.tensor(2.0), groups=2)  # as PyTorch refuses it
