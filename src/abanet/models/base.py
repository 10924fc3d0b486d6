"""The contract every abanet model follows.

* ``forward`` returns logits. In training mode: a list of every supervised output, main first,
  each ``(B, 1, H, W)``. In eval mode: the main output only, ``(B, 1, H, W)``.
* ``predict`` returns probabilities (sigmoid of the main output) without gradients.
* Inputs whose height or width is not a multiple of ``config.size_divisor`` are refused with an
  error naming the nearest valid size.
* Training: the engine applies the config's loss to every training-mode output, unless
  ``training_loss`` returns the model's own loss (Mask R-CNN's detection losses). A model with
  ``trainable = False`` (a classical method such as GrabCut) is not trained at all: ``train``
  saves it as it is, to be evaluated like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from abanet.errors import ModelError
from abanet.models.config import ModelConfig


def nearest_valid_size(size: int, divisor: int) -> int:
    """The multiple of ``divisor`` closest to ``size`` (ties go up), at least ``divisor``."""
    return max(divisor, int(divisor * round(size / divisor + 1e-9)))


class SegmentationModel(nn.Module):
    """Base class: subclasses implement ``forward_features`` returning all logits, main first."""

    config: ModelConfig
    #: False for a method without learned parameters: ``train`` saves it untrained.
    trainable: bool = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every supervised output (logits, main first), whatever the mode."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        if self.training:
            return self.forward_all(x)
        return self.forward_main(x)

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        """The main output only; subclasses override to skip side branches at inference."""
        return self.forward_all(x)[0]

    def training_loss(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """The model's own training loss and its named parts for ``x`` and its ground truth
        ``target`` ``(B, 1, H, W)`` in {0, 1}; ``None`` (the default): the engine applies the
        config's loss to the training-mode outputs."""
        return None

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelError(
                f"{self.config.name}: expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}"
            )
        div = self.config.size_divisor
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % div or w % div:
            nh, nw = nearest_valid_size(h, div), nearest_valid_size(w, div)
            raise ModelError(
                f"{self.config.name}: input size {h}x{w} is not a multiple of {div}; "
                f"nearest valid size is {nh}x{nw}"
            )

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, 1, H, W)`` in [0, 1]; switches to eval mode."""
        self.eval()
        return torch.sigmoid(self.forward_main(_checked(self, x)).float())

    def save_pretrained(self, directory: str | Path, **metadata: Any) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``."""
        from abanet.models.hub import save_pretrained

        return save_pretrained(self, directory, **metadata)


def _checked(model: SegmentationModel, x: torch.Tensor) -> torch.Tensor:
    model.check_input(x)
    return x
