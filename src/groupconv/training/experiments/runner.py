"""Run many trainings, one process per job, under one progress bar; finished runs are kept.

Each run writes ``OUT/<run name>/metrics.json`` (last, so its presence marks a finished
run), ``checkpoint.pt`` and, for runs that record layers, ``layers.pt``. A run whose
``metrics.json`` already holds the same config is read back instead of trained again,
so an interrupted experiment resumes where it stopped, and ``train=False`` reads what
has finished without training anything.
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

from ...errors import GroupConvError
from .. import data as datasets
from ..train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Run:
    """One training of an experiment: its arm (``g2-wide``), its config, and the layers whose weights it keeps."""

    arm: str
    config: TrainConfig
    layers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``g2-wide-seed3``: the folder the run writes into."""
        return f"{self.arm}-seed{self.config.seed}"


def run_all(
    runs: Sequence[Run],
    out: str | Path,
    jobs: int = 1,
    threads: int | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    train: bool = True,
) -> list[dict | None]:
    """Train every unfinished run (``jobs`` at a time, ``threads`` torch threads each); all their metrics, in
    order, None for a run that has not finished (only when ``train`` is False).

    ``threads`` defaults to ``torch.get_num_threads() // jobs`` (at least 1).

    Raises:
        GroupConvError: ``train`` is False and none of ``runs`` has finished: there is nothing to report.
    """
    import torch

    out = Path(out)
    threads = threads or max(1, torch.get_num_threads() // jobs)
    todo = [run for run in runs if finished(run, out) is None] if train else []
    if todo:
        sizes = {name: len(datasets.load(name, "train", data_dir)) for name in {r.config.dataset for r in todo}}
        total = sum(_images(run.config, sizes[run.config.dataset]) for run in todo)
        with tqdm(total=total, unit="img", unit_scale=True, desc=f"{len(todo)} runs", disable=not progress) as bar:
            _train_all(todo, out, jobs, threads, data_dir, bar)
    metrics = [finished(run, out) for run in runs]
    if not train and all(m is None for m in metrics):  # a report of nothing would replace a real one
        seeds = ", ".join(map(str, dict.fromkeys(run.config.seed for run in runs)))
        raise GroupConvError(f"no finished runs for seeds {seeds} in {out}; train them first, or name seeds that have")
    return metrics


def finished(run: Run, out: str | Path) -> dict | None:
    """The metrics of a finished run of exactly ``run.config`` under ``out``, or None."""
    path = Path(out) / run.name / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    # Through TrainConfig: a field added since the run was recorded takes its default, the behaviour it ran with.
    return metrics if TrainConfig(**metrics["config"]) == run.config else None


def _images(config: TrainConfig, available: int) -> int:
    """Training images a run will see over all its epochs."""
    kept = available - config.validation
    return min(kept, config.train_subset or kept) * config.epochs


def _train_all(runs: Sequence[Run], out: Path, jobs: int, threads: int, data_dir, bar) -> None:
    """Train ``runs`` in ``jobs`` spawned processes, moving ``bar`` as their batches finish."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        images = manager.Queue()
        futures = [pool.submit(_train_one, run, out / run.name, threads, data_dir, images) for run in runs]
        while not all(future.done() for future in futures):
            try:
                bar.update(images.get(timeout=0.5))
            except queue.Empty:
                pass
        for future in futures:
            future.result()  # re-raise a worker's error here


def _train_one(run: Run, out: Path, threads: int, data_dir, images) -> None:
    """The body of one worker process."""
    import torch

    from ..train import train

    torch.set_num_threads(threads)
    train(run.config, out, data_dir, progress=False, advance=images.put, layers=run.layers)
