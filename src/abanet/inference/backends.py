"""Inference backends: one ``run(batch) -> probabilities`` interface over several runtimes.

``create_backend(model, name, device)`` with ``name`` one of:

* ``eager``: the model as is, fp32, contiguous memory (the reference).
* ``eager_fused``: a copy with every BatchNorm folded into the preceding convolution, channels-last.
* ``channels_last``: a copy in NHWC memory layout (oneDNN's preferred layout on CPU).
* ``winograd`` (CPU): ``eager_fused`` in NCHW where each 3x3 stride-1 convolution runs as NNPACK
  Winograd when that measured faster for its shape (tuned at ``size``/``batch``).
* ``bf16`` / ``fp16``: ``torch.autocast`` (``fp16`` needs CUDA; ``bf16`` is emulated, i.e. slow,
  on CPUs without AVX-512-BF16/AMX).
* ``onnxruntime``: the model exported to ONNX (dynamic batch, height and width; cached on disk),
  run by ONNX Runtime with the CPU execution provider, or the CUDA one when present.
* ``compile``: ``torch.compile`` (inductor; needs a C compiler on CPU; compiles on first use of
  each input shape).
* ``auto``: the fastest of the above that stays faithful to fp32 eager on a calibration batch
  (same binary mask on >= 99.5% of pixels, max probability difference <= 0.01); the decision is
  cached per (model, size, batch, device) in memory and on disk.

Every backend takes a float32, normalised ``(B, 3, H, W)`` tensor and returns float32
probabilities ``(B, 1, H, W)`` on the input's device.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
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

from abanet.data.io import write_bytes_atomic
from abanet.errors import AbanetError

BACKENDS = (
    "eager",
    "eager_fused",
    "channels_last",
    "winograd",
    "bf16",
    "fp16",
    "onnxruntime",
    "compile",
    "auto",
)
# what ``auto`` tries, in order of preference on ties (fp32 first)
AUTO_CANDIDATES = {
    "cpu": ("eager", "channels_last", "eager_fused", "winograd", "onnxruntime", "bf16"),
    "cuda": ("eager", "channels_last", "fp16", "bf16", "onnxruntime"),
}
REDUCED_PRECISION = ("bf16", "fp16")
MIN_PIXEL_AGREEMENT = 0.995
MAX_PROB_DIFF = 0.01
DEFAULT_OPSET = 17


class BackendError(AbanetError):
    """A backend cannot run here (no CUDA, missing runtime, unknown name)."""


# -- devices and threads ------------------------------------------------------------------------


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


# -- the interface ------------------------------------------------------------------------------


class Backend:
    """Runs a segmentation model: ``run(batch)`` -> probabilities ``(B, 1, H, W)`` float32."""

    name = "base"
    reduced_precision = False

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model.eval()
        self.device = device
        self.config = getattr(model, "config", None)
        # larger batches are run in chunks of this many images (None: all at once); small
        # chunks can be faster on CPUs whose caches do not hold a whole batch's activations
        self.max_batch: int | None = None
        self.selection: AutoSelection | None = None  # set when ``auto`` picked this backend

    def _check(self, batch: torch.Tensor) -> None:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise AbanetError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
        check = getattr(self.model, "check_input", None)
        if check is not None:
            check(batch)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` already on ``self.device`` as float32."""
        raise NotImplementedError

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities in [0, 1], float32, shape ``(B, 1, H, W)``, on ``batch``'s device."""
        self._check(batch)
        with torch.inference_mode():
            x = batch.to(self.device, torch.float32)
            step = self.max_batch or x.shape[0]
            if step >= x.shape[0]:
                out = torch.sigmoid(self.logits(x).float())
            else:
                chunks = [x[i : i + step] for i in range(0, x.shape[0], step)]
                out = torch.cat([torch.sigmoid(self.logits(c).float()) for c in chunks])
            return out.to(batch.device)

    __call__ = run

    def describe(self) -> str:
        return f"{self.name} on {self.device}{self._chunk_note()}"

    def _chunk_note(self) -> str:
        return f", chunks of {self.max_batch}" if self.max_batch else ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class EagerBackend(Backend):
    """Plain PyTorch, fp32, contiguous (NCHW) memory: the naive reference."""

    name = "eager"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous())


class ChannelsLastBackend(Backend):
    """A copy of the model in channels-last (NHWC) memory layout."""

    name = "channels_last"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(copy.deepcopy(model).to(device).eval(), device)
        self.model.to(memory_format=torch.channels_last)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class FusedBackend(ChannelsLastBackend):
    """Channels-last copy with every BatchNorm folded into the convolution before it."""

    name = "eager_fused"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        copied = copy.deepcopy(model).to(device).eval()
        self.fused_count = fold_batchnorm(copied)
        Backend.__init__(self, copied, device)
        self.model.to(memory_format=torch.channels_last)

    def describe(self) -> str:
        folded = f"{self.fused_count} BatchNorms folded"
        return f"{self.name} on {self.device} ({folded}){self._chunk_note()}"


class AutocastBackend(Backend):
    """The model under ``torch.autocast`` with a reduced-precision dtype."""

    reduced_precision = True

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        if dtype is torch.float16 and device.type != "cuda":
            raise BackendError("backend fp16 needs CUDA (use bf16 or an fp32 backend on CPU)")
        if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BackendError("backend bf16: this GPU does not support bfloat16")
        super().__init__(model.to(device), device)
        self.dtype = dtype
        self.name = "fp16" if dtype is torch.float16 else "bf16"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.model(x)


class OnnxRuntimeBackend(Backend):
    """The model exported to ONNX (cached on disk) and run by ONNX Runtime."""

    name = "onnxruntime"

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
        available = ort.get_available_providers()
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendError(
                    "backend onnxruntime on cuda: this onnxruntime has no CUDA execution provider "
                    f"(providers: {', '.join(available)}); install onnxruntime-gpu or use "
                    "--device cpu"
                )
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": device.index or 0}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        self.onnx_path = Path(onnx_path) if onnx_path else cached_onnx_path(model, opset)
        if not self.onnx_path.is_file():
            from abanet.inference.export import export_onnx

            export_onnx(model, self.onnx_path, opset=opset, overwrite=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(out).to(x.device)

    def describe(self) -> str:
        providers = ",".join(
            p.replace("ExecutionProvider", "") for p in self.session.get_providers()
        )
        return f"{self.name} ({providers}{self._chunk_note()}) from {self.onnx_path}"


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

    name = "winograd"
    needs_shape = True  # built with the tuning size and batch

    def __init__(
        self, model: nn.Module, device: torch.device, size: int | None = None, batch: int = 1
    ) -> None:
        if device.type != "cpu":
            raise BackendError("backend winograd is CPU only (NNPACK)")
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
                decided[key] = _nnpack_is_faster(conv, shapes[name])
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


def _nnpack_is_faster(conv: nn.Conv2d, shape: tuple[int, ...], rounds: int = 3) -> bool:
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

    name = "compile"

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


# -- BatchNorm folding --------------------------------------------------------------------------


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, bn)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold eval-mode BatchNorm2d layers into the Conv2d that feeds them, in place.

    Handles ``nn.Sequential`` runs ``Conv2d, BatchNorm2d`` (ConvBNReLU, MobileNetV2, downsample
    paths) and torchvision-style blocks with ``convN``/``bnN`` attribute pairs (ResNet blocks).
    Returns how many BatchNorms were folded (each is replaced by ``nn.Identity``).
    """
    count = 0
    for child in list(module.modules()):
        if isinstance(child, nn.Sequential):
            keys = list(child._modules)
            for conv_key, bn_key in zip(keys, keys[1:], strict=False):
                conv, bn = child._modules[conv_key], child._modules[bn_key]
                if _foldable(conv, bn):
                    child._modules[conv_key] = _fuse(conv, bn)
                    child._modules[bn_key] = nn.Identity()
                    count += 1
        for key in list(child._modules):
            if not key.startswith("bn"):
                continue
            conv_key = "conv" + key[2:]
            conv, bn = child._modules.get(conv_key), child._modules[key]
            if conv is not None and _foldable(conv, bn) and _attr_pair_is_sequential(child, key):
                child._modules[conv_key] = _fuse(conv, bn)
                child._modules[key] = nn.Identity()
                count += 1
    return count


def _foldable(conv: Any, bn: Any) -> bool:
    return (
        type(conv) is nn.Conv2d
        and isinstance(bn, nn.BatchNorm2d)
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _attr_pair_is_sequential(block: nn.Module, bn_key: str) -> bool:
    """Only blocks known to apply ``bnN`` directly to ``convN``'s output (torchvision ResNet)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return isinstance(block, BasicBlock | Bottleneck) and bn_key in ("bn1", "bn2", "bn3")


# -- ONNX cache ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$ABANET_CACHE_DIR`` or ``~/.cache/abanet``."""
    env = os.environ.get("ABANET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abanet"


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's config and every parameter/buffer (names, shapes, values)."""
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = {k: v for k, v in config.to_dict().items() if k != "metadata"}
        digest.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    digest.update(type(model).__qualname__.encode())
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cached_onnx_path(model: nn.Module, opset: int = DEFAULT_OPSET) -> Path:
    """Where the ONNX export of ``model`` is cached (one file per weights + torch + opset)."""
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    tag = f"{model_fingerprint(model)}-torch{torch.__version__.split('+')[0]}-op{opset}"
    return cache_dir() / "onnx" / f"{name}-{tag}.onnx"


# -- auto ---------------------------------------------------------------------------------------


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
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        ort_version = "none"
    return (
        f"{hw}|{platform.machine()}|threads={torch.get_num_threads()}|"
        f"torch={torch.__version__}|ort={ort_version}|{torch.backends.cpu.get_cpu_capability()}"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "cpu"


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
    factories: dict[str, Callable[[nn.Module, torch.device], Backend]] | None = None,
) -> tuple[Backend, AutoSelection]:
    """Measure ``candidates`` on a calibration batch; return the fastest faithful backend.

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
    names = list(candidates or AUTO_CANDIDATES[dev.type])
    if "eager" not in names:
        names.insert(0, "eager")
    factory = {**_FACTORIES, **(factories or {})}
    key = _auto_key(model, size, batch, dev)
    disk_key = "|".join(map(str, key)) + "|" + _machine_signature(dev) + "|" + ",".join(names)

    cached = _cached_selection(key, disk_key, use_cache, disk_cache)
    if cached is not None and cached.chosen in factory:
        try:
            backend = _build(factory[cached.chosen], model, dev, size, batch)
        except AbanetError:
            backend = None
        if backend is not None and _still_faithful(backend, model, dev, size, batch, config):
            backend.max_batch = cached.max_batch
            backend.selection = cached
            return backend, cached

    start = time.perf_counter()
    load = _loadavg()
    mean = getattr(config, "mean", (0.485, 0.456, 0.406))
    std = getattr(config, "std", (0.229, 0.224, 0.225))
    threshold = float(getattr(config, "threshold", 0.5))
    x = calibration_batch(batch, size, mean, std).to(dev)
    reference_backend = EagerBackend(model, dev)
    reference = reference_backend.run(x)

    results: dict[str, CandidateResult] = {}
    live: dict[str, Backend] = {}
    for name in names:
        res = results[name] = CandidateResult(name)
        if name not in factory:
            res.skipped = "unknown backend"
            continue
        if name == "bf16" and "bf16" not in (factories or {}):
            ok, why = _bf16_probe(dev)
            if not ok:
                res.skipped = why
                continue
        try:
            backend = (
                reference_backend
                if name == "eager"
                else _build(factory[name], model, dev, size, batch)
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


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


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
            sel.from_cache = "disk"
            _AUTO_MEMORY[key] = sel
            return sel
    return None


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
    reference = EagerBackend(model, dev).run(x)
    agree, diff = compare_outputs(
        backend.run(x), reference, float(getattr(config, "threshold", 0.5))
    )
    return is_faithful(agree, diff)


def clear_auto_cache(disk: bool = False) -> None:
    """Forget ``auto`` decisions (in memory; on disk too with ``disk=True``)."""
    _AUTO_MEMORY.clear()
    if disk:
        _disk_cache_file().unlink(missing_ok=True)


# -- factory ------------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[nn.Module, torch.device], Backend]] = {
    "eager": lambda m, d: EagerBackend(m.to(d), d),
    "eager_fused": FusedBackend,
    "channels_last": ChannelsLastBackend,
    "bf16": lambda m, d: AutocastBackend(m, d, torch.bfloat16),
    "fp16": lambda m, d: AutocastBackend(m, d, torch.float16),
    "winograd": WinogradBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "compile": CompiledBackend,
}


def _build(
    factory: Callable[..., Backend],
    model: nn.Module,
    dev: torch.device,
    size: int | None,
    batch: int,
) -> Backend:
    if getattr(factory, "needs_shape", False):
        return factory(model, dev, size=size, batch=batch)
    return factory(model, dev)


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
    """A ready backend for ``model`` (eval mode). ``size``/``batch`` matter only for ``auto``
    (the calibration shape); every backend accepts any valid batch and size afterwards."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    configure_threads(num_threads)
    model = model.to(dev).eval()
    if name == "auto":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backend, _ = select_backend(model, dev, size=size, batch=batch, **auto_options)
        return backend
    return _build(_FACTORIES[name], model, dev, size, batch)
