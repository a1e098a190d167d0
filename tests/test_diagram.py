"""groupconv.diagram: valid, non-blank PNG and SVG files for every kind of layer, and the
connectivity it draws checked against autograd."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tiers import fast_first

import groupconv
from groupconv import ConvSpec, GroupConvError
from groupconv.reports.diagram import channel_blocks, connectivity

LAYERS = {
    "A Deeper Understanding of Grouped Convolution's 4->8, groups=2": ConvSpec(4, 8, 3, groups=2),
    "1-D": ConvSpec(6, 9, 5, groups=3, dims=1),
    "3-D transposed": ConvSpec(6, 12, 3, groups=3, transposed=True, dims=3),
    "groups=1": ConvSpec(3, 16, 3),
    "depthwise": ConvSpec(32, 32, 3, groups=32),
    "one channel": ConvSpec(1, 1, 1),
    "512 dense": ConvSpec(512, 512, 3),
    "512 grouped": ConvSpec(256, 512, 3, groups=32),
    "512 depthwise": ConvSpec(512, 512, 3, groups=512, bias=False),
    "prime width": ConvSpec(509, 509, 1),
}
RED, GREEN = (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)  # the first two groups, as in the Grouped Convolution post


@pytest.mark.parametrize("name", fast_first(LAYERS, 4))  # the wide layers further down draw slowly
def test_png_has_the_promised_size_and_is_not_blank(name, tmp_path):
    spec = LAYERS[name]
    drawn = groupconv.diagram(spec, tmp_path / "layer.png")
    with Image.open(tmp_path / "layer.png") as image:
        image.verify()  # a well-formed PNG
    with Image.open(tmp_path / "layer.png") as image:
        assert image.format == "PNG"
        assert image.size == (drawn.width_px, drawn.height_px) == (1680, 780)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    white = next(count for count, colour in colours if colour == (255, 255, 255))
    assert white < 0.9 * drawn.width_px * drawn.height_px  # a tenth or more of the figure is drawn
    assert len(colours) > 50  # text, antialiasing and the group colours


def test_png_colours_the_groups_as_the_document_does(tmp_path):
    groupconv.diagram(ConvSpec(4, 8, 3, groups=2), tmp_path / "layer.png")
    with Image.open(tmp_path / "layer.png") as image:
        counts = {colour: count for count, colour in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert counts.get(RED, 0) > 10_000 and counts.get(GREEN, 0) > 10_000  # solid blocks of each group's colour


@pytest.mark.parametrize("name", fast_first(LAYERS, 4))  # the wide layers further down draw slowly
def test_svg_is_well_formed_with_the_promised_size(name, tmp_path):
    spec = LAYERS[name]
    drawn = groupconv.diagram(spec, tmp_path / "layer.svg")
    root = ET.parse(tmp_path / "layer.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width_pt, height_pt = (float(root.get(side).removesuffix("pt")) for side in ("width", "height"))
    assert (width_pt / 72 * 120, height_pt / 72 * 120) == pytest.approx((drawn.width_px, drawn.height_px))
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 20
    if spec.groups == 2:
        assert "#d62728" in (tmp_path / "layer.svg").read_text() and "#2ca02c" in (tmp_path / "layer.svg").read_text()


def test_the_same_layer_gives_the_same_bytes(tmp_path):
    for suffix in ("png", "svg"):
        first, second = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        groupconv.diagram(ConvSpec(4, 8, 3, groups=2), first)
        groupconv.diagram(ConvSpec(4, 8, 3, groups=2), second)
        assert first.read_bytes() == second.read_bytes()


def test_the_title_shows_the_output_shape_for_an_input(tmp_path):
    groupconv.diagram(ConvSpec(4, 8, 3, groups=2), tmp_path / "layer.svg", input_shape=(1, 4, 32, 32))
    text = (tmp_path / "layer.svg").read_text()
    assert "input (1, 4, 32, 32) -&gt; output (1, 8, 30, 30)" in text  # SVG escapes '>'


@pytest.mark.parametrize(
    "spec",
    [ConvSpec(4, 8, 3, groups=2), ConvSpec(6, 4, 2, groups=2, transposed=True), ConvSpec(3, 9, 1, groups=3, dims=1),
     ConvSpec(8, 8, 3, groups=8), ConvSpec(5, 7, 3)],
)  # fmt: skip
def test_connectivity_is_what_autograd_sees(spec):
    layer_class = {(False, 1): torch.nn.Conv1d, (False, 2): torch.nn.Conv2d, (True, 2): torch.nn.ConvTranspose2d}
    layer = layer_class[spec.transposed, spec.dims](spec.in_channels, spec.out_channels, 3, groups=spec.groups)
    x = torch.randn(1, spec.in_channels, *[6] * spec.dims, requires_grad=True)
    y = layer(x)
    reads = torch.stack(
        [torch.autograd.grad(y[:, o].sum(), x, retain_graph=True)[0].abs().flatten(2).sum((0, 2)) > 0
         for o in range(spec.out_channels)]
    )  # fmt: skip
    assert connectivity(spec).tolist() == reads.tolist()


def test_connectivity_is_block_diagonal_for_groups():
    matrix = connectivity(ConvSpec(4, 8, 3, groups=2)).astype(int).tolist()
    assert matrix == [[1, 1, 0, 0]] * 4 + [[0, 0, 1, 1]] * 4


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(1, 600), st.integers(1, 40))
def test_channel_blocks_cover_the_channels_within_the_groups(groups, per_group, max_rows):
    channels = groups * per_group
    blocks = channel_blocks(channels, groups, max_rows)
    assert 1 <= len(blocks) <= max_rows
    assert blocks[0].start == 0 and blocks[-1].stop == channels
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))  # contiguous, in order, no overlap
    for block in blocks:
        first, stop = block.groups
        if stop - first == 1:  # a run of one group's channels stays inside that group
            assert first * per_group <= block.start < block.stop <= stop * per_group
        else:  # a run of whole groups
            assert (block.start, block.stop) == (first * per_group, stop * per_group)
    sizes = [block.stop - block.start for block in blocks]
    assert max(sizes) - min(sizes) <= (per_group if groups > max_rows else 1)  # rows as even as the groups allow


def test_wide_layers_are_drawn_in_at_most_32_rows(tmp_path):
    drawn = groupconv.diagram(ConvSpec(512, 512, 3, groups=512), tmp_path / "wide.svg")
    assert len(drawn.input_blocks) == len(drawn.output_blocks) == 32
    assert {(b.stop - b.start, b.groups[1] - b.groups[0]) for b in drawn.input_blocks} == {(16, 16)}
    narrow = groupconv.diagram(ConvSpec(4, 8, 3, groups=2), tmp_path / "narrow.svg")
    assert [(b.start, b.stop) for b in narrow.output_blocks] == [(c, c + 1) for c in range(8)]  # one channel a row


def test_two_to_the_forty_groups_are_drawn_in_32_rows(tmp_path):
    groups = 2**40  # one colour per group would need a list of 2**40 entries
    drawn = groupconv.diagram(ConvSpec(groups, groups, 1, groups=groups), tmp_path / "huge.png")
    assert len(drawn.input_blocks) == len(drawn.output_blocks) == 32
    assert {(b.stop - b.start, b.groups[1] - b.groups[0]) for b in drawn.input_blocks} == {(2**35, 2**35)}
    with Image.open(tmp_path / "huge.png") as image:
        assert image.size == (1680, 780)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 32  # a colour per row, and text


@pytest.mark.parametrize(
    "spec, options, error, message",
    [
        ((4, 8, 3), {}, TypeError, "spec must be a groupconv.ConvSpec, e.g. ConvSpec(4, 8, 3); got tuple (4, 8, 3)"),
        (ConvSpec(4, 8, 3), {"max_rows": 2.5}, TypeError, "max_rows must be an int, got 2.5 of type float"),
        (ConvSpec(4, 8, 3), {"dpi": 0}, GroupConvError, "dpi=0 is invalid: dpi must be an int >= 1"),
        (ConvSpec(4, 8, 3), {"dpi": 1201}, GroupConvError,
         "dpi=1201 is too large: the figure would be 16,814 x 7,806 pixels; use dpi <= 1200"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named_before_anything_is_drawn(spec, options, error, message, tmp_path):
    with pytest.raises(error) as raised:
        groupconv.diagram(spec, tmp_path / "layer.png", **options)
    assert str(raised.value) == message
    assert not list(tmp_path.iterdir())


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(GroupConvError, match=r"cannot draw to '.*layer.jpg': the file name must end in .png or .svg"):
        groupconv.diagram(ConvSpec(4, 8, 3), tmp_path / "layer.jpg")
    with pytest.raises(GroupConvError, match=r"cannot write '.*missing/layer.png': No such file or directory"):
        groupconv.diagram(ConvSpec(4, 8, 3), tmp_path / "missing" / "layer.png")
    with pytest.raises(GroupConvError, match="max_rows=0 is invalid"):
        channel_blocks(4, 2, 0)
    with pytest.raises(GroupConvError, match="expected input"):
        groupconv.diagram(ConvSpec(4, 8, 3), tmp_path / "layer.png", input_shape=(1, 3, 8, 8))
    assert not list(tmp_path.iterdir())  # nothing half-written
