"""Tiny models and images shared by the inference, service and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import abanet
from abanet.faces.types import Face, FaceDetector
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig


class LowerHalfModel(SegmentationModel):
    """A stand-in network whose logits are +8 on the lower half of the input and -8 above."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(name="lower_half", input_size=64, size_divisor=32))
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x.shape[-2]
        logits = torch.full((x.shape[0], 1, h, x.shape[-1]), -8.0) + self.anchor
        logits[:, :, h // 2 :] = 8.0
        return [logits]


class BoxDetector(FaceDetector):
    """Finds one face at ``box`` in the photo itself (none in the padded view), in any image
    whose pixel standard deviation exceeds ``min_std``; counts the images it looked at."""

    name = "box"

    def __init__(self, box: tuple[float, float, float, float], min_std: float = -1.0) -> None:
        self.box, self.min_std, self.calls = box, min_std, 0

    def detect_padded(self, image_rgb: np.ndarray, pad: float = 0.5) -> list[Face]:
        return []

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        return [Face(self.box, 0.9)] if image_rgb.std() > self.min_std else []


class DarkIsBareModel(LowerHalfModel):
    """The lower half is mask, except on dark crops (mean input < -1): no mask there."""

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits = super().forward_all(x)[0]
        dark = x.mean(dim=(1, 2, 3)) < -1
        logits[dark] = -8.0
        return [logits]


def tiny_saved_model(folder: Path) -> Path:
    """A random-weight abanet_lite at input size 64, saved as a model folder."""
    torch.manual_seed(0)
    model = abanet.create_model("abanet_lite")
    model.config.input_size = 64
    return model.save_pretrained(folder)


def write_rgb(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """A random RGB image of ``size`` (width, height) saved at ``path``."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def ellipse_dataset(
    root: Path, n: int = 12, size: int = 64, seed: int = 0, vary: bool = False
) -> Path:
    """``n`` images with a drawn blue ellipse (the mask) on noise, in images/ + masks/; 28x20 px,
    or with ``vary`` a random size per image (so that masks cover different areas)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(n):
        img = (rng.random((size, size, 3)) * 60 + 80).astype(np.uint8)
        m = Image.new("L", (size, size), 0)
        cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
        rx, ry = rng.integers(4, size // 3, 2) if vary else (14, 10)
        ImageDraw.Draw(m).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        img[np.asarray(m) > 127] = (30, 30, 200)
        Image.fromarray(img).save(root / "images" / f"img{i:02d}.png")
        m.save(root / "masks" / f"img{i:02d}.png")
    return root
