"""What every data set shares: its description, its tensors, and the missing-data error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import GroupConvError


class DataMissingError(GroupConvError):
    """A data file is not where it should be; the message says how to install it."""


@dataclass(frozen=True)
class Info:
    """A data set's name, image shape, class names and the Debian packages that install it."""

    name: str
    image_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]
    packages: tuple[str, ...]

    def missing(self, path: Path) -> DataMissingError:
        """The one-line error for a missing ``path``, with the command that installs it."""
        install = f"sudo apt-get update && sudo apt-get install -y {' '.join(self.packages)}"
        return DataMissingError(
            f"{self.name}: {path} not found; install it with `{install}` (or `make data`), "
            f"or give --data-dir a folder that holds {path.name}"
        )


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, C, H, W)`` as float32 in [0, 1] and their labels ``(N,)`` as int64."""

    images: torch.Tensor
    labels: torch.Tensor
    info: Info

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int, seed: int = 0) -> ImageSet:
        """``count`` images chosen at random (the same ones for the same seed)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        return ImageSet(self.images[order], self.labels[order], self.info)
