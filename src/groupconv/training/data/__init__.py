"""Real image sets that install offline: Fashion-MNIST (grey), Noto emoji and photo patches (colour).

    load(name, split, data_dir=None) -> ImageSet   # "fashion-mnist", "emoji" or "photos"; "train" or "test"
    DATASETS                                      # name -> Info (channels, size, classes, install)

Fashion-MNIST and the emoji come from Debian packages, the photographs from
scikit-image's wheel (``make data`` installs all three); a missing file raises
``DataMissingError`` whose one line gives the install command.

Example:
    >>> DATASETS["fashion-mnist"].image_shape
    (1, 28, 28)
    >>> DATASETS["emoji"].classes[:3]
    ('Smileys & Emotion', 'People & Body', 'Animals & Nature')
"""

from __future__ import annotations

from pathlib import Path

from .common import DataMissingError, ImageSet, Info
from .emoji import EMOJI, load_emoji
from .fashion_mnist import FASHION_MNIST, load_fashion_mnist
from .photos import PHOTOS_INFO, load_photos

DATASETS: dict[str, Info] = {info.name: info for info in (FASHION_MNIST, EMOJI, PHOTOS_INFO)}


def load(name: str, split: str = "train", data_dir: str | Path | None = None) -> ImageSet:
    """The ``split`` ("train" or "test") of the data set ``name``, as float images in [0, 1]."""
    loaders = {"fashion-mnist": load_fashion_mnist, "emoji": load_emoji, "photos": load_photos}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(loaders)}")
    return loaders[name](split, data_dir)


__all__ = [
    "DATASETS",
    "DataMissingError",
    "ImageSet",
    "Info",
    "load",
    "load_emoji",
    "load_fashion_mnist",
    "load_photos",
]
