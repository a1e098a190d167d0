"""The machine a measurement ran on: CPU, cores, threads, library versions and date (the benchmark's
report and the tuning cache's fingerprint both describe it from here)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform

import torch

from . import memory

_LIBRARIES = ("torch", "numpy", "onnxruntime", "openvino", "groupconv")


def describe() -> dict[str, object]:
    """CPU model, cores, ``torch.get_num_threads()``, the malloc policy, versions and the UTC date, as plain values."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": memory.policy(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in _LIBRARIES},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def cpu_model() -> str:
    """The first ``model name`` in /proc/cpuinfo (Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(name: str) -> str:
    """The installed version of the distribution ``name``, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
