"""DAD: "Towards complex backgrounds: a unified difference-aware decoder for binary segmentation"
(Li, He and Zhang, arXiv:2210.15156 v1), the ABANet paper's Table 2 row "DAD (ResNet50)". See
docs/models.md for what follows the paper and what had to be guessed.

Three stages on a ResNet-50 encoder (any smp encoder with ``encoder_name``), levels 1-4 at strides
4 to 32:

* Stage A, the guide map: the deepest level goes through the field expansion module (FEM: a 1x1
  branch and two chains of dilated 3x3 convs, dilations 2-16 and 4-32, fused with a residual) and
  the dual residual attention module (position and channel self-attention, summed), then joins
  the lowest level in a DeepLabV3+-style decoder that predicts the guide map (stride 4).
* Stage B, background-aware features: levels 1-3, each reduced and passed through a FEM, meet at
  stride 8 (the middle feature fusion).
* Stage C, the difference-aware extractor, applied twice: a difference guidance model relates the
  features to the current map, then the foreground (features x map) and background
  (features x (1 - map)) parts are normalised and subtracted before a prediction head. The first
  pass is guided by the guide map, the second by the first pass's output (the main output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from abanet.models.blocks import ConvBNReLU, NonLocal2d, upsample_like
from abanet.models.config import ModelConfig
from abanet.models.encoders import SmpEncoderModel
from abanet.models.registry import register_model


class FieldExpansion(nn.Module):
    """FEM: a 1x1 branch and two dilated chains (2, 4, 8, 16 and 4, 8, 16, 32), concatenated,
    fused by a 3x3 conv and added to a 1x1 projection of the input."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()

        def chain(dilations: tuple[int, ...]) -> nn.Sequential:
            convs = [ConvBNReLU(out_ch, out_ch, dilation=d) for d in dilations]
            return nn.Sequential(ConvBNReLU(in_ch, out_ch, kernel=1), *convs)

        self.branches = nn.ModuleList(
            [ConvBNReLU(in_ch, out_ch, kernel=1), chain((4, 8, 16, 32)), chain((2, 4, 8, 16))]
        )
        self.fuse = ConvBNReLU(3 * out_ch, out_ch)
        self.residual = ConvBNReLU(in_ch, out_ch, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
        return torch.relu(fused + self.residual(x))


class ChannelAttention(nn.Module):
    """DANet's channel self-attention: channels re-mixed by ``softmax(max(E) - E)`` of their Gram
    matrix ``E``, scaled by ``gamma`` (starting at 0) and added to the input."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)
        attention = torch.softmax(energy.amax(-1, keepdim=True) - energy, dim=-1)
        return x + self.gamma * (attention @ flat).reshape(x.shape)


class DualAttention(nn.Module):
    """The dual residual attention module: position (non-local) and channel attention branches on
    a quarter of the channels, each between 3x3 convs, summed."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        mid = in_ch // 4
        attention = NonLocal2d(mid, inter_channels=max(mid // 8, 1))
        self.position = nn.Sequential(ConvBNReLU(in_ch, mid), attention, ConvBNReLU(mid, mid))
        self.channel = nn.Sequential(
            ConvBNReLU(in_ch, mid), ChannelAttention(), ConvBNReLU(mid, mid)
        )
        self.dropout = nn.Dropout2d(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.position(x) + self.channel(x))


class GuideMap(nn.Module):
    """Stage A: FEM and dual attention on the deepest level, joined with the lowest level."""

    def __init__(self, deep_ch: int, low_ch: int, width: int = 256) -> None:
        super().__init__()
        self.context = nn.Sequential(FieldExpansion(deep_ch, width), DualAttention(width))
        self.low = ConvBNReLU(low_ch, 48, kernel=1)
        self.head = nn.Sequential(
            ConvBNReLU(width // 4 + 48, width),
            nn.Dropout2d(0.5),
            ConvBNReLU(width, width),
            nn.Dropout2d(0.1),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, deep: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low(low)
        return self.head(torch.cat([upsample_like(self.context(deep), low), low], dim=1))


class DifferenceGuidance(nn.Module):
    """The difference guidance model: each channel's affinity with the map, inverted and
    normalised over the channels (as DANet's channel attention), weighs a channel mix that is
    added to every channel, scaled by ``gamma`` (starting at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        flat = feats.flatten(2)  # (B, C, N)
        energy = flat @ logits.flatten(2).transpose(1, 2)  # (B, C, 1)
        weights = torch.softmax(energy.amax(1, keepdim=True) - energy, dim=1)
        mix = (weights * flat).sum(1, keepdim=True)  # (B, 1, N)
        return feats + self.gamma * mix.reshape(feats.shape[0], 1, *feats.shape[-2:])


class DifferenceExtractor(nn.Module):
    """Stage C (the difference-aware extractor): guided features split into foreground and
    background by the map's probabilities; their normalised difference predicts new logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.guidance = DifferenceGuidance()
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.ones(1))
        self.norm_fg = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.norm_bg = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, 1, 3, padding=1)
        )

    def forward(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        feats = self.guidance(upsample_like(feats, logits), logits)
        prob = torch.sigmoid(logits)
        difference = self.norm_fg(self.alpha * feats * prob) - self.norm_bg(
            self.beta * feats * (1 - prob)
        )
        return self.head(difference)


class DifferenceAwareDecoder(SmpEncoderModel):
    """DAD. Outputs, main first: the second difference-aware pass, the first pass, the guide map,
    all at input size. Options: see :class:`SmpEncoderModel` (encoder: ResNet-50)."""

    def __init__(
        self,
        config: ModelConfig,
        encoder_name: str = "resnet50",
        encoder_weights: str | Path | None = None,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(config, encoder_name, encoder_weights, deep_supervision)
        enc = self.levels[1:]  # strides 4, 8, 16, 32
        self.guide = GuideMap(enc[3], enc[0])
        self.middle = nn.ModuleList(
            [
                nn.Sequential(ConvBNReLU(enc[0], 128, stride=2), FieldExpansion(128, 32)),
                nn.Sequential(ConvBNReLU(enc[1], 128, kernel=1), FieldExpansion(128, 32)),
                nn.Sequential(ConvBNReLU(enc[2], 128, kernel=1), FieldExpansion(128, 32)),
            ]
        )
        self.extract = nn.ModuleList(DifferenceExtractor(96) for _ in range(2))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1, f2, f3, f4 = self.encoder(x)[2:]
        guide = self.guide(f4, f1)
        middle = [m(f) for m, f in zip(self.middle, (f1, f2, f3), strict=True)]
        middle[2] = upsample_like(middle[2], middle[1])
        feats = torch.cat(middle, dim=1)
        first = self.extract[0](feats, guide)
        final = self.extract[1](feats, first)
        return self.outputs([final, first, guide], x)


@register_model(family="sota", encoder="resnet50", encoder_weights="smp", encoder_name="resnet50")
def dad(config: ModelConfig, **kwargs: Any) -> DifferenceAwareDecoder:
    """DAD (Li et al. 2022): guide map, background-aware features, difference-aware extractor.

    ``encoder_name`` picks any smp encoder (the paper's Table 2 row: ResNet-50).
    """
    return DifferenceAwareDecoder(config, **kwargs)
