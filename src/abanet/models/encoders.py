"""Multi-level encoders for the architectures built here around smp's encoders (EINet, EU-Net,
DAD), with ImageNet weights found the way the smp baselines find them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.blocks import upsample_like
from abanet.models.config import ModelConfig
from abanet.models.pretrained import offline_weights_path, resolve_encoder_weights


def create_encoder(encoder_name: str, encoder_weights: str | Path | None, owner: str) -> nn.Module:
    """smp encoder ``encoder_name`` returning the input and five levels (strides 2 to 32); its
    ``out_channels`` lists their channels. ``owner`` names the model in errors."""
    import segmentation_models_pytorch as smp

    try:
        encoder = smp.encoders.get_encoder(encoder_name, weights=None, depth=5)
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{owner}: {exc}") from exc
    if encoder_weights is not None:
        load_encoder_weights(encoder, encoder_name, encoder_weights, owner)
    return encoder


def load_encoder_weights(
    encoder: nn.Module, encoder_name: str, spec: str | Path, owner: str
) -> None:
    """Load ImageNet (offline package first, else smp's download) or file weights into an smp
    encoder; ModelError when they do not fit."""
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
    own = encoder.state_dict()
    # some smp encoders override load_state_dict and return None: compare the keys here
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if unexpected or len(missing) == len(own):
        raise ModelError(
            f"{owner}: encoder weights do not fit {encoder_name} "
            f"({len(unexpected)} unexpected, {len(missing)} missing keys)"
        )
    encoder.load_state_dict(weights, strict=False)


class SmpEncoderModel(SegmentationModel):
    """Base of the architectures built here on an smp encoder (EINet, EU-Net, DAD).

    Sets ``encoder`` and ``levels`` (its channels at strides 2, 4, 8, 16, 32); :meth:`outputs`
    brings the logits to the input size, main first.

    Args:
        encoder_name: any smp encoder (the paper's by default).
        encoder_weights: ``None``, ``"imagenet"`` or a path to a state dict.
        deep_supervision: return every output in training mode (else the main one only).
    """

    def __init__(
        self,
        config: ModelConfig,
        encoder_name: str,
        encoder_weights: str | Path | None,
        deep_supervision: bool,
    ) -> None:
        super().__init__(config)
        self.deep_supervision = deep_supervision
        self.encoder = create_encoder(encoder_name, encoder_weights, config.name)
        self.levels = tuple(int(c) for c in self.encoder.out_channels[1:])

    def outputs(self, logits: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """``logits`` (main first) resized to ``x``; the main one only when not supervised."""
        if self.training and not self.deep_supervision:
            logits = logits[:1]
        return [upsample_like(o, x) for o in logits]
