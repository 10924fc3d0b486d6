"""The one way an image becomes a model's input (timm's data config): resize to ``size`` x
``size`` (area filter when shrinking, bilinear when enlarging) and normalise with ``mean``/``std``.

:func:`resolve_data_config` reads it from a model's config; the Segmenter (predict, evaluate,
the service) and training-time validation (:func:`abanet.data.transforms.build_transforms` with
``train=False``) both preprocess through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from abanet.errors import ModelError
from abanet.models.config import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from abanet.models.config import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Square input ``size`` and the per-channel ``mean``/``std`` of RGB scaled to [0, 1]."""

    size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        for key in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, key))
            if len(values) != 3:
                raise ModelError(f"data config: {key} needs 3 values (R, G, B), got {values}")
            object.__setattr__(self, key, values)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """``image`` (HxW or HxWxC) at ``size`` x ``size``: area filter when shrinking, else
        bilinear."""
        h, w = image.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) > self.size else cv2.INTER_LINEAR
        return cv2.resize(image, (self.size, self.size), interpolation=interp)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB HxWx3 -> float32 HxWx3, ``(x / 255 - mean) / std``."""
        mean = np.asarray(self.mean, np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, np.float32) * 255.0)
        return (image.astype(np.float32) - mean) * inv_std

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB HxWx3 -> the model's input, float32 3 x size x size."""
        return self.normalize(self.resize(image)).transpose(2, 0, 1)


def resolve_data_config(config: ModelConfig, size: int | None = None) -> DataConfig:
    """The data config of a model's ``config``; ``size`` overrides its ``input_size`` and must be a
    multiple of its ``size_divisor`` (ModelError naming the nearest valid size otherwise)."""
    from abanet.models.base import nearest_valid_size

    side = int(size or config.input_size)
    div = config.size_divisor
    if side % div:
        raise ModelError(
            f"{config.name}: size {side} is not a multiple of {div}; nearest valid size is "
            f"{nearest_valid_size(side, div)}"
        )
    return DataConfig(side, config.mean, config.std)


class EvalTransform:
    """Validation preprocessing with the albumentations call convention: ``image`` as the model
    sees it (normalised HxWx3 float32), ``mask`` resized bilinearly (threshold it at 0.5)."""

    def __init__(self, data_config: DataConfig) -> None:
        self.data_config = data_config

    def __call__(self, *, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.data_config.normalize(self.data_config.resize(image))}
        if mask is not None:
            side = self.data_config.size
            out["mask"] = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)
        return out

    def set_random_state(self, *_: Any) -> None:
        """Nothing random to seed (the albumentations transforms' interface)."""
