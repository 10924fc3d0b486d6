"""Model registry and architectures."""

from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.registry import create_model, list_models

__all__ = ["ModelConfig", "SegmentationModel", "create_model", "list_models"]
