"""abanet: face-mask region segmentation (ABANet, baselines, training, evaluation, inference).

The public names below are imported on first use, so ``import abanet`` stays light (worker
processes and the CLI do not pay for torch until they need it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abanet.errors import AbanetError, DataError, ModelError
from abanet.lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "ModelConfig": "abanet.models.config",
    "SegmentationModel": "abanet.models.base",
    "create_model": "abanet.models.registry",
    "list_models": "abanet.models.registry",
    "list_pretrained": "abanet.models.hub",
    "load_model": "abanet.models.hub",
    "save_pretrained": "abanet.models.hub",
    "Segmenter": "abanet.inference.segmenter",
}

if TYPE_CHECKING:  # pragma: no cover
    from abanet.inference.segmenter import Segmenter
    from abanet.models.base import SegmentationModel
    from abanet.models.config import ModelConfig
    from abanet.models.hub import list_pretrained, load_model, save_pretrained
    from abanet.models.registry import create_model, list_models

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


__getattr__ = lazy_getattr("abanet", _LAZY)
