"""What every data set shares: its description, its tensors, and the missing-data error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import GroupConvError

_HOLD_OUT_SEED = 20261206  # the validation draw: fixed, so every run holds out the same images
_LUMA = (0.299, 0.587, 0.114)


class DataMissingError(GroupConvError):
    """A data file is not where it should be; the message says how to install it."""


@dataclass(frozen=True)
class Info:
    """A data set's name, image shape, class names, and the Debian packages (or the command) that install it."""

    name: str
    image_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]
    packages: tuple[str, ...]
    install: str | None = None  # a command for what is not a Debian package; {directory}: where it goes

    def missing(self, path: Path) -> DataMissingError:
        """The one-line error for a missing ``path``, with the command that installs it."""
        install = f"sudo apt-get update && sudo apt-get install -y {' '.join(self.packages)}"
        install = self.install.format(directory=path.parent) if self.install else install
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

    def split_off(self, count: int) -> tuple[ImageSet, ImageSet]:
        """``(the rest, count held-out images)``: the same draw every time, whatever the run's seed.

        Example:
            >>> data = ImageSet(torch.zeros(10, 1, 2, 2), torch.arange(10), None)
            >>> rest, held = data.split_off(3)
            >>> len(rest), len(held), sorted(rest.labels.tolist() + held.labels.tolist()) == list(range(10))
            (7, 3, True)
        """
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(_HOLD_OUT_SEED))
        rest, held = order[count:].sort().values, order[:count].sort().values
        return ImageSet(self.images[rest], self.labels[rest], self.info), ImageSet(
            self.images[held], self.labels[held], self.info
        )

    def greyscale(self) -> ImageSet:
        """Colour images as their luma (ITU-R BT.601 weights) in all three channels: same shape, no colour.

        Example:
            >>> red = ImageSet(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), torch.zeros(1), None)
            >>> red.greyscale().images.flatten().tolist()
            [0.29899999499320984, 0.29899999499320984, 0.29899999499320984]
        """
        if self.images.shape[1] != 3:
            raise GroupConvError(f"greyscale needs RGB images, these have {self.images.shape[1]} channel(s)")
        luma = torch.einsum("nchw,c->nhw", self.images, torch.tensor(_LUMA)).unsqueeze(1)
        return ImageSet(luma.expand(-1, 3, -1, -1).contiguous(), self.labels, self.info)

    def subset(self, count: int, seed: int = 0) -> ImageSet:
        """``count`` images chosen at random (the same ones for the same seed)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        return ImageSet(self.images[order], self.labels[order], self.info)
