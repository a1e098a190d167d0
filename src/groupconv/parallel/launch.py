"""Start the ranks of a process group: R local processes (:func:`spawn`), or torchrun's (:func:`initialize`).

Either way the backend is NCCL where there are GPUs (each rank on its own) and gloo on
the CPU, and every collective has a timeout, so a rank that stops makes the others fail
instead of waiting forever.
"""

from __future__ import annotations

import datetime
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import GroupConvError

DEFAULT_TIMEOUT = 60.0  # seconds a collective may wait for the other ranks


class LaunchError(RuntimeError):
    """A rank failed or overran; ``exitcodes`` has each rank's (negative: the signal that ended it)."""

    def __init__(self, message: str, exitcodes: list[int | None]):
        super().__init__(message)
        self.exitcodes = exitcodes


def initialize(timeout: float = DEFAULT_TIMEOUT, backend: str | None = None) -> None:
    """Join the process group torchrun's environment describes (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    Example (``torchrun --nproc-per-node 2 script.py``, in script.py)::

        groupconv.parallel.launch.initialize()
        model = groupconv.parallel.shard(model, example_input)
    """
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise GroupConvError(
            f"no process group to join: {', '.join(missing)} not set. Start the program with "
            "`torchrun --nproc-per-node R ...`, or let groupconv.parallel.launch.spawn start the processes"
        )
    _stop_with_parent(int(os.environ["RANK"]))  # torchrun's agent is the parent
    _join(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", backend, timeout,
          local_rank=int(os.environ.get("LOCAL_RANK", 0)))  # fmt: skip


def spawn(
    fn: Callable[..., object],
    world_size: int,
    *args,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float | None = None,
    backend: str | None = None,
) -> None:
    """Run ``fn(*args)`` in ``world_size`` new processes on this machine, each a rank of one
    process group, and wait for them.

    ``fn`` must be importable (a module-level function). Each rank gets
    ``cpu_count // world_size`` torch threads. Collectives wait at most ``timeout``
    seconds; when a rank fails, the others get that long to fail too (and say why) before
    they are stopped; after ``deadline`` seconds, if given, every rank still running is.

    Raises:
        LaunchError: a rank exited with an error or a signal, or overran ``deadline``.

    Example::

        spawn(train_one_rank, 2, config)   # train_one_rank(config) runs on ranks 0 and 1
    """
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="groupconv-") as folder:
        store = f"file://{os.path.join(folder, 'store')}"
        processes = [
            context.Process(target=_rank_main, args=(fn, args, rank, world_size, store, backend, timeout, os.getpid()))
            for rank in range(world_size)
        ]
        for process in processes:
            process.start()
        stopped = _wait(processes, grace=timeout + 5, deadline=deadline)
    _check([process.exitcode for process in processes], stopped)


def _rank_main(fn, args, rank: int, world_size: int, store: str, backend: str | None, timeout: float, launcher: int):
    try:
        _stop_with_parent(rank, launcher)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        _join(rank, world_size, store, backend, timeout, local_rank=rank)
        try:
            fn(*args)
            dist.barrier()  # all ranks done before any tears down: gloo can abort a rank whose peer left first
        finally:
            dist.destroy_process_group()
    except KeyboardInterrupt:  # Ctrl-C reaches every rank of the terminal's process group: the launcher says so once
        sys.exit(INTERRUPTED)


INTERRUPTED = 128 + signal.SIGINT  # a shell's status for a program stopped by Ctrl-C


PARENT_POLL_S = 0.5  # how often a rank checks that its launcher lives: it stops within this of the launcher's death


def _stop_with_parent(rank: int, parent: int | None = None) -> None:
    """End this process soon after ``parent`` (default: the process that started it) dies, killed say: a daemon
    thread polls the parent's pid, which changes when the orphan is adopted (even if that happened before this
    process got here: spawn passes its own pid). Portable, unlike Linux's PR_SET_PDEATHSIG."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        sys.stderr.write(f"groupconv.parallel: rank {rank} stops: its launcher (pid {parent}) has died\n")
        sys.stderr.flush()
        os._exit(1)  # no clean-up: the process group's other end is gone or going

    threading.Thread(target=watch, name="groupconv-parent-watch", daemon=True).start()


def _join(rank: int, world_size: int, init_method: str, backend: str | None, timeout: float, local_rank: int) -> None:
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend, init_method=init_method, rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout),
    )  # fmt: skip


def _wait(processes: list, grace: float, deadline: float | None) -> bool:
    """Wait for every process; once one fails, stop the rest after ``grace`` seconds. Whether any was stopped."""
    end = time.monotonic() + deadline if deadline is not None else float("inf")
    while any(process.is_alive() for process in processes):
        if any(process.exitcode not in (None, 0) for process in processes):
            end = min(end, time.monotonic() + grace)
        remaining = end - time.monotonic()
        if remaining <= 0:
            _stop(processes)
            return True
        alive = [process.sentinel for process in processes if process.is_alive()]
        multiprocessing.connection.wait(alive, timeout=min(remaining, 1.0))
    return False


def _stop(processes: list) -> None:
    """Terminate the processes still running; kill those that ignore it."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def _check(exitcodes: list[int | None], stopped: bool) -> None:
    failures = [f"rank {rank} {_exit(code)}" for rank, code in enumerate(exitcodes) if code != 0]
    if failures:
        note = " (ranks still running past the deadline, or long after another failed, were stopped)" if stopped else ""
        raise LaunchError(f"{'; '.join(failures)}{note}", exitcodes)


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was ended by {signal.Signals(-code).name}"
    return f"exited with status {code}"
