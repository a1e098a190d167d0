"""A colour image set that installs offline: 32x32 patches of the photographs in scikit-image's wheel.

scikit-image ships eight colour photographs in its wheel (``skimage/data``): an
astronaut, a cat, a cup of coffee, the Hubble deep field, an immunohistochemistry
slide, a motorcycle, a retina and a rocket. Each patch's label is the photograph it
comes from, so both colour (the deep field's black and violet, the slide's brown and
blue, the coffee's browns) and brightness texture (fur, metal, stars) carry the class;
``groupconv experiment specialisation`` measures how much colour does by training the
same model on grey copies. Being natural photographs, their local statistics are the
kind AlexNet's conv1 learned from.

Nothing is installed into the environment: the wheel itself, as ``pip download
scikit-image==0.26.0 --no-deps`` fetches it (``make data`` does), is read as a zip
file. Each photograph is scaled so its shorter side is 256 pixels; patches are cut
every 8 pixels; a patch whose pixels hardly vary (the retina's black border, empty
sky) is dropped. The split is by place: patches wholly in the left two thirds of a photograph
(less a 16-pixel margin) train, those wholly in the right third (less the margin) test,
so no test pixel was seen in training.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .common import ImageSet, Info

WHEEL_VERSION = "0.26.0"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
          "retina.jpg", "rocket.jpg")  # fmt: skip
PHOTOS_INFO = Info(
    name="photos",
    image_shape=(3, 32, 32),
    classes=tuple(name.split(".")[0] for name in PHOTOS),
    packages=(),
    install=f"pip download scikit-image=={WHEEL_VERSION} --no-deps -d {{directory}}",
)
_SIDE, _PATCH, _STRIDE, _MARGIN, _TRAIN_SHARE, _FLAT = 256, 32, 8, 16, 2 / 3, 0.03


def default_dir() -> Path:
    """Where ``make data`` puts the wheel: ``$GROUPCONV_DATA``, else ``~/.cache/groupconv/data``."""
    return Path(os.environ.get("GROUPCONV_DATA", Path.home() / ".cache" / "groupconv" / "data"))


def load_photos(split: str = "train", data_dir: str | Path | None = None) -> ImageSet:
    """The patches of ``split``, ``(N, 3, 32, 32)`` in [0, 1], labelled by photograph.

    Example:
        >>> train = load_photos("train")  # doctest: +SKIP
        >>> train.images.shape[1:], PHOTOS_INFO.classes[int(train.labels[0])]  # doctest: +SKIP
        (torch.Size([3, 32, 32]), 'astronaut')
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(data_dir) if data_dir is not None else default_dir()
    found = sorted(directory.glob(f"scikit_image-{WHEEL_VERSION}-*.whl"))
    if not found:
        raise PHOTOS_INFO.missing(directory / f"scikit_image-{WHEEL_VERSION}-*.whl")
    images, labels = _patches(str(found[0]), split)
    return ImageSet(
        torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(labels), PHOTOS_INFO
    )


@functools.lru_cache(maxsize=2)
def _patches(wheel: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every patch of ``split`` as uint8 ``(N, 32, 32, 3)`` and its photograph's index (cut once per process)."""
    from PIL import Image

    images, labels = [], []
    with zipfile.ZipFile(wheel) as archive:
        for label, name in enumerate(PHOTOS):
            photo = Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))).convert("RGB")
            scale = _SIDE / min(photo.size)
            photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
            cut = patches_of(np.asarray(photo), split)
            images.append(cut)
            labels.append(np.full(len(cut), label, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def patches_of(pixels: np.ndarray, split: str) -> np.ndarray:
    """The ``(N, 32, 32, 3)`` patches of one ``(H, W, 3)`` photograph that fall wholly in ``split``'s columns.

    Example (a 40x240 gradient: train columns 0-143, test columns 176-239):
        >>> ramp = np.broadcast_to(np.arange(240, dtype=np.uint8)[None, :, None], (40, 240, 3))
        >>> patches_of(ramp, "train").shape, patches_of(ramp, "test").shape
        ((30, 32, 32, 3), (10, 32, 32, 3))
    """
    height, width, _ = pixels.shape
    boundary = round(width * _TRAIN_SHARE)
    left, right = (0, boundary - _MARGIN) if split == "train" else (boundary + _MARGIN, width)
    cut = [
        pixels[top : top + _PATCH, x : x + _PATCH]
        for top in range(0, height - _PATCH + 1, _STRIDE)
        for x in range(left, right - _PATCH + 1, _STRIDE)
    ]
    kept = [patch for patch in cut if (patch / 255).std() >= _FLAT]
    return np.stack(kept) if kept else np.zeros((0, _PATCH, _PATCH, 3), np.uint8)
