"""``auto``: the fastest backend that stays faithful to fp32 eager on a calibration batch.

A candidate is faithful when its probabilities give the same binary mask as fp32 eager on >= 99.5%
of pixels and differ by at most 0.01 anywhere. The registry says which backends are candidates on
each device (:func:`abanet.inference.backends.registry.auto_candidates`). Decisions are cached per
(model, size, batch, device) in memory and on disk.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abanet.data.atomic import write_bytes_atomic
from abanet.errors import AbanetError
from abanet.inference.backends.base import Backend
from abanet.inference.backends.cache import cache_dir
from abanet.inference.backends.devices import available_cores, cpu_name, loadavg, resolve_device
from abanet.inference.backends.registry import auto_candidates, build_backend, list_backends

MIN_PIXEL_AGREEMENT = 0.995
MAX_PROB_DIFF = 0.01


#: ``prefer`` backends win when at most this much slower than the fastest (alone on the model).
PREFER_MARGIN = 1.25


@dataclass
class CandidateResult:
    """How one backend did on the calibration batch."""

    name: str
    seconds_per_image: float | None = None
    pixel_agreement: float | None = None
    max_prob_diff: float | None = None
    faithful: bool = False
    skipped: str | None = None  # why it was not (fully) measured
    seconds_per_image_chunk1: float | None = None  # same backend, one image per call


@dataclass
class AutoSelection:
    """The decision ``auto`` made and the measurements behind it."""

    chosen: str
    size: int
    batch: int
    device: str
    max_batch: int | None = None  # the chosen backend runs batches in chunks of this size
    candidates: list[CandidateResult] = field(default_factory=list)
    from_cache: str | None = None  # "memory" / "disk" when reused
    seconds: float = 0.0
    loadavg: float | None = None  # 1-minute load average while measuring

    def summary(self) -> str:
        parts = []
        for c in self.candidates:
            if c.skipped and c.seconds_per_image is None:
                parts.append(f"{c.name}: skipped ({c.skipped})")
                continue
            ms = 1000 * (c.seconds_per_image or math.nan)
            text = f"{c.name}: {ms:.1f} ms/image"
            if c.seconds_per_image_chunk1 is not None:
                text += f" ({1000 * c.seconds_per_image_chunk1:.1f} one at a time)"
            agree = 100 * (c.pixel_agreement or 0)
            tag = "faithful" if c.faithful else "UNFAITHFUL"
            text += f", {tag} (agree {agree:.2f}%, max diff {c.max_prob_diff:.2g})"
            if c.skipped:
                text += f", dropped ({c.skipped})"
            parts.append(text)
        cached = f" [cached: {self.from_cache}]" if self.from_cache else ""
        chunk = f" in chunks of {self.max_batch}" if self.max_batch else ""
        return f"auto chose {self.chosen}{chunk}{cached}; " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_AUTO_MEMORY: dict[tuple[Any, ...], AutoSelection] = {}


def calibration_batch(
    batch: int, size: int, mean: Sequence[float], std: Sequence[float], seed: int = 0
) -> torch.Tensor:
    """Alternating random-noise and structured images (a face-like scene), normalised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    images = []
    for i in range(batch):
        if i % 2 == 0:
            img = rng.random((size, size, 3), dtype=np.float32)
        else:
            skin = np.array([0.85, 0.65, 0.55], np.float32)
            img = np.empty((size, size, 3), np.float32)
            img[...] = (0.3 + 0.4 * yy)[..., None] * np.array([0.6, 0.7, 0.9], np.float32)
            face = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2 <= 1
            img[face] = skin
            mask = face & (yy > 0.55 + 0.05 * np.sin(8 * xx))
            img[mask] = np.array([0.3, 0.55, 0.85], np.float32) if i % 4 == 1 else 0.95
            for ex in (0.38, 0.62):  # eyes
                img[((xx - ex) / 0.05) ** 2 + ((yy - 0.4) / 0.025) ** 2 <= 1] = 0.1
            img += rng.normal(0, 0.02, img.shape).astype(np.float32)
            img = np.clip(img, 0, 1)
        images.append((img - np.asarray(mean, np.float32)) / np.asarray(std, np.float32))
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def compare_outputs(
    probs: torch.Tensor, reference: torch.Tensor, threshold: float = 0.5
) -> tuple[float, float]:
    """(fraction of pixels with the same binary mask, max absolute probability difference)."""
    p, r = probs.float().cpu(), reference.float().cpu()
    if p.shape != r.shape:
        return 0.0, math.inf
    agree = float(((p > threshold) == (r > threshold)).float().mean())
    diff = float((p - r).abs().max()) if p.numel() else 0.0
    if not math.isfinite(diff):
        diff = math.inf
    return agree, diff


def is_faithful(agreement: float, max_diff: float) -> bool:
    return agreement >= MIN_PIXEL_AGREEMENT and max_diff <= MAX_PROB_DIFF


def _bf16_probe(device: torch.device) -> tuple[bool, str]:
    """A 3x3 conv in bf16 autocast vs fp32: is bf16 at least as fast here?"""
    if device.type == "cuda":
        return True, ""
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(1, 64, 64, 64)

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    def bf16() -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return conv(x)

    with torch.inference_mode():
        t32, t16 = timed(lambda: conv(x)), timed(bf16)
    if t16 > t32:
        return False, f"bf16 conv probe {1000 * t16:.1f} ms vs fp32 {1000 * t32:.1f} ms"
    return True, ""


def _machine_signature(device: torch.device) -> str:
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        ort_version = "none"
    return (
        f"{hw}|{platform.machine()}|threads={torch.get_num_threads()}|"
        f"torch={torch.__version__}|ort={ort_version}|{torch.backends.cpu.get_cpu_capability()}"
    )


def _auto_key(model: nn.Module, size: int, batch: int, device: torch.device) -> tuple[Any, ...]:
    config = getattr(model, "config", None)
    name = getattr(config, "name", type(model).__name__)
    kwargs = json.dumps(getattr(config, "kwargs", {}), sort_keys=True, default=str)
    return (name, kwargs, int(size), int(batch), str(device))


def _disk_cache_file() -> Path:
    return cache_dir() / "auto_backend.json"


def _read_disk_cache() -> dict[str, Any]:
    try:
        data = json.loads(_disk_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_disk_cache(key: str, value: dict[str, Any]) -> None:
    path = _disk_cache_file()
    try:
        data = _read_disk_cache()
        data[key] = value
        text = json.dumps(data, indent=1, sort_keys=True)
        write_bytes_atomic(path, text.encode(), overwrite=True)
    except OSError:  # a read-only home must not break inference
        pass


def select_backend(
    model: nn.Module,
    device: str | torch.device = "cpu",
    size: int | None = None,
    batch: int = 1,
    candidates: Sequence[str] | None = None,
    repeats: int = 2,
    use_cache: bool = True,
    disk_cache: bool = True,
    prefer: Sequence[str] = (),
) -> tuple[Backend, AutoSelection]:
    """Measure ``candidates`` (default: the registry's for the device) on a calibration batch;
    return the fastest faithful backend, or a faithful ``prefer`` backend within
    :data:`PREFER_MARGIN` of it (a caller that knows its context: the full-photo pipeline prefers
    ONNX Runtime, whose idle threads leave the face detector its cores).

    A candidate is faithful when its probabilities give the same binary mask as fp32 eager on
    >= 99.5% of pixels and differ by at most 0.01 anywhere. ``eager`` is always faithful and is
    the fallback. Candidates are timed round-robin (``repeats`` rounds, best round counts) so
    that load from other processes affects all of them alike.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    config = getattr(model, "config", None)
    size = int(size or getattr(config, "input_size", 256))
    batch = max(1, int(batch))
    names = list(candidates or auto_candidates(dev.type))
    if "eager" not in names:
        names.insert(0, "eager")
    registered = set(list_backends()) - {"auto"}
    prefer = tuple(prefer)
    key = (*_auto_key(model, size, batch, dev), prefer)
    disk_key = "|".join(map(str, key[:-1])) + "|" + _machine_signature(dev) + "|" + ",".join(names)
    if prefer:
        disk_key += "|prefer=" + ",".join(prefer)

    cached = _cached_selection(key, disk_key, use_cache, disk_cache)
    if cached is not None and cached.chosen in registered:
        try:
            backend = build_backend(cached.chosen, model, dev, size, batch)
        except AbanetError:
            backend = None
        if backend is not None and _still_faithful(backend, model, dev, size, batch, config):
            backend.max_batch = cached.max_batch
            backend.selection = cached
            return backend, cached

    start = time.perf_counter()
    load = loadavg()
    mean = getattr(config, "mean", (0.485, 0.456, 0.406))
    std = getattr(config, "std", (0.229, 0.224, 0.225))
    threshold = float(getattr(config, "threshold", 0.5))
    x = calibration_batch(batch, size, mean, std).to(dev)
    reference_backend = build_backend("eager", model, dev)
    reference = reference_backend.run(x)

    results: dict[str, CandidateResult] = {}
    live: dict[str, Backend] = {}
    for name in names:
        res = results[name] = CandidateResult(name)
        if name not in registered:
            res.skipped = "unknown backend"
            continue
        if name == "bf16":
            ok, why = _bf16_probe(dev)
            if not ok:
                res.skipped = why
                continue
        try:
            backend = (
                reference_backend
                if name == "eager"
                else build_backend(name, model, dev, size, batch)
            )
            probs = backend.run(x)  # also the warm-up
        except AbanetError as exc:
            res.skipped = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a broken runtime must not break auto
            first = (str(exc).strip().splitlines() or [""])[0]
            res.skipped = f"{type(exc).__name__}: {first}"
            continue
        res.pixel_agreement, res.max_prob_diff = compare_outputs(probs, reference, threshold)
        res.faithful = name == "eager" or is_faithful(res.pixel_agreement, res.max_prob_diff)
        if res.faithful:
            live[name] = backend
        else:
            res.skipped = "not faithful to fp32 eager"
            del backend

    # round 1: every faithful backend once; those over 1.5x the best are dropped
    timings: dict[tuple[str, int | None], float] = {}
    _time_round(live, [(n, None) for n in live], x, dev, timings)
    best = min(timings.values())
    configs = [k for k, t in timings.items() if t <= 1.5 * best]
    for name, _ in timings:
        if (name, None) not in configs:
            results[name].skipped = "over 1.5x slower than the best in round 1"
    if batch > 1:  # the two best also run one image per call
        configs += [(n, 1) for n, _ in sorted(configs, key=timings.__getitem__)[:2]]
    for _ in range(max(1, repeats)):
        _time_round(live, configs, x, dev, timings)
    for (name, chunk), seconds in timings.items():
        if chunk is None:
            results[name].seconds_per_image = seconds / batch
        else:
            results[name].seconds_per_image_chunk1 = seconds / batch

    # fastest; on near-ties (within 3%) prefer the earlier (fp32, simpler, whole-batch) one
    chosen = ("eager", None)
    for cfg in configs:
        if timings[cfg] < timings[chosen] * 0.97:
            chosen = cfg
    for name in prefer:  # the caller's context favours it, if it is nearly as fast
        if (name, None) in timings and timings[(name, None)] <= timings[chosen] * PREFER_MARGIN:
            chosen = (name, None)
            break
    selection = AutoSelection(
        chosen=chosen[0],
        size=size,
        batch=batch,
        device=str(dev),
        max_batch=chosen[1],
        candidates=[results[n] for n in names],
        seconds=time.perf_counter() - start,
        loadavg=load,
    )
    backend = live[chosen[0]]
    backend.max_batch = chosen[1]
    backend.selection = selection
    live.clear()
    if use_cache:
        _AUTO_MEMORY[key] = selection
        # timings taken on an overloaded machine are not worth keeping across runs
        busy = dev.type == "cpu" and load is not None and load > available_cores() + 0.5
        if disk_cache and not busy:
            _write_disk_cache(disk_key, selection.to_dict())
    return backend, selection


def _time_round(
    live: dict[str, Backend],
    configs: list[tuple[str, int | None]],
    x: torch.Tensor,
    dev: torch.device,
    timings: dict[tuple[str, int | None], float],
) -> None:
    """Run each (backend, chunk size) once on ``x``; keep the best time per configuration."""
    for name, chunk in configs:
        backend = live[name]
        backend.max_batch = chunk
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        backend.run(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        timings[(name, chunk)] = min(timings.get((name, chunk), math.inf), seconds)
        backend.max_batch = None


def _cached_selection(
    key: tuple[Any, ...], disk_key: str, use_cache: bool, disk_cache: bool
) -> AutoSelection | None:
    if not use_cache:
        return None
    if key in _AUTO_MEMORY:
        sel = copy.deepcopy(_AUTO_MEMORY[key])
        sel.from_cache = "memory"
        return sel
    if disk_cache:
        entry = _read_disk_cache().get(disk_key)
        if isinstance(entry, dict) and "chosen" in entry:
            try:
                cands = [CandidateResult(**c) for c in entry.get("candidates", [])]
                sel = AutoSelection(**{**entry, "candidates": cands})
            except TypeError:
                return None
            if measured_under_load(sel.loadavg, loadavg(), available_cores()):
                return None  # timed on a busy machine that is quiet now: measure again
            sel.from_cache = "disk"
            _AUTO_MEMORY[key] = sel
            return sel
    return None


def measured_under_load(then: float | None, now: float | None, cores: int) -> bool:
    """Whether a cached choice was timed while other work held half the cores or more and the
    machine is now quieter by half a core or more (timings taken under load can rank backends
    differently: on 2 loaded cores ONNX Runtime once measured 3x slower than on a quiet one)."""
    if then is None or now is None:
        return False
    return then >= 0.5 * cores and now <= then - 0.5


def _still_faithful(
    backend: Backend, model: nn.Module, dev: torch.device, size: int, batch: int, config: Any
) -> bool:
    """fp32 backends are faithful by construction; reduced precision is re-checked (other
    weights under the same model name may behave differently)."""
    if not backend.reduced_precision:
        return True
    mean = getattr(config, "mean", (0.485, 0.456, 0.406))
    std = getattr(config, "std", (0.229, 0.224, 0.225))
    x = calibration_batch(min(batch, 2), size, mean, std).to(dev)
    reference = build_backend("eager", model, dev).run(x)
    agree, diff = compare_outputs(
        backend.run(x), reference, float(getattr(config, "threshold", 0.5))
    )
    return is_faithful(agree, diff)


def clear_auto_cache(disk: bool = False) -> None:
    """Forget ``auto`` decisions (in memory; on disk too with ``disk=True``)."""
    _AUTO_MEMORY.clear()
    if disk:
        _disk_cache_file().unlink(missing_ok=True)


def auto_backend(
    model: nn.Module,
    device: torch.device,
    *,
    size: int | None = None,
    batch: int = 1,
    **options: Any,
) -> Backend:
    """The registry's ``auto`` factory: :func:`select_backend`'s choice (warnings of the
    candidates that lost are not the caller's concern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend, _ = select_backend(model, device, size=size, batch=batch, **options)
    return backend
