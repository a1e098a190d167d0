"""Real image sets that install offline: Fashion-MNIST (grey) and Noto emoji (colour).

    load(name, split, data_dir=None) -> ImageSet   # "fashion-mnist" or "emoji"; "train" or "test"
    DATASETS                                      # name -> Info (channels, size, classes, install)

Each set comes from a Debian package (``make data`` installs both); a missing file
raises ``DataMissingError`` whose one line gives the ``apt-get`` command.

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

DATASETS: dict[str, Info] = {info.name: info for info in (FASHION_MNIST, EMOJI)}


def load(name: str, split: str = "train", data_dir: str | Path | None = None) -> ImageSet:
    """The ``split`` ("train" or "test") of the data set ``name``, as float images in [0, 1]."""
    loaders = {"fashion-mnist": load_fashion_mnist, "emoji": load_emoji}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(loaders)}")
    return loaders[name](split, data_dir)


__all__ = ["DATASETS", "DataMissingError", "ImageSet", "Info", "load", "load_emoji", "load_fashion_mnist"]
