"""Where backends cache on disk: the ONNX exports (one file per weights, torch and opset), their
int8 quantizations and ``auto``'s decisions."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from abanet.inference.export import DEFAULT_OPSET, export_onnx


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


def ensure_onnx(model: nn.Module, opset: int = DEFAULT_OPSET) -> Path:
    """The cached ONNX export of ``model``, exported (atomically) first when missing."""
    path = cached_onnx_path(model, opset)
    if not path.is_file():
        export_onnx(model, path, opset=opset, overwrite=True)
    return path


def cached_int8_path(fp32_path: Path, settings_key: str) -> Path:
    """Where the int8 quantization of the export ``fp32_path`` is cached; ``settings_key`` is a
    hash of everything else the result depends on (settings, calibration data, versions)."""
    return fp32_path.with_name(f"{fp32_path.stem}-int8-{settings_key}.onnx")
