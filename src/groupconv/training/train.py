"""Train one model on one data set: seeded, with a progress bar, a checkpoint and ``metrics.json``.

    result = train(TrainConfig(model="alexnet", groups=2, epochs=5, validation=5000), out="runs/g2-s0")
    result.history[-1].val_error    # error on the validation split after the last epoch
    result.test_error               # error on the test split, measured once, after training
    model, config = load_checkpoint("runs/g2-s0/checkpoint.pt")

``validation`` images are carved from the training split (the same ones for every seed
and model) and measured after every epoch: the learning curve, and the only error any
choice may look at. The test split is measured once, at the end. The same config (seed
included), code and convolution routes on the same machine and thread count give the
same numbers: the seed fixes the initial weights, the batch order, the augmentation
and the dropout masks. ``metrics.json`` records the commit, library versions and routes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import platform
import subprocess
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import GroupConvError
from ..models import alexnet, mobilenet, resnext, shufflenet
from ..models.resnext import SMALL_STAGES
from . import data as datasets

MODELS: dict[str, Callable[..., nn.Module]] = {
    # name: (config, data info) -> model; `groups` is each model's grouping knob
    "alexnet": lambda c, info: alexnet(
        c.groups, len(info.classes), *info.image_shape[:2], c.width, c.dropout, c.widen, c.conv1_channels
    ),
    "resnext": lambda c, info: resnext(
        len(info.classes), info.image_shape[0], c.groups, c.bottleneck_width, stages=SMALL_STAGES
    ),
    "shufflenet": lambda c, info: shufflenet(
        c.groups, len(info.classes), info.image_shape[0], width=c.width, shuffle=c.shuffle
    ),
    "mobilenet": lambda c, info: mobilenet(len(info.classes), info.image_shape[0], width=c.width),
}


SCHEDULES = ("constant", "one-cycle")
_SHIFT = 2  # augmentation: pixels an image may move each way


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's numbers.

    ``groups`` is AlexNet's filter groups (conv2, conv4, conv5), ResNeXt's cardinality or
    ShuffleNet's groups; MobileNet takes none. ``train_subset`` / ``test_subset`` use a
    seeded random part of a split (None: all of it); ``validation`` images are held out of
    the training split first. AdamW (Adam when ``weight_decay`` is 0) at ``lr``, constant or
    on a one-cycle schedule (``lr`` its peak); ``augment`` shifts each training image by up
    to 2 pixels and mirrors half of them; ``greyscale`` turns colour images grey (kept as
    3 equal channels, so the model is the same). ``widen``, ``dropout``, ``conv1_channels`` are AlexNet's (``alexnet``)
    widths, ``bottleneck_width`` is ResNeXt's first-stage d, ``shuffle`` ShuffleNet's switch.
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
    validation: int = 0
    weight_decay: float = 0.0
    schedule: str = "constant"
    augment: bool = False
    greyscale: bool = False
    widen: float = 1.0
    dropout: float = 0.5
    conv1_channels: int | None = None
    bottleneck_width: float = 4.0
    shuffle: bool = True

    def __post_init__(self):
        if self.model not in MODELS:
            raise GroupConvError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.dataset not in datasets.DATASETS:
            raise GroupConvError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(datasets.DATASETS)}")
        if self.model == "mobilenet" and self.groups != 1:
            raise GroupConvError("mobilenet has no groups argument (its depthwise layers fix groups); use --groups 1")
        for name in ("epochs", "batch_size", "bottleneck_width"):
            if getattr(self, name) < 1:
                raise GroupConvError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise GroupConvError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.validation < 0 or self.weight_decay < 0:
            raise GroupConvError(
                f"validation and weight_decay must be >= 0, got {self.validation} and {self.weight_decay}"
            )


@dataclasses.dataclass(frozen=True)
class Epoch:
    """One epoch's record: mean training loss, error on the validation split (None without one), seconds taken."""

    epoch: int
    train_loss: float
    val_error: float | None
    seconds: float


@dataclasses.dataclass
class Result:
    """A finished run: its config, per-epoch history, test error, trained model and counts per image."""

    config: TrainConfig
    history: list[Epoch]
    test_error: float
    model: nn.Module
    params: int
    macs: int

    def to_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "params": self.params,
            "macs_per_image": self.macs,
            "threads": torch.get_num_threads(),
            "test_error": self.test_error,
            "train_seconds": sum(epoch.seconds for epoch in self.history),
            "epochs": [dataclasses.asdict(epoch) for epoch in self.history],
            **provenance(),
        }


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    advance: Callable[[int], object] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    layers: Sequence[str] = (),
) -> Result:
    """Train ``config``'s model; with ``out``, write ``checkpoint.pt`` and ``metrics.json`` there.

    ``layers`` names modules whose initial and trained weights go to ``layers.pt`` as well
    (``{name: {"initial": tensor, "trained": tensor}}``): small enough to keep with the metrics.

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
    train_set, validation_set, test_set = splits(config, data_dir)
    torch.manual_seed(config.seed)  # initial weights and dropout masks
    model = build_model(config)
    initial = {name: model.get_submodule(name).weight.detach().clone() for name in layers}
    trained = wrap(model) if wrap else model
    optimizer = torch.optim.AdamW(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = _scheduler(config, optimizer, steps_per_epoch)
    order = torch.Generator().manual_seed(config.seed)  # batch order and augmentation
    augment = (lambda images: shift_and_flip(images, order)) if config.augment else None
    history = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        bar = tqdm(total=len(train_set), desc=_label(config, epoch), unit="img", leave=False, disable=not progress)
        with bar:
            loss = train_epoch(
                trained, optimizer, train_set, config.batch_size, order, advance or bar.update, scheduler, augment
            )
        seconds = time.perf_counter() - start  # training only: the validation pass is not the model's cost
        val_error = evaluate(trained, validation_set) if validation_set is not None else None
        history.append(Epoch(epoch, loss, val_error, seconds))
        if progress:
            tqdm.write(_epoch_line(config, history[-1]))
    if trained is not model:
        model.load_state_dict(trained.full_state_dict())
    test_error = evaluate(model, test_set)
    shape = train_set.info.image_shape
    result = Result(config, history, test_error, model, count_params(model), count_macs(model, shape))
    if out is not None:
        kept = {
            name: {"initial": w, "trained": model.get_submodule(name).weight.detach().clone()}
            for name, w in initial.items()
        }
        save(result, out, kept)
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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One pass over ``data`` in a shuffled order (``augment`` applied per batch); the mean cross-entropy."""
    model.train()
    total = 0.0
    for batch in torch.randperm(len(data), generator=generator).split(batch_size):
        images = augment(data.images[batch]) if augment else data.images[batch]
        loss = nn.functional.cross_entropy(model(images), data.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
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


def shift_and_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to 2 pixels each way (zeros shifted in) and, at random, mirrored left-right.

    Example:
        >>> image = torch.arange(9.0).view(1, 1, 3, 3)
        >>> moved = shift_and_flip(image, torch.Generator().manual_seed(0))
        >>> moved.shape, set(moved.flatten().tolist()) <= set(range(9))
        (torch.Size([1, 1, 3, 3]), True)
    """
    count, _, height, width = images.shape
    padded = nn.functional.pad(images, (_SHIFT,) * 4)
    top, left = (torch.randint(0, 2 * _SHIFT + 1, (count,), generator=generator) for _ in range(2))
    rows = (top[:, None] + torch.arange(height))[:, :, None]  # (N, H, 1)
    columns = (left[:, None] + torch.arange(width))[:, None, :]  # (N, 1, W)
    shifted = padded[torch.arange(count)[:, None, None], :, rows, columns].permute(0, 3, 1, 2)  # (N, H, W, C) -> NCHW
    mirror = torch.rand(count, generator=generator) < 0.5
    return torch.where(mirror[:, None, None, None], shifted.flip(-1), shifted).contiguous()


def provenance() -> dict:
    """What else decides a run's numbers: the commit and uncommitted source files when this module was imported
    (the code a long-running process runs, not what the checkout holds by the time it saves), versions, routes."""
    import numpy

    from .. import __version__, tuning

    return {
        **_CODE,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "groupconv": __version__,
        },
        "routes": tuning.decisions_summary(),
    }


def _code() -> dict:
    """The checkout's commit and its uncommitted files under src/ (None and [] outside a git checkout)."""
    source = Path(__file__).resolve().parents[3]
    git = lambda *args: subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True).stdout
    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_source": changed}


_CODE = _code()  # at import: the code this process loaded


def count_params(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions and linear layers)."""
    from ..reports.summary import summary

    return summary(model, (1, *image_shape)).total_macs


def save(result: Result, out: str | Path, layers: dict | None = None) -> Path:
    """Write ``checkpoint.pt`` (weights and config), ``layers`` (if any) to ``layers.pt``, and ``metrics.json``
    (last: its presence marks a finished run) into ``out``; return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = {"config": dataclasses.asdict(result.config), "state_dict": result.model.state_dict()}
    torch.save(checkpoint, out / "checkpoint.pt")
    if layers:
        torch.save(layers, out / "layers.pt")
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return out


def load_checkpoint(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    """The trained model (in eval mode) and config that :func:`save` wrote to ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise GroupConvError(f"no checkpoint at {path}; `groupconv train --out DIR` writes DIR/checkpoint.pt")
    checkpoint = _read_checkpoint(path)
    config = _checkpoint_config(checkpoint, path)
    _check_checkpoint_fits(config, checkpoint["state_dict"], path)
    model = build_model(config)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), config


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint's dict; only tensors and plain values are unpickled (weights_only), so a crafted
    file cannot run code; anything else is one line naming the file."""
    if not _saved_by_torch(path):
        raise GroupConvError(f"{path} is not a groupconv checkpoint (nor any file torch.save writes); "
                             "`groupconv train --out DIR` writes DIR/checkpoint.pt")  # fmt: skip
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message advises weights_only=False: not advice to pass on
        raise GroupConvError(
            f"refused to load {path}: it is not only tensors and plain values ({_refusal(error)}), and loading more "
            "could run code; groupconv loads the checkpoints `groupconv train --out` writes"
        ) from None
    except Exception as error:  # torch.load on arbitrary bytes raises many kinds: all mean "not a checkpoint"
        raise GroupConvError(f"cannot read {path} as a checkpoint: {_first_line(error)}") from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), dict)
            and isinstance(checkpoint.get("state_dict"), dict)):  # fmt: skip
        raise GroupConvError(f"{path} is not a groupconv checkpoint: it has no 'config' and 'state_dict'")
    return checkpoint


def _saved_by_torch(path: Path) -> bool:
    """Whether ``path`` begins as torch.save's files do: a zip archive, or (its legacy format) a pickle."""
    with path.open("rb") as file:
        legacy = file.read(1) == pickle.PROTO  # torch.save's legacy format: pickle protocol 2, which begins so
    return legacy or zipfile.is_zipfile(path)


def _refusal(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused: the line of its message between its advice and its links."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(advice)]
    return lines[0] if lines else _first_line(error)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _checkpoint_config(checkpoint: dict, path: Path) -> TrainConfig:
    fields = checkpoint["config"]
    unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise GroupConvError(f"{path}: its config has fields this groupconv does not know: {', '.join(unknown)}")
    try:
        return TrainConfig(**fields)
    except TypeError as error:  # a field of the wrong type, compared or multiplied in validation
        raise GroupConvError(f"{path}: its config is invalid: {error}") from None


def _check_checkpoint_fits(config: TrainConfig, state: dict, path: Path) -> None:
    """Before any memory is spent: the model ``config`` describes, built on the meta device (no memory), must
    have exactly the checkpoint's tensors, and its parameters must fit in the memory that is free."""
    with torch.device("meta"):
        skeleton = build_model(config)
    expected = {name: tuple(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    given = {name: tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None for name, tensor in state.items()}
    if expected != given:
        wrong = sorted(name for name in expected.keys() | given.keys() if expected.get(name) != given.get(name))
        raise GroupConvError(
            f"{path}: its weights do not fit its config ({config.model}, width {config.width}, groups "
            f"{config.groups}): {len(wrong)} tensors differ, e.g. {wrong[0]}"
        )
    check_memory(f"{path}: its model", sum(t.numel() * t.element_size() for t in skeleton.state_dict().values()))


def check_memory(what: str, needed: int, fix: str = "", ceiling: int | None = None) -> None:
    """Refuse, before it is allocated, ``needed`` bytes for ``what`` over ``ceiling`` or over the memory free
    now; ``fix``, if given, says what to change."""
    free = free_memory()
    if ceiling is not None and needed > ceiling:
        limit = f"over the {_gib(ceiling)} allowed"
    elif free is not None and needed > free:
        limit = f"more than the {_gib(free)} of memory free"
    else:
        return
    raise GroupConvError(f"{what} needs {_gib(needed)}, {limit}" + (f"; {fix}" if fix else ""))


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def free_memory() -> int | None:
    """Bytes of memory free now (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def splits(config: TrainConfig, data_dir=None) -> tuple[datasets.ImageSet, datasets.ImageSet | None, datasets.ImageSet]:
    """Training, validation (None when ``config.validation`` is 0) and test images, as ``config`` cuts them.

    The validation images are the same for every seed: a fixed draw from the training split.
    """
    train_set, test_set = (
        _coloured(datasets.load(config.dataset, split, data_dir), config) for split in ("train", "test")
    )
    validation_set = None
    if config.validation:
        if config.validation >= len(train_set):
            raise GroupConvError(
                f"validation={config.validation} leaves no training images of {len(train_set)}; use fewer"
            )
        train_set, validation_set = train_set.split_off(config.validation)
    cut = lambda data, count: data if count is None or count >= len(data) else data.subset(count, seed=config.seed)
    return cut(train_set, config.train_subset), validation_set, cut(test_set, config.test_subset)


def _coloured(data: datasets.ImageSet, config: TrainConfig) -> datasets.ImageSet:
    return data.greyscale() if config.greyscale else data


def _scheduler(config: TrainConfig, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """One-cycle: warm up over the first 30% of steps to ``lr``, then cosine down to ``lr``/10,000."""
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)


def _label(config: TrainConfig, epoch: int) -> str:
    return f"{config.model} g={config.groups} seed={config.seed} epoch {epoch}/{config.epochs}"


def _epoch_line(config: TrainConfig, epoch: Epoch) -> str:
    validation = "" if epoch.val_error is None else f"  val error {100 * epoch.val_error:.2f}%"
    return f"{_label(config, epoch.epoch)}: train loss {epoch.train_loss:.4f}{validation}  ({epoch.seconds:.0f} s)"
