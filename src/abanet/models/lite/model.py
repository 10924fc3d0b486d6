"""ABANet-Lite: the ABANet decoder ideas (gated skips, deep supervision, refinement) on a
MobileNetV2 encoder, slimmed for CPUs.

Design (chosen by measurement, see docs/models.md):
* The encoder (torchvision MobileNetV2 layout, so ImageNet weights install offline) sees the image
  resized by ``encoder_scale`` (default 0.5): a mask is a large smooth region, and a 2-core CPU
  spends most of its time in the encoder's high-resolution stages.
* A U-Net-style decoder with one 3x3 conv per stage joins each skip with the upsampled decoder
  features; attention gates sit on the ``attention_stages`` highest-resolution skips.
* An image-guided residual refinement at full resolution: the upsampled coarse logits and the
  RGB image go through a few narrow 3x3 convs that predict a residual (sharp edges at low cost).
* Deep supervision: one side output per decoder stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v2

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.blocks import AttentionGate, ConvBNReLU, upsample_like
from abanet.models.config import ModelConfig
from abanet.models.pretrained import resolve_encoder_weights
from abanet.models.registry import register_model

# (end index in mobilenet_v2().features, channels): strides 2, 4, 8, 16, 32
MBV2_STAGES = ((2, 16), (4, 24), (7, 32), (14, 96), (18, 320))


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 ``features[0:18]`` (no final 1x1 conv), returning five stride levels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = mobilenet_v2(weights=None).features[:18]
        self.channels = tuple(c for _, c in MBV2_STAGES)

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the matching ``features.*`` part of a torchvision mobilenet_v2 state dict."""
        own = self.state_dict()
        picked = {k: v for k, v in state_dict.items() if k in own}
        if len(picked) != len(own):
            raise ModelError(
                f"encoder weights do not fit MobileNetV2: {len(own) - len(picked)} keys missing"
            )
        self.load_state_dict(picked, strict=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, start = [], 0
        for end, _ in MBV2_STAGES:
            for i in range(start, end):
                x = self.features[i](x)
            feats.append(x)
            start = end
        return feats


class AbanetLite(SegmentationModel):
    """MobileNetV2 encoder, gated U-Net decoder, deep supervision, guided refinement.

    Outputs, main first: refined map (when ``refine``), then the side outputs of decoder stages
    1 (highest resolution) .. 4, all at input size.
    """

    def __init__(
        self,
        config: ModelConfig,
        decoder_channels: Sequence[int] = (96, 48, 32, 24),
        attention_stages: Iterable[int] = (1, 2),
        refine: bool = True,
        refine_channels: int = 8,
        encoder_scale: float = 0.5,
        deep_supervision: bool = True,
        encoder_weights: str | Path | None = None,
    ) -> None:
        super().__init__(config)
        if len(decoder_channels) != 4:
            raise ModelError("decoder_channels needs four values (stride 16, 8, 4, 2)")
        self.encoder_scale = float(encoder_scale)
        self.deep_supervision = deep_supervision
        self.attention_stages = tuple(sorted(int(s) for s in attention_stages))
        if any(s not in range(1, 5) for s in self.attention_stages):
            raise ModelError(f"attention_stages must lie in 1..4, got {self.attention_stages}")
        self.encoder = MobileNetV2Encoder()
        enc = self.encoder.channels  # strides 2, 4, 8, 16, 32
        self.decoder = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        prev = enc[4]
        # decoder stage s joins the skip at stride 2**s (s = 4 .. 1)
        for stage, out in zip(range(4, 0, -1), decoder_channels, strict=True):
            skip = enc[stage - 1]
            if stage in self.attention_stages:
                self.gates[str(stage)] = AttentionGate(skip, prev)
            self.decoder[str(stage)] = ConvBNReLU(skip + prev, out)
            prev = out
        stages = zip(range(4, 0, -1), decoder_channels, strict=True)
        self.side = nn.ModuleDict({str(s): nn.Conv2d(c, 1, 1) for s, c in stages})
        self.refiner = (
            nn.Sequential(
                ConvBNReLU(4, refine_channels),
                ConvBNReLU(refine_channels, refine_channels),
                nn.Conv2d(refine_channels, 1, 3, padding=1),
            )
            if refine
            else None
        )
        state = resolve_encoder_weights("mobilenet_v2", encoder_weights)
        if state is not None:
            self.encoder.load_torchvision_state_dict(state)

    def _decode(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if self.encoder_scale != 1.0:
            x = F.interpolate(
                x, scale_factor=self.encoder_scale, mode="bilinear", align_corners=False
            )
        feats = self.encoder(x)
        prev, decoded = feats[4], {}
        for stage in range(4, 0, -1):
            skip = feats[stage - 1]
            if str(stage) in self.gates:
                skip = self.gates[str(stage)](skip, prev)
            prev = self.decoder[str(stage)](torch.cat([upsample_like(prev, skip), skip], dim=1))
            decoded[stage] = prev
        return decoded

    def _refine(self, coarse: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert self.refiner is not None
        return coarse + self.refiner(torch.cat([coarse, x], dim=1))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        decoded = self._decode(x)
        coarse = _resize(self.side["1"](decoded[1]), x)
        outputs = [self._refine(coarse, x)] if self.refiner is not None else []
        outputs.append(coarse)
        if self.training and not self.deep_supervision:
            return outputs[:1]
        outputs += [_resize(self.side[str(s)](decoded[s]), x) for s in range(2, 5)]
        return outputs

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        decoded = self._decode(x)
        coarse = _resize(self.side["1"](decoded[1]), x)
        return self._refine(coarse, x) if self.refiner is not None else coarse


def _resize(logits: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(logits, size=ref.shape[-2:], mode="bilinear", align_corners=False)


@register_model(family="lite", encoder="mobilenet_v2", encoder_weights="torchvision")
def abanet_lite(config: ModelConfig, **kwargs: Any) -> AbanetLite:
    """ABANet-Lite: MobileNetV2, 2 gates, guided refinement.

    The CPU/video member of the family (at most 1/20 of abanet_r34's FLOPs).
    """
    config.size_divisor = int(round(32 / float(kwargs.get("encoder_scale", 0.5))))
    return AbanetLite(config, **kwargs)
