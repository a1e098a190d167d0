"""Run many trainings, one process per job, under one progress bar; finished runs are kept.

Each run writes ``OUT/<run name>/metrics.json`` and ``checkpoint.pt``. A run whose
``metrics.json`` already holds the same config is read back instead of trained again,
so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import queue
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from .. import data as datasets
from ..train import TrainConfig


def run_name(config: TrainConfig) -> str:
    """``alexnet-g2-seed0``: the folder a run writes into."""
    return f"{config.model}-g{config.groups}-seed{config.seed}"


def run_all(
    configs: Sequence[TrainConfig],
    out: str | Path,
    jobs: int = 1,
    threads: int | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train every config (``jobs`` at a time, ``threads`` torch threads each); their metrics, in order.

    ``threads`` defaults to ``torch.get_num_threads() // jobs`` (at least 1).
    """
    import torch

    out = Path(out)
    threads = threads or max(1, torch.get_num_threads() // jobs)
    todo = [config for config in configs if _finished(config, out) is None]
    available = {name: len(datasets.load(name, "train", data_dir)) for name in {c.dataset for c in todo}}
    total = sum(min(available[c.dataset], c.train_subset or available[c.dataset]) * c.epochs for c in todo)
    with tqdm(total=total, unit="img", unit_scale=True, desc=f"{len(todo)} runs", disable=not progress) as bar:
        if todo:
            _train_all(todo, out, jobs, threads, data_dir, bar)
    return [_finished(config, out) for config in configs]


def _train_all(configs, out: Path, jobs: int, threads: int, data_dir, bar) -> None:
    """Train ``configs`` in ``jobs`` spawned processes, moving ``bar`` as their batches finish."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        images = manager.Queue()
        futures = [pool.submit(_train_one, c, out / run_name(c), threads, data_dir, images) for c in configs]
        while not all(future.done() for future in futures):
            try:
                bar.update(images.get(timeout=0.5))
            except queue.Empty:
                pass
        for future in futures:
            future.result()  # re-raise a worker's error here


def _train_one(config: TrainConfig, out: Path, threads: int, data_dir, images) -> None:
    """The body of one worker process."""
    import torch

    from ..train import train

    torch.set_num_threads(threads)
    train(config, out, data_dir, progress=False, advance=images.put)


def _finished(config: TrainConfig, out: Path) -> dict | None:
    """The metrics of a finished run of exactly ``config`` under ``out``, or None."""
    path = out / run_name(config) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics["config"] == dataclasses.asdict(config) else None
