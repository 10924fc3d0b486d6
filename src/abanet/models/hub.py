"""Saving and loading weights: ``model.safetensors`` + ``config.json`` (never touches the network).

A saved model is a folder holding both files; the safetensors header also carries the config, so
the ``.safetensors`` file alone is enough. The config's ``metadata["weights_sha256"]`` is a
checksum of the tensors (:func:`state_checksum`); loading verifies it when it is there. Trained
weights shipped with the package live in ``abanet/weights/<name>/`` and load by name
(``"default"`` is an alias).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from abanet.data.atomic import write_bytes_atomic
from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.registry import create_model, list_models

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL_FILE = WEIGHTS_DIR / "DEFAULT"
_CONFIG_KEY = "abanet_config"
# options that only matter when building from scratch and must not be replayed on load
_BUILD_ONLY = ("encoder_weights",)
#: metadata key of the tensors' checksum
CHECKSUM_KEY = "weights_sha256"


def list_pretrained() -> list[str]:
    """Names of the trained weights shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "model.safetensors").is_file())


def default_model_name() -> str:
    """The shipped model that ``"default"`` refers to."""
    if DEFAULT_MODEL_FILE.is_file():
        return DEFAULT_MODEL_FILE.read_text().strip()
    raise ModelError("this installation ships no default model")


def save_pretrained(model: SegmentationModel, directory: str | Path, **metadata: Any) -> Path:
    """Write ``model.safetensors`` and ``config.json`` atomically; ``metadata`` joins the config."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = ModelConfig.from_dict(model.config.to_dict())
    config.kwargs = {k: v for k, v in config.kwargs.items() if k not in _BUILD_ONLY}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config.metadata = {**config.metadata, **metadata, CHECKSUM_KEY: state_checksum(state)}
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
    write_bytes_atomic(
        directory / "model.safetensors", save(state, {_CONFIG_KEY: config_json}), overwrite=True
    )
    write_bytes_atomic(directory / "config.json", (config_json + "\n").encode(), overwrite=True)
    return directory


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _locate(name_or_path: str | Path) -> tuple[Path, ModelConfig]:
    """Find the weights file and config for a shipped name, a folder or a .safetensors file."""
    text = str(name_or_path)
    if text == "default":
        text = default_model_name()
    candidates = [WEIGHTS_DIR / text] if text in list_pretrained() else []
    candidates.append(Path(text).expanduser())
    for path in candidates:
        if path.is_dir():
            weights, cfg_path = path / "model.safetensors", path / "config.json"
            if not weights.is_file():
                raise ModelError(f"{path}: no model.safetensors in this folder")
            return weights, _config_for(weights, cfg_path, prefer_header=False)
        if path.is_file():
            if path.suffix != ".safetensors":
                raise ModelError(f"{path}: expected a .safetensors file or a model folder")
            return path, _config_for(path, path.parent / "config.json", prefer_header=True)
    if text in list_models():
        raise ModelError(
            f"{text}: no trained weights ship for this architecture; use "
            f"abanet.create_model({text!r}) for a fresh one, or pass a weights folder"
        )
    shipped = ", ".join(list_pretrained()) or "none"
    raise ModelError(f"{text}: no such model folder, weights file or shipped model ({shipped})")


def _config_for(weights: Path, config_json: Path, prefer_header: bool) -> ModelConfig:
    """The config of ``weights``: the ``config.json`` beside it or the one in its header,
    whichever is preferred and is an abanet config (a stray ``config.json`` is passed over)."""
    header = _config_from_header(weights)
    beside = None
    if config_json.is_file() and not (prefer_header and header is not None):
        try:
            beside = ModelConfig.load(config_json)
        except ModelError:
            if header is None:
                raise
    config = beside or header
    if config is None:
        raise ModelError(f"{weights}: no config.json beside it and no config in its header")
    return config


def _config_from_header(path: Path) -> ModelConfig | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: not a readable safetensors file ({exc})") from exc
    if _CONFIG_KEY not in meta:
        return None
    try:
        data = json.loads(meta[_CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: the config in its header is not JSON ({exc})") from exc
    return ModelConfig.from_dict(data, f"{path} (header)")


def read_config(name_or_path: str | Path) -> ModelConfig:
    """The config of a shipped name, a model folder or a ``.safetensors`` file."""
    return _locate(name_or_path)[1]


def load_model(name_or_path: str | Path = "default", device: str | torch.device = "cpu"):
    """Load trained weights by shipped name, folder or ``.safetensors`` path; eval mode."""
    from safetensors.torch import load_file

    weights, config = _locate(name_or_path)
    kwargs = {k: v for k, v in config.kwargs.items() if k not in _BUILD_ONLY}
    model = create_model(config.name, **kwargs)
    try:
        state = load_file(str(weights), device="cpu")
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{weights}: weights do not fit {config.name} ({first})") from exc
    expected = config.metadata.get(CHECKSUM_KEY)
    if expected is not None and state_checksum(state) != expected:
        raise ModelError(
            f"{weights}: tensor data does not match its checksum (the file is damaged or was "
            "changed after saving); save or download it again"
        )
    config.kwargs = kwargs
    model.config = config
    return model.to(device).eval()


class ResolvedModel(NamedTuple):
    """A model ready for inference, the device it is on, and where it came from."""

    model: SegmentationModel
    device: torch.device
    source: str


def resolve_model(
    model: str | Path | torch.nn.Module = "default",
    device: str | torch.device = "auto",
    *,
    random_weights: bool = False,
    seed: int = 0,
) -> ResolvedModel:
    """The one way predict, evaluate and benchmark get their model and device.

    ``model`` is a loaded :class:`SegmentationModel` (used as is), a shipped name, a model folder
    or a ``.safetensors`` file; with ``random_weights``, also a registry name (weights drawn with
    ``seed``, so that repeated runs reuse cached exports). ``device``: ``auto``, ``cpu``,
    ``cuda[:N]``. The model comes back in eval mode on the device.
    """
    from abanet.inference.backends.devices import resolve_device

    dev = resolve_device(device)
    if isinstance(model, SegmentationModel):
        return ResolvedModel(model.to(dev).eval(), dev, "given model")
    if isinstance(model, torch.nn.Module):
        raise ModelError("expected an abanet SegmentationModel, a model name or a weights path")
    text = str(model)
    if random_weights and text in list_models() and not Path(text).exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built = create_model(text)
        return ResolvedModel(built.to(dev).eval(), dev, "registry, random weights")
    return ResolvedModel(load_model(text, device=dev), dev, f"weights {text}")
