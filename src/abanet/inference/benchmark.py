"""Inference speed: images/s, ms/image and peak memory of a backend, optionally against the
naive reference (fp32, contiguous, eager, batch 1: how the authors' code runs)."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abanet.data.preprocess import resolve_data_config
from abanet.inference.backends.base import Backend
from abanet.inference.backends.devices import configure_threads, cpu_name, loadavg
from abanet.inference.backends.registry import build_backend, create_backend
from abanet.models.hub import resolve_model

# -- memory -------------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process over a window, in MB above the window's start.

    Uses ``/proc/self/status`` VmHWM reset through ``/proc/self/clear_refs`` (Linux); elsewhere
    falls back to ``getrusage`` ``ru_maxrss``, which never goes down (the delta is then a lower
    bound, 0 if an earlier phase peaked higher). On CUDA it is ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self._base_kb = 0

    def start(self, base_kb: int | None = None) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base_kb = torch.cuda.memory_allocated(self.device) // 1024
            self.method = "torch.cuda.max_memory_allocated"
            return
        rss = _status_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM (reset via clear_refs)"
        except OSError:
            self.method = "ru_maxrss (not resettable: lower bound)"
        if base_kb is not None:
            self._base_kb = base_kb
        elif rss is not None:
            self._base_kb = rss
        else:
            self._base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @staticmethod
    def rss_kb() -> int | None:
        return _status_kb("VmRSS")

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak_kb = torch.cuda.max_memory_allocated(self.device) // 1024
        elif self.method.startswith("VmHWM"):
            peak_kb = _status_kb("VmHWM") or 0
        else:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0.0, (peak_kb - self._base_kb) / 1024.0)


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS is honest."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# -- timing -------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"


def run_benchmark(
    model: str | os.PathLike[str] | nn.Module,
    size: int | None = None,
    batch: int = 1,
    device: str | torch.device = "cpu",
    backend: str = "eager",
    iters: int = 10,
    warmup: int = 2,
    vs_naive: bool = False,
    num_threads: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    backend_options: dict[str, Any] | None = None,
    agreement: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Time ``backend`` on random ``(batch, 3, size, size)`` inputs; return one flat dict.

    Keys include model, size, batch, device, backend, backend_used, images_per_s, ms_per_image
    (median over ``iters`` timed batches after ``warmup``), peak_mem_mb and, with ``vs_naive``,
    naive_images_per_s, naive_ms_per_image and speedup_vs_naive. With ``vs_naive`` the naive
    reference is timed interleaved with the backend (one naive image after each timed batch), so
    both see the same machine load.

    ``backend_options`` go to the backend's factory (``onnxruntime_int8``: ``calibration``,
    ``count``, ``method``, ``exclude``). With ``agreement`` (a labelled dataset folder) the
    backend's masks are also compared with fp32 eager's on it
    (:func:`abanet.inference.agreement.backend_agreement`): key ``agreement``.

    ``peak_mem_mb`` is the growth of resident memory from just before the backend is built to the
    peak of its warm-up runs (its own weight copies or ONNX session plus activations); on CUDA,
    the peak of ``torch.cuda.max_memory_allocated`` above the allocation before warm-up. Freed
    heap is handed back first, but a process that ran bigger jobs before may still under-report:
    a fresh process (the CLI) gives the clearest figure.
    """
    say = log or (lambda _msg: None)
    threads = configure_threads(num_threads)
    net, dev, source = resolve_model(model, device, random_weights=True, seed=seed)
    config = net.config
    size = resolve_data_config(config, size).size
    batch, iters, warmup = max(1, int(batch)), max(1, int(iters)), max(0, int(warmup))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=generator).to(dev)
    load_start = loadavg()

    memory = PeakMemory(dev)
    _release_freed_memory()
    rss_before = memory.rss_kb()
    say(f"building backend {backend} for {config.name} at {size}x{size}, batch {batch} on {dev}")
    t0 = time.perf_counter()
    engine: Backend = create_backend(
        net, backend, dev, size=size, batch=batch, **(backend_options or {})
    )
    setup_s = time.perf_counter() - t0
    selection = getattr(engine, "selection", None)
    if selection is not None:
        say(selection.summary())

    _release_freed_memory()  # what auto's discarded candidates freed is not the backend's
    memory.start(base_kb=rss_before)
    first_run_s = _timed(lambda: engine.run(x), dev)
    for _ in range(max(0, warmup - 1)):
        engine.run(x)
    peak_mem_mb = memory.peak_mb()

    naive: Backend | None = None
    naive_x = x[:1]
    naive_peak = None
    if vs_naive:
        naive = build_backend("eager", net, dev)
        memory.start()
        for _ in range(max(1, warmup)):
            naive.run(naive_x)
        naive_peak = memory.peak_mb()

    times: list[float] = []
    naive_times: list[float] = []
    say(f"timing {iters} batches" + (" interleaved with the naive reference" if naive else ""))
    for _ in range(iters):
        times.append(_timed(lambda: engine.run(x), dev))
        if naive is not None:
            naive_times.append(_timed(lambda: naive.run(naive_x), dev))

    median = statistics.median(times)
    result: dict[str, Any] = {
        "model": config.name,
        "model_source": source,
        "size": size,
        "batch": batch,
        "device": str(dev),
        "hardware": _hardware(dev),
        "threads": threads,
        "backend": backend,
        "backend_used": engine.name,
        "backend_detail": engine.describe(),
        "images_per_s": batch / median,
        "ms_per_image": 1000.0 * median / batch,
        "ms_per_batch_median": 1000.0 * median,
        "ms_per_batch_min": 1000.0 * min(times),
        "iters": iters,
        "warmup": warmup,
        "setup_s": setup_s,
        "first_run_s": first_run_s,
        "peak_mem_mb": peak_mem_mb,
        "peak_mem_method": memory.method,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    if selection is not None:
        result["auto_selection"] = selection.to_dict()
    if naive is not None:
        naive_median = statistics.median(naive_times)
        result.update(
            naive_images_per_s=1.0 / naive_median,
            naive_ms_per_image=1000.0 * naive_median,
            naive_peak_mem_mb=naive_peak,
            speedup_vs_naive=(batch / median) / (1.0 / naive_median),
        )
    if agreement is not None:
        from abanet.inference.agreement import backend_agreement

        say(f"comparing masks with fp32 eager on {agreement}")
        report = backend_agreement(net, agreement, engine, size=size, batch_size=batch, device=dev)
        result["agreement"] = report.to_dict()
        result["agreement_lines"] = report.lines()
    return result


def format_result(result: dict[str, Any]) -> str:
    """Human-readable summary lines."""
    lines = [
        f"{result['model']} ({result['model_source']}) {result['size']}x{result['size']}, "
        f"batch {result['batch']}, {result['device']} [{result['hardware']}, "
        f"{result['threads']} threads]",
        f"backend {result['backend']}"
        + (f" -> {result['backend_used']}" if result["backend_used"] != result["backend"] else "")
        + f": {result['images_per_s']:.2f} images/s, {result['ms_per_image']:.1f} ms/image "
        f"(median of {result['iters']} batches after {result['warmup']} warm-up; setup "
        f"{result['setup_s']:.1f} s, first run {result['first_run_s']:.2f} s)",
        f"peak memory: {result['peak_mem_mb']:.0f} MB above the start "
        f"({result['peak_mem_method']})",
    ]
    if "speedup_vs_naive" in result:
        lines.append(
            f"naive reference (eager fp32, contiguous, batch 1), same run: "
            f"{result['naive_images_per_s']:.2f} images/s, {result['naive_ms_per_image']:.1f} "
            f"ms/image -> speed-up {result['speedup_vs_naive']:.2f}x"
        )
    lines += result.get("agreement_lines", [])
    lines.append(
        f"load average: {result['loadavg_start']} at start, {result['loadavg_end']} at end"
    )
    return "\n".join(lines)
