"""Fashion-MNIST (Xiao et al. 2017) from its idx files: 60,000 + 10,000 grey 28x28 images.

Debian's ``dataset-fashion-mnist`` installs the four gzip idx files in
``/usr/share/datasets/fashion-mnist``; any directory holding the standard file names
works as ``data_dir``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .common import ImageSet, Info

FASHION_MNIST = Info(
    name="fashion-mnist",
    image_shape=(1, 28, 28),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    packages=("dataset-fashion-mnist",),
)
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
_PREFIX = {"train": "train", "test": "t10k"}


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None) -> ImageSet:
    """The 60,000 training or 10,000 test images, ``(N, 1, 28, 28)`` in [0, 1].

    Example:
        >>> test = load_fashion_mnist("test")  # doctest: +SKIP
        >>> test.images.shape, test.labels[:5].tolist()  # doctest: +SKIP
        (torch.Size([10000, 1, 28, 28]), [9, 2, 1, 1, 6])
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    images = read_idx(_find(directory, f"{_PREFIX[split]}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{_PREFIX[split]}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{directory}: {len(images)} images but {len(labels)} labels for split {split!r}")
    pixels = torch.from_numpy(images).unsqueeze(1).float().div_(255)
    return ImageSet(pixels, torch.from_numpy(labels).long(), FASHION_MNIST)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip or not) as a uint8 array: a 4-byte magic (0, 0, 8, ndim), ndim big-endian sizes, data.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "x-idx2-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
        >>> read_idx(path).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    """``stem.gz`` or ``stem`` in ``directory``; the install hint when neither is there."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise FASHION_MNIST.missing(directory / f"{stem}.gz")
