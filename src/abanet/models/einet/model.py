"""EINet: "EINet: camouflaged object detection with pyramid vision transformer" (Li and Jiao,
J. Electronic Imaging 31(5) 053002, 2022), the ABANet paper's Table 2 row "EINet (ResNet50)".

The paper is not openly available and no code of it was found: this is a reconstruction from its
name and title (edge information, level interaction, a pyramid encoder), built the way the
edge-guided camouflaged-object detectors of its time are (BGNet, Sun et al. 2022). See
docs/models.md.

* Encoder: ResNet-50 (any smp encoder with ``encoder_name``), levels 1-4 at strides 4 to 32.
* Edge module: the lowest and deepest levels, reduced and joined at stride 4, predict an edge map.
* Edge guidance, per level: the level's features, reduced to 64 channels, are weighted by the edge
  map (``f * sigmoid(edge) + f``), convolved, and re-weighted per channel (ECA attention).
* Interaction: a top-down decoder joins each level with the coarser result through four groups of
  dilated 3x3 convs (dilations 1-4), each group also taking the previous group's output.
* Deep supervision: predictions from the fused levels 1 (main), 2 and 3. The edge map guides but is
  not an output: abanet's losses supervise every output with the mask.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abanet.models.blocks import ConvBNReLU, upsample_like
from abanet.models.config import ModelConfig
from abanet.models.encoders import SmpEncoderModel
from abanet.models.registry import register_model


class EdgeModule(nn.Module):
    """Edge logits at stride 4 from the lowest and the deepest levels."""

    def __init__(self, low_ch: int, deep_ch: int) -> None:
        super().__init__()
        self.low = ConvBNReLU(low_ch, 64, kernel=1)
        self.deep = ConvBNReLU(deep_ch, 256, kernel=1)
        self.head = nn.Sequential(ConvBNReLU(320, 256), ConvBNReLU(256, 256), nn.Conv2d(256, 1, 1))

    def forward(self, low: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        low = self.low(low)
        return self.head(torch.cat([upsample_like(self.deep(deep), low), low], dim=1))


class ChannelAttention(nn.Module):
    """ECA (Wang et al. 2020): a 1D conv across the pooled channels gives per-channel weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = int(abs((math.log2(channels) + 1) / 2))
        k = k if k % 2 else k + 1
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        return x * torch.sigmoid(self.conv(pooled)).transpose(1, 2).unsqueeze(-1)


class EdgeGuidance(nn.Module):
    """One level's features weighted by the edge map, convolved and channel-attended."""

    def __init__(self, in_ch: int, channels: int) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_ch, channels, kernel=1)
        self.conv = ConvBNReLU(channels, channels)
        self.attention = ChannelAttention(channels)

    def forward(self, x: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        x = x * torch.sigmoid(upsample_like(edge, x)) + x
        return self.attention(self.conv(x))


class Interaction(nn.Module):
    """Joins a level with the coarser result: 1x1 fusion, four groups of dilated 3x3 convs
    (dilations 1-4, each group also given the previous group's output), 1x1, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(2 * channels, channels, kernel=1)
        group = channels // 4
        self.groups = nn.ModuleList(ConvBNReLU(group, group, dilation=d) for d in range(1, 5))
        self.out = ConvBNReLU(channels, channels, kernel=1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([low, upsample_like(high, low)], dim=1))
        outs, prev = [], None
        for conv, part in zip(self.groups, x.chunk(4, dim=1), strict=True):
            prev = conv(part if prev is None else part + prev)
            outs.append(prev)
        return x + self.out(torch.cat(outs, dim=1))


class EINet(SmpEncoderModel):
    """EINet (reconstruction). Outputs, main first: predictions of fused levels 1, 2 and 3 (strides
    4, 8 and 16), all at input size. ``channels``: decoder width (a multiple of 4); the other
    options: see :class:`SmpEncoderModel` (encoder: ResNet-50)."""

    def __init__(
        self,
        config: ModelConfig,
        encoder_name: str = "resnet50",
        encoder_weights: str | Path | None = None,
        channels: int = 64,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(config, encoder_name, encoder_weights, deep_supervision)
        enc = self.levels[1:]  # strides 4, 8, 16, 32
        self.edge = EdgeModule(enc[0], enc[3])
        self.guidance = nn.ModuleList(EdgeGuidance(c, channels) for c in enc)
        self.interaction = nn.ModuleList(Interaction(channels) for _ in range(3))
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in range(3))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)[2:]
        edge = self.edge(feats[0], feats[3])
        guided = [g(f, edge) for g, f in zip(self.guidance, feats, strict=True)]
        fused = [guided[3]]
        for level in (2, 1, 0):  # top-down: levels 3, 2, 1
            fused.append(self.interaction[level](guided[level], fused[-1]))
        fused = fused[:0:-1]  # levels 1, 2, 3
        return self.outputs([h(f) for h, f in zip(self.heads, fused, strict=True)], x)


@register_model(family="sota", encoder="resnet50", encoder_weights="smp", encoder_name="resnet50")
def einet(config: ModelConfig, **kwargs: Any) -> EINet:
    """EINet (Li and Jiao 2022, reconstructed): edge guidance and cross-level interaction.

    ``encoder_name`` picks any smp encoder (the ABANet paper's Table 2 row: ResNet-50).
    """
    return EINet(config, **kwargs)
