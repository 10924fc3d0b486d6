"""The runtimes behind the backends: eager variants, autocast, ONNX Runtime, NNPACK Winograd and
``torch.compile``. Each is built by its entry in :mod:`abanet.inference.backends.registry`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abanet.errors import BackendError
from abanet.inference.backends.base import Backend
from abanet.inference.backends.batchnorm import fold_batchnorm
from abanet.inference.backends.cache import cache_dir, ensure_onnx
from abanet.inference.export import DEFAULT_OPSET


class EagerBackend(Backend):
    """Plain PyTorch, fp32, contiguous (NCHW) memory: the naive reference."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous())


class ChannelsLastBackend(Backend):
    """A copy of the model in channels-last (NHWC) memory layout."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(copy.deepcopy(model).to(device).eval(), device)
        self.model.to(memory_format=torch.channels_last)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class FusedBackend(ChannelsLastBackend):
    """Channels-last copy with every BatchNorm folded into the convolution before it."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        copied = copy.deepcopy(model).to(device).eval()
        self.fused_count = fold_batchnorm(copied)
        Backend.__init__(self, copied, device)
        self.model.to(memory_format=torch.channels_last)

    def describe(self) -> str:
        folded = f"{self.fused_count} BatchNorms folded"
        return f"{self.name} on {self.device} ({folded}){self._chunk_note()}"


class AutocastBackend(Backend):
    """The model under ``torch.autocast`` with a reduced-precision ``dtype``."""

    reduced_precision = True
    dtype: torch.dtype

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.model(x)


class Bf16Backend(AutocastBackend):
    """bfloat16 autocast (emulated, i.e. slow, on CPUs without AVX-512-BF16/AMX)."""

    dtype = torch.bfloat16

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BackendError("backend bf16: this GPU does not support bfloat16")
        super().__init__(model, device)


class Fp16Backend(AutocastBackend):
    """float16 autocast (CUDA)."""

    dtype = torch.float16


class OnnxRuntimeBackend(Backend):
    """The model exported to ONNX (cached on disk) and run by ONNX Runtime."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        onnx_path: str | Path | None = None,
        opset: int = DEFAULT_OPSET,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(model, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise BackendError("backend onnxruntime: the onnxruntime package is missing") from exc
        providers = self.providers(device, ort.get_available_providers())
        self.onnx_path = Path(onnx_path) if onnx_path else ensure_onnx(model, opset)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # idle pool threads sleep instead of spinning: in `abanet predict` the face detector runs
        # beside the model, and spinning threads took its cores (12.6 vs 16.0 CPU ms per crop
        # at batch 8 on 2 loaded cores; docs/performance.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def providers(self, device: torch.device, available: list[str]) -> list[Any]:
        """ONNX Runtime execution providers for ``device`` (BackendError when missing)."""
        if device.type != "cuda":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                "backend onnxruntime on cuda: this onnxruntime has no CUDA execution provider "
                f"(providers: {', '.join(available)}); install onnxruntime-gpu or use "
                "--device cpu"
            )
        return [
            ("CUDAExecutionProvider", {"device_id": device.index or 0}),
            "CPUExecutionProvider",
        ]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(out).to(x.device)

    def describe(self) -> str:
        providers = ",".join(
            p.replace("ExecutionProvider", "") for p in self.session.get_providers()
        )
        return f"{self.name} ({providers}{self._chunk_note()}) from {self.onnx_path}"


class TensorRtBackend(OnnxRuntimeBackend):
    """The ONNX export run by ONNX Runtime's TensorRT execution provider: fp16 engines, built per
    input shape and cached under the cache folder's ``tensorrt/``."""

    reduced_precision = True

    def providers(self, device: torch.device, available: list[str]) -> list[Any]:
        if "TensorrtExecutionProvider" not in available:
            raise BackendError(
                "backend tensorrt: this onnxruntime has no TensorRT execution provider "
                f"(providers: {', '.join(available)}); install onnxruntime-gpu and tensorrt"
            )
        options = {
            "device_id": device.index or 0,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir() / "tensorrt"),
        }
        return [("TensorrtExecutionProvider", options), *super().providers(device, available)]


class NnpackConv2d(nn.Module):
    """A 3x3, stride-1 convolution computed by NNPACK (Winograd F(6x6, 3x3): about 5x fewer
    multiplications than direct convolution; float32 results within ~1e-5 relative)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.padding = list(conv.padding)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch._nnpack_spatial_convolution(
            x.contiguous(), self.weight, self.bias, self.padding, [1, 1]
        )


def nnpack_eligible(conv: nn.Module) -> bool:
    """A plain 3x3 stride-1 dense convolution that NNPACK can compute."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
    )


class WinogradBackend(Backend):
    """fp32 eager (NCHW, BatchNorm folded) where each 3x3 stride-1 convolution runs as NNPACK
    Winograd if that measured faster than oneDNN for its input shape at the tuning size.

    Winograd pays off for few channels at high resolution (ABANet's 64-channel full-resolution
    stages) and loses for many channels at low resolution, hence the per-layer choice.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, size: int | None = None, batch: int = 1
    ) -> None:
        if not torch.backends.nnpack.is_available():
            raise BackendError("backend winograd: this PyTorch build has no NNPACK")
        copied = copy.deepcopy(model).eval()
        self.fused_count = fold_batchnorm(copied)
        super().__init__(copied, device)
        config = getattr(model, "config", None)
        self.tune_size = int(size or getattr(config, "input_size", 256))
        self.swapped, self.eligible = self._tune(max(1, int(batch)))

    def _tune(self, batch: int) -> tuple[int, int]:
        convs = {n: m for n, m in self.model.named_modules() if nnpack_eligible(m)}
        shapes: dict[str, tuple[int, ...]] = {}

        def record(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                shapes.setdefault(name, tuple(args[0].shape))

            return hook

        hooks = [m.register_forward_pre_hook(record(n)) for n, m in convs.items()]
        x = torch.zeros(batch, 3, self.tune_size, self.tune_size)
        with torch.inference_mode():
            self.model(x)
        for h in hooks:
            h.remove()
        decided: dict[tuple[Any, ...], bool] = {}
        swapped = 0
        for name, conv in convs.items():
            if name not in shapes:
                continue
            key = (shapes[name], tuple(conv.weight.shape), conv.padding)
            if key not in decided:
                decided[key] = nnpack_is_faster(conv, shapes[name])
            if decided[key]:
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, NnpackConv2d(conv))
                swapped += 1
        return swapped, len(convs)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous())

    def describe(self) -> str:
        return (
            f"{self.name} on cpu ({self.swapped} of {self.eligible} 3x3 convs on NNPACK, tuned at "
            f"{self.tune_size}; {self.fused_count} BatchNorms folded){self._chunk_note()}"
        )


def nnpack_is_faster(conv: nn.Conv2d, shape: tuple[int, ...], rounds: int = 3) -> bool:
    x = torch.randn(shape)
    fast = NnpackConv2d(conv)
    best = {"mkldnn": math.inf, "nnpack": math.inf}
    with torch.inference_mode():
        conv(x), fast(x)
        for _ in range(rounds):  # alternate, keep the best of each: robust to load spikes
            for key, fn in (("mkldnn", conv), ("nnpack", fast)):
                t0 = time.perf_counter()
                fn(x)
                best[key] = min(best[key], time.perf_counter() - t0)
    return best["nnpack"] < 0.9 * best["mkldnn"]


class CompiledBackend(Backend):
    """``torch.compile`` (inductor, weights frozen into the graph); compiles once per shape."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(copy.deepcopy(model).to(device).eval(), device)
        if device.type == "cuda":
            self.compiled = torch.compile(self.model, mode="max-autotune-no-cudagraphs")
        else:
            self.compiled = torch.compile(self.model, options={"freezing": True})
        self.compile_seconds: dict[tuple[int, ...], float] = {}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape in self.compile_seconds:
            return self.compiled(x)
        start = time.perf_counter()
        try:
            out = self.compiled(x)
        except Exception as exc:  # noqa: BLE001 - inductor raises many kinds
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"backend compile failed on this machine: {first}") from exc
        self.compile_seconds[shape] = time.perf_counter() - start
        return out
