"""abanet: face-mask region segmentation (ABANet, baselines, training, evaluation, inference)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from abanet.errors import AbanetError, DataError, ModelError
from abanet.models import ModelConfig, SegmentationModel, create_model, list_models
from abanet.models.hub import list_pretrained, load_model, save_pretrained

if TYPE_CHECKING:  # pragma: no cover
    from abanet.inference.segmenter import Segmenter

__all__ = [
    "AbanetError",
    "DataError",
    "ModelConfig",
    "ModelError",
    "SegmentationModel",
    "Segmenter",
    "create_model",
    "list_models",
    "list_pretrained",
    "load_model",
    "save_pretrained",
]


def __getattr__(name: str) -> Any:
    if name == "Segmenter":  # imported lazily: it pulls in image and face tooling
        from abanet.inference.segmenter import Segmenter

        return Segmenter
    raise AttributeError(name)
