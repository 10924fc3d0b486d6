"""The backend registry: each backend's name, factory, devices, ``auto`` candidacy and summary.

The CLI's ``--backend`` choices, help and checks, :func:`create_backend` and ``auto``'s candidates
all read the registry through the functions below. Importing this module is light (no torch):
factories are ``module:name`` strings under ``abanet.inference.backends``, imported when a backend
is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from abanet.errors import BackendError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from abanet.inference.backends.base import Backend

DEVICE_TYPES = ("cpu", "cuda")


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend.

    Attributes:
        name: what ``--backend`` and :func:`create_backend` take.
        factory: ``(model, device) -> Backend`` (with ``needs_shape``, also ``size=``/``batch=``),
            or its ``module:name`` under ``abanet.inference.backends``.
        summary: one line for help texts and docs.
        devices: the device types it runs on.
        auto_rank: device type -> its place among ``auto``'s candidates there (lower wins
            near-ties); a device type it lacks is one where ``auto`` does not try it.
        needs_shape: built for one input size and batch (tuned or calibrated on them).
    """

    name: str
    factory: str | Callable[..., Backend]
    summary: str
    devices: tuple[str, ...] = DEVICE_TYPES
    auto_rank: Mapping[str, int] = field(default_factory=dict)
    needs_shape: bool = False

    def load(self) -> Callable[..., Backend]:
        """The factory, imported on first use."""
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(f"abanet.inference.backends.{module}"), attr)


_REGISTRY: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "eager",
            "runtimes:EagerBackend",
            "the model as is: fp32, contiguous memory (the reference)",
            auto_rank={"cpu": 0, "cuda": 0},
        ),
        BackendSpec(
            "eager_fused",
            "runtimes:FusedBackend",
            "a channels-last copy with every BatchNorm folded into the convolution before it",
            auto_rank={"cpu": 2},
        ),
        BackendSpec(
            "channels_last",
            "runtimes:ChannelsLastBackend",
            "a copy in NHWC memory layout (oneDNN's preferred layout on CPU)",
            auto_rank={"cpu": 1, "cuda": 1},
        ),
        BackendSpec(
            "winograd",
            "runtimes:WinogradBackend",
            "eager_fused in NCHW, each 3x3 stride-1 convolution on NNPACK Winograd where that "
            "measured faster at the input size and batch",
            devices=("cpu",),
            auto_rank={"cpu": 3},
            needs_shape=True,
        ),
        BackendSpec(
            "bf16",
            "runtimes:Bf16Backend",
            "torch.autocast bfloat16 (emulated, i.e. slow, on CPUs without AVX-512-BF16/AMX)",
            auto_rank={"cpu": 5, "cuda": 3},
        ),
        BackendSpec(
            "fp16",
            "runtimes:Fp16Backend",
            "torch.autocast float16",
            devices=("cuda",),
            auto_rank={"cuda": 2},
        ),
        BackendSpec(
            "onnxruntime",
            "runtimes:OnnxRuntimeBackend",
            "the model exported to ONNX (cached on disk), run by ONNX Runtime",
            auto_rank={"cpu": 4, "cuda": 4},
        ),
        BackendSpec(
            "tensorrt",
            "runtimes:TensorRtBackend",
            "the ONNX export run by ONNX Runtime's TensorRT execution provider (fp16 engines, "
            "cached; needs onnxruntime-gpu with TensorRT)",
            devices=("cuda",),
        ),
        BackendSpec(
            "onnxruntime_int8",
            "int8:OnnxRuntimeInt8Backend",
            "the ONNX export statically quantized to int8 by ONNX Runtime (QDQ, per-channel "
            "weights), calibrated on real crops (--calibration / $ABANET_INT8_CALIBRATION); "
            "opt-in, judged by mask agreement",
            devices=("cpu",),
            needs_shape=True,
        ),
        BackendSpec(
            "compile",
            "runtimes:CompiledBackend",
            "torch.compile (inductor; needs a C compiler on CPU; compiles once per input shape)",
        ),
        BackendSpec(
            "auto",
            "auto:auto_backend",
            "the fastest of auto's candidates for the device that stays faithful to fp32 eager "
            "(measured once per model, size, batch and machine; cached)",
            needs_shape=True,
        ),
    )
}


def list_backends(device: str | None = None) -> list[str]:
    """Registered backend names, in registry order; ``device`` (a type): those that run there."""
    return [n for n, s in _REGISTRY.items() if device is None or device in s.devices]


def get_backend_spec(name: str) -> BackendSpec:
    """The registry entry of ``name`` (BackendError listing the registry when unknown)."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def check_backend(name: str, device_type: str) -> BackendSpec:
    """The entry of ``name`` if it runs on ``device_type``; BackendError saying why not."""
    spec = get_backend_spec(name)
    if device_type not in spec.devices:
        here = ", ".join(list_backends(device_type))
        raise BackendError(
            f"backend {name} runs on {' or '.join(spec.devices)} only, not {device_type} "
            f"(backends for {device_type}: {here})"
        )
    return spec


def auto_candidates(device_type: str) -> list[str]:
    """What ``auto`` tries on ``device_type``, in order of preference on near-ties."""
    ranked = [
        (s.auto_rank[device_type], n) for n, s in _REGISTRY.items() if device_type in s.auto_rank
    ]
    return [n for _, n in sorted(ranked)]


def backend_help(default: str) -> str:
    """Help text of a ``--backend`` option: every registered name, device limits noted."""
    names = [
        n if s.devices == DEVICE_TYPES else f"{n} ({'/'.join(s.devices)})"
        for n, s in _REGISTRY.items()
    ]
    return f"Inference backend: {', '.join(names)}. {default}: {_REGISTRY[default].summary}."


def build_backend(
    name: str,
    model: nn.Module,
    device: torch.device,
    size: int | None = None,
    batch: int = 1,
    **options: Any,
) -> Backend:
    """Backend ``name`` for ``model`` on ``device`` (a resolved ``torch.device``), as registered.

    ``size``/``batch`` (and ``options``) reach factories that need a shape; others take any valid
    shape.
    """
    spec = check_backend(name, device.type)
    if not getattr(model, "trainable", True) and name not in ("eager", "auto"):
        mname = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise BackendError(
            f"{mname}: a classical method (no network to compile or export) runs on the eager "
            f"backend only, not {name}; use --backend eager"
        )
    model = model.to(device).eval()
    factory = spec.load()
    if spec.needs_shape:
        backend = factory(model, device, size=size, batch=batch, **options)
    else:
        backend = factory(model, device)
    if "name" not in vars(backend):  # auto returns a backend its candidate's build named
        backend.name = name
    return backend


def create_backend(
    model: nn.Module,
    name: str = "auto",
    device: str | torch.device = "cpu",
    *,
    size: int | None = None,
    batch: int = 1,
    num_threads: int | None = None,
    **auto_options: Any,
) -> Backend:
    """A ready backend for ``model`` (eval mode) on ``device`` with ``num_threads`` CPU threads
    (default: every core). ``size``/``batch`` matter for backends built for one shape (``auto``'s
    calibration, ``winograd``'s tuning); every backend takes any valid batch and size afterwards.
    """
    from abanet.inference.backends.devices import configure_threads, resolve_device

    get_backend_spec(name)
    dev = resolve_device(device)
    configure_threads(num_threads)
    return build_backend(name, model, dev, size=size, batch=batch, **auto_options)
