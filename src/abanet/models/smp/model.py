"""segmentation-models-pytorch baselines (Unet, Unet++, MAnet, Linknet, DeepLabV3+, PAN, FPN,
PSPNet) wrapped in abanet's contract: logits out, a list in training mode, size checks, configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.encoders import load_encoder_weights
from abanet.models.registry import register_model

# registry name -> (smp class name, description)
SMP_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "unet": ("Unet", "U-Net (smp)"),
    "unetplusplus": ("UnetPlusPlus", "U-Net++ (smp)"),
    "manet": ("MAnet", "MA-Net (smp)"),
    "linknet": ("Linknet", "LinkNet (smp)"),
    "deeplabv3plus": ("DeepLabV3Plus", "DeepLabV3+ (smp)"),
    "pan": ("PAN", "Pyramid Attention Network (smp)"),
    "fpn": ("FPN", "Feature Pyramid Network (smp)"),
    "pspnet": ("PSPNet", "PSPNet (smp)"),
}
DEFAULT_ENCODER = "resnet50"


class SmpModel(SegmentationModel):
    """An smp architecture with one output channel; training mode returns ``[logits]``."""

    def __init__(
        self,
        config: ModelConfig,
        arch: str,
        encoder_name: str = DEFAULT_ENCODER,
        encoder_weights: str | Path | None = None,
        **smp_kwargs: object,
    ) -> None:
        super().__init__(config)
        import segmentation_models_pytorch as smp

        try:
            self.net = smp.create_model(
                arch, encoder_name=encoder_name, encoder_weights=None, classes=1, **smp_kwargs
            )
        except (KeyError, ValueError) as exc:
            hint = ""
            if "dilated" in str(exc) and "encoder_output_stride" not in smp_kwargs:
                hint = " (pass encoder_output_stride=32 to run the encoder undilated)"
            raise ModelError(f"{config.name}: {exc}{hint}") from exc
        if encoder_weights is not None:
            load_encoder_weights(self.net.encoder, encoder_name, encoder_weights, config.name)
        # PAN's feature pyramid attention pools its deepest map three times by 2
        self.min_size = 8 * int(smp_kwargs.get("encoder_output_stride", 16)) if arch == "PAN" else 0

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if min(int(x.shape[-2]), int(x.shape[-1])) < self.min_size:
            raise ModelError(
                f"{self.config.name}: input size {x.shape[-2]}x{x.shape[-1]} is too small; "
                f"this network needs at least {self.min_size}x{self.min_size}"
            )

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _make_builder(name: str, arch: str, description: str) -> Callable[..., SmpModel]:
    def build(config: ModelConfig, **kwargs: Any) -> SmpModel:
        return SmpModel(config, arch, **kwargs)

    build.__name__ = name
    build.__doc__ = f"{description}\n\n``encoder_name`` picks any smp encoder."
    return build


for _name, (_arch, _desc) in SMP_ARCHITECTURES.items():
    register_model(
        family="smp", encoder=DEFAULT_ENCODER, encoder_weights="smp", encoder_name=DEFAULT_ENCODER
    )(_make_builder(_name, _arch, _desc))
