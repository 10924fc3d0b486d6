"""Inference backends: one ``run(batch) -> probabilities`` interface over several runtimes.

``create_backend(model, name, device)`` builds a backend named in the registry
(:func:`list_backends`; ``abanet predict --help`` lists them with their devices). Every backend
takes a float32, normalised ``(B, 3, H, W)`` tensor and returns float32 probabilities
``(B, 1, H, W)`` on the input's device.

Modules, one job each: :mod:`~abanet.inference.backends.registry` (the registry,
``create_backend``), :mod:`~.devices` (devices, threads, the machine), :mod:`~.base` (the
interface), :mod:`~.runtimes` (the backends), :mod:`~.batchnorm` (BatchNorm folding),
:mod:`~.cache` (ONNX exports on disk), :mod:`~.auto` (the fastest faithful backend).

The names below are imported on first use, so that the registry (and the CLI's help, which reads
it) does not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abanet.errors import BackendError
from abanet.lazy import lazy_getattr

_LAZY = {
    "BackendSpec": "registry",
    "build_backend": "registry",
    "create_backend": "registry",
    "get_backend_spec": "registry",
    "list_backends": "registry",
    "auto_candidates": "registry",
    "available_cores": "devices",
    "configure_threads": "devices",
    "resolve_device": "devices",
    "Backend": "base",
    "fold_batchnorm": "batchnorm",
    "cache_dir": "cache",
    "cached_onnx_path": "cache",
    "AutoSelection": "auto",
    "clear_auto_cache": "auto",
    "select_backend": "auto",
}

if TYPE_CHECKING:  # pragma: no cover
    from abanet.inference.backends.auto import AutoSelection, clear_auto_cache, select_backend
    from abanet.inference.backends.base import Backend
    from abanet.inference.backends.batchnorm import fold_batchnorm
    from abanet.inference.backends.cache import cache_dir, cached_onnx_path
    from abanet.inference.backends.devices import (
        available_cores,
        configure_threads,
        resolve_device,
    )
    from abanet.inference.backends.registry import (
        BackendSpec,
        auto_candidates,
        build_backend,
        create_backend,
        get_backend_spec,
        list_backends,
    )

__all__ = [
    "AutoSelection",
    "Backend",
    "BackendError",
    "BackendSpec",
    "auto_candidates",
    "available_cores",
    "build_backend",
    "cache_dir",
    "cached_onnx_path",
    "clear_auto_cache",
    "configure_threads",
    "create_backend",
    "fold_batchnorm",
    "get_backend_spec",
    "list_backends",
    "resolve_device",
    "select_backend",
]


__getattr__ = lazy_getattr(__name__, _LAZY, f"{__name__}.")
