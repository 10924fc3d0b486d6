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
from abanet.models.pretrained import offline_weights_path, resolve_encoder_weights
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
            raise ModelError(f"{config.name}: {exc}") from exc
        if encoder_weights is not None:
            self._load_encoder(encoder_name, encoder_weights)

    def _load_encoder(self, encoder_name: str, spec: str | Path) -> None:
        if str(spec) == "imagenet" and offline_weights_path(encoder_name) is None:
            import segmentation_models_pytorch as smp

            try:  # smp's own download (needs a network)
                weights = smp.encoders.get_encoder(encoder_name, weights="imagenet").state_dict()
            except Exception as exc:  # noqa: BLE001
                raise ModelError(
                    f"ImageNet weights for smp encoder {encoder_name} are not installed and could "
                    f"not be downloaded ({type(exc).__name__}); pass encoder_weights=PATH or None"
                ) from exc
        else:
            weights = resolve_encoder_weights(encoder_name, spec) or {}
        weights = {k: v for k, v in weights.items() if not k.startswith(("fc.", "classifier."))}
        own = self.net.encoder.state_dict()
        # some smp encoders override load_state_dict and return None: compare the keys here
        missing = [k for k in own if k not in weights]
        unexpected = [k for k in weights if k not in own]
        if unexpected or len(missing) == len(own):
            raise ModelError(
                f"{self.config.name}: encoder weights do not fit {encoder_name} "
                f"({len(unexpected)} unexpected, {len(missing)} missing keys)"
            )
        self.net.encoder.load_state_dict(weights, strict=False)

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
