"""Train one model on one data set: seeded, with a progress bar, a checkpoint and ``metrics.json``.

    result = train(TrainConfig(model="alexnet", groups=2, epochs=5, seed=0), out="runs/g2-s0")
    result.history[-1].val_error    # error on the held-out split after the last epoch
    model, config = load_checkpoint("runs/g2-s0/checkpoint.pt")

The same config (seed included) on the same machine and thread count gives the same
numbers: the seed fixes the initial weights, the batch order and the dropout masks.
"Validation error" is the error on the data set's test split (Fashion-MNIST's 10,000
test images), measured after every epoch; nothing is tuned on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import GroupConvError
from ..models import alexnet, mobilenet, resnext, shufflenet
from . import data as datasets

MODELS: dict[str, Callable[..., nn.Module]] = {
    # name: (config, data info) -> model; `groups` is each model's grouping knob
    "alexnet": lambda c, info: alexnet(c.groups, len(info.classes), info.image_shape[0], info.image_shape[1], c.width),
    "resnext": lambda c, info: resnext(len(info.classes), info.image_shape[0], cardinality=c.groups),
    "shufflenet": lambda c, info: shufflenet(c.groups, len(info.classes), info.image_shape[0], width=c.width),
    "mobilenet": lambda c, info: mobilenet(len(info.classes), info.image_shape[0], width=c.width),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's numbers.

    ``groups`` is AlexNet's filter groups (conv2, conv4, conv5), ResNeXt's cardinality or
    ShuffleNet's groups; MobileNet takes none. ``train_subset`` / ``test_subset`` use a
    seeded random part of a split (None: all of it). Adam with a constant learning rate.
    """

    model: str = "alexnet"
    groups: int = 1
    dataset: str = "fashion-mnist"
    epochs: int = 5
    seed: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    width: float = 0.125
    train_subset: int | None = None
    test_subset: int | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise GroupConvError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.dataset not in datasets.DATASETS:
            raise GroupConvError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(datasets.DATASETS)}")
        if self.model == "mobilenet" and self.groups != 1:
            raise GroupConvError("mobilenet has no groups argument (its depthwise layers fix groups); use --groups 1")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise GroupConvError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Epoch:
    """One epoch's record: mean training loss, error on the test split, and seconds taken."""

    epoch: int
    train_loss: float
    val_error: float
    seconds: float


@dataclasses.dataclass
class Result:
    """A finished run: its config, per-epoch history, trained model and counts per image."""

    config: TrainConfig
    history: list[Epoch]
    model: nn.Module
    params: int
    macs: int

    def to_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "params": self.params,
            "macs_per_image": self.macs,
            "threads": torch.get_num_threads(),
            "epochs": [dataclasses.asdict(epoch) for epoch in self.history],
        }


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    advance: Callable[[int], object] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> Result:
    """Train ``config``'s model; with ``out``, write ``checkpoint.pt`` and ``metrics.json`` there.

    ``progress`` shows a bar per epoch and a line after it; ``advance``, if given, is
    called with the number of images after every batch instead (for a caller's own bar).
    ``wrap``, if given, turns the built model into the one trained, such as its
    group-parallel split (:func:`groupconv.parallel.shard`); that one's ``full_state_dict()``
    gives the result and checkpoint the whole model back.

    Example (a few batches of real data):
        >>> config = TrainConfig(groups=2, epochs=1, train_subset=256, test_subset=256, batch_size=64)
        >>> result = train(config, progress=False)  # doctest: +SKIP
        >>> len(result.history), 0 <= result.history[0].val_error <= 1  # doctest: +SKIP
        (1, True)
    """
    train_set, test_set = _splits(config, data_dir)
    torch.manual_seed(config.seed)  # initial weights and dropout masks
    model = build_model(config)
    trained = wrap(model) if wrap else model
    optimizer = torch.optim.Adam(trained.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)  # batch order
    history = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        bar = tqdm(total=len(train_set), desc=_label(config, epoch), unit="img", leave=False, disable=not progress)
        with bar:
            loss = train_epoch(trained, optimizer, train_set, config.batch_size, order, advance or bar.update)
        history.append(Epoch(epoch, loss, evaluate(trained, test_set), time.perf_counter() - start))
        if progress:
            tqdm.write(_epoch_line(config, history[-1]))
    if trained is not model:
        model.load_state_dict(trained.full_state_dict())
    result = Result(config, history, model, count_params(model), count_macs(model, train_set.info.image_shape))
    if out is not None:
        save(result, out)
    return result


def build_model(config: TrainConfig) -> nn.Module:
    """The untrained model ``config`` names, shaped for its data set."""
    return MODELS[config.model](config, datasets.DATASETS[config.dataset])


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: datasets.ImageSet,
    batch_size: int,
    generator: torch.Generator,
    advance: Callable[[int], object] = lambda n: None,
) -> float:
    """One pass over ``data`` in a shuffled order; the mean cross-entropy over its images."""
    model.train()
    total = 0.0
    for batch in torch.randperm(len(data), generator=generator).split(batch_size):
        loss = nn.functional.cross_entropy(model(data.images[batch]), data.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise GroupConvError(f"the training loss became {loss.item()}; lower --lr (now {optimizer.defaults['lr']})")
        total += loss.item() * len(batch)
        advance(len(batch))
    return total / len(data)


@torch.no_grad()
def evaluate(model: nn.Module, data: datasets.ImageSet, batch_size: int = 500) -> float:
    """The fraction of ``data`` that ``model`` (in eval mode) classifies wrongly."""
    model.eval()
    wrong = sum(
        (model(images).argmax(1) != labels).sum().item()
        for images, labels in zip(data.images.split(batch_size), data.labels.split(batch_size))
    )
    return wrong / len(data)


def count_params(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions and linear layers)."""
    from ..reports.summary import summary

    return summary(model, (1, *image_shape)).total_macs


def save(result: Result, out: str | Path) -> Path:
    """Write ``checkpoint.pt`` (weights and config) and ``metrics.json`` into ``out``; return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = {"config": dataclasses.asdict(result.config), "state_dict": result.model.state_dict()}
    torch.save(checkpoint, out / "checkpoint.pt")
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return out


def load_checkpoint(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    """The trained model (in eval mode) and config that :func:`save` wrote to ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise GroupConvError(f"no checkpoint at {path}; `groupconv train --out DIR` writes DIR/checkpoint.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = TrainConfig(**checkpoint["config"])
    model = build_model(config)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), config


def _splits(config: TrainConfig, data_dir) -> tuple[datasets.ImageSet, datasets.ImageSet]:
    """The train and test splits, each cut to its subset size when one is set."""
    splits = []
    for split, count in (("train", config.train_subset), ("test", config.test_subset)):
        data = datasets.load(config.dataset, split, data_dir)
        splits.append(data if count is None or count >= len(data) else data.subset(count, seed=config.seed))
    return splits[0], splits[1]


def _label(config: TrainConfig, epoch: int) -> str:
    return f"{config.model} g={config.groups} seed={config.seed} epoch {epoch}/{config.epochs}"


def _epoch_line(config: TrainConfig, epoch: Epoch) -> str:
    return (
        f"{_label(config, epoch.epoch)}: train loss {epoch.train_loss:.4f}  "
        f"val error {100 * epoch.val_error:.2f}%  ({epoch.seconds:.0f} s)"
    )
