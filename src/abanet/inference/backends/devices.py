"""Devices, threads and the machine: what a backend runs on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from abanet.errors import BackendError


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto``; CUDA without CUDA fails with a clear message."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {name!r} was requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}, {torch.cuda.device_count()} GPUs visible); "
                "use --device cpu"
            )
        return torch.device(name)
    if name != "cpu":
        raise BackendError(f"unknown device {name!r} (use cpu, cuda or auto)")
    return torch.device("cpu")


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """Use ``num_threads`` (default: every available core) for PyTorch's intra-op pool."""
    n = int(num_threads or available_cores())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def loadavg() -> float | None:
    """The 1-minute load average (None where the system does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "cpu"
