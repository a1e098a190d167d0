"""A colour image set that installs offline: Noto Color Emoji rendered to 32x32 RGB.

Each fully-qualified emoji in Unicode's ``emoji-test.txt`` (Debian ``unicode-data``) is
drawn with the Noto Color Emoji font (Debian ``fonts-noto-color-emoji``) on white,
cropped to its glyph, padded square and resized to 32x32. Its label is its Unicode
group: Smileys & Emotion, People & Body, Animals & Nature, ... (9 groups; the
"Component" group, hair and skin-tone swatches, is left out). Sequences the font draws
as several glyphs side by side are left out too.

The split keeps variants together: every skin-tone or gender variant of an emoji (the
part of its name before ":") lands in the same split, so the test images are not
recoloured copies of training images. One base name in five (by hash) goes to "test".
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from .common import ImageSet, Info

_GROUPS = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
           "Activities", "Objects", "Symbols", "Flags")  # fmt: skip
EMOJI = Info(
    name="emoji",
    image_shape=(3, 32, 32),
    classes=_GROUPS,
    packages=("fonts-noto-color-emoji", "unicode-data"),
)
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
_STRIKE = 109  # the font's only bitmap size: colour bitmap fonts render at their strike sizes
_SIZE = 32


def load_emoji(split: str = "train", data_dir: str | Path | None = None) -> ImageSet:
    """The emoji images of ``split``, ``(N, 3, 32, 32)`` in [0, 1], labelled by Unicode group.

    ``data_dir``, if given, holds ``NotoColorEmoji.ttf`` and ``emoji-test.txt``.

    Example:
        >>> train = load_emoji("train")  # doctest: +SKIP
        >>> train.images.shape[1:], EMOJI.classes[int(train.labels[0])]  # doctest: +SKIP
        (torch.Size([3, 32, 32]), 'Smileys & Emotion')
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    font, listing = (FONT, EMOJI_TEST) if data_dir is None else (Path(data_dir) / p.name for p in (FONT, EMOJI_TEST))
    for path in (font, listing):
        if not path.is_file():
            raise EMOJI.missing(path)
    images, labels, names = _rendered(str(font), str(listing))
    keep = np.array([_is_test(name) == (split == "test") for name in names])
    pixels = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).float().div_(255)
    return ImageSet(pixels, torch.from_numpy(labels[keep]).long(), EMOJI)


def parse_emoji_test(text: str) -> list[tuple[str, str, str]]:
    """``(emoji, group, name)`` for each fully-qualified line of an ``emoji-test.txt``.

    Example:
        >>> parse_emoji_test("# group: Flags\\n1F3C1 ; fully-qualified # 🏁 E0.6 chequered flag\\n")
        [('🏁', 'Flags', 'chequered flag')]
    """
    entries, group = [], None
    for line in text.splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line:
            codepoints, comment = line.split(";")[0], line.split("#", 1)[1].split(maxsplit=2)
            emoji = "".join(chr(int(code, 16)) for code in codepoints.split())
            entries.append((emoji, group, comment[2]))
    return entries


@functools.lru_cache(maxsize=2)
def _rendered(font_path: str, listing_path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every usable emoji as uint8 ``(N, 32, 32, 3)``, its class index and its name (rendered once)."""
    from PIL import ImageFont

    font = ImageFont.truetype(font_path, _STRIKE)
    images, labels, names = [], [], []
    for emoji, group, name in parse_emoji_test(Path(listing_path).read_text(encoding="utf-8")):
        if group not in EMOJI.classes:
            continue
        image = _render(emoji, font)
        if image is not None:
            images.append(image)
            labels.append(EMOJI.classes.index(group))
            names.append(name)
    return np.stack(images), np.array(labels), names


def _render(emoji: str, font) -> np.ndarray | None:
    """One emoji on white, cropped, padded square, 32x32; None if the font draws it as several glyphs."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (4 * _STRIKE, 2 * _STRIKE), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, 0), emoji, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None or box[2] - box[0] > 1.5 * (box[3] - box[1]):
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return np.asarray(square.convert("RGB").resize((_SIZE, _SIZE), Image.LANCZOS))


def _is_test(name: str) -> bool:
    """One base name in five, chosen by a hash, goes to the test split (variants share a base name).

    The base name is the part before ":" ("waving hand: light skin tone" -> "waving hand"),
    except for flags and keycaps, whose part after ":" is the emoji itself ("flag: Japan").
    """
    base = name.split(":")[0].strip()
    base = name if base in ("flag", "keycap") else base
    return hashlib.sha256(base.encode()).digest()[0] % 5 == 0
