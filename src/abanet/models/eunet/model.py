"""EU-Net: "Enhanced U-Net: a feature enhancement network for polyp segmentation" (Patel, Bur and
Wang, CRV 2021), the ABANet paper's Table 2 row "EU-Net (ResNet-34)". See docs/models.md for what
follows the paper and what had to be guessed.

* Encoder: ResNet-34 (any smp encoder with ``encoder_name``), five levels at strides 2 to 32.
* Semantic feature enhancement module (SFEM): the deepest features, projected to 256 channels and
  pooled to an 8x8 grid, go through non-local attention inside 4x4 patches, inside 2x2 patches and
  over the whole grid; squeeze-excitation fuses the three; a 1x1 conv per decoder level gives the
  global context that joins that level.
* Adaptive global context module (AGCM): at every level the encoder skip is enhanced by non-local
  attention from the coarser decoder features (cross-level), the decoder features by non-local
  self-attention, and both are concatenated with the SFEM context before the decoder block.
* Decoder blocks: two 3x3 conv-BN-ReLU (the first to a quarter of the channels), then x2 bilinear
  upsampling; deep supervision from decoder levels 2 to 5, main output at full resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import SqueezeExcitation

from abanet.models.blocks import ConvBNReLU, NonLocal2d, upsample_like
from abanet.models.config import ModelConfig
from abanet.models.encoders import SmpEncoderModel
from abanet.models.registry import register_model

GRID = 8  # SFEM's pooled grid
PATCHES = (4, 2, GRID)  # SFEM branches: attention inside 4x4 patches, 2x2 patches, whole grid


class DecoderBlock(nn.Sequential):
    """3x3 conv-BN-ReLU to a quarter of the channels, 3x3 conv-BN-ReLU, x2 upsampling."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        mid = max(in_ch // 4, 1)
        super().__init__(
            ConvBNReLU(in_ch, mid),
            ConvBNReLU(mid, out_ch),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )


class SideHead(nn.Sequential):
    """Prediction head: 3x3 conv-BN-ReLU to a quarter of the channels, dropout, 1x1 to logits."""

    def __init__(self, in_ch: int) -> None:
        mid = max(in_ch // 4, 1)
        super().__init__(ConvBNReLU(in_ch, mid), nn.Dropout2d(0.1), nn.Conv2d(mid, 1, 1))


def _patchwise(block: nn.Module, x: torch.Tensor, patch: int) -> torch.Tensor:
    """Apply ``block`` to each non-overlapping ``patch`` x ``patch`` tile of ``x`` separately."""
    b, c, h, w = x.shape
    if patch >= min(h, w):
        return block(x)
    nh, nw = h // patch, w // patch
    tiles = x.reshape(b, c, nh, patch, nw, patch).permute(0, 2, 4, 1, 3, 5)
    out = block(tiles.reshape(b * nh * nw, c, patch, patch))
    out = out.reshape(b, nh, nw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, c, h, w)


class SemanticEnhancement(nn.Module):
    """SFEM: patch-wise and global non-local attention on a pooled grid of the deepest features.

    Shape:
        - input: ``(B, C, h, w)`` (the projected deepest encoder level)
        - output: one map per entry of ``out_channels``, each ``(B, out_channels[i], h, w)``
    """

    def __init__(self, channels: int, out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(NonLocal2d(channels, subsample=True) for _ in PATCHES)
        self.fuse = SqueezeExcitation(len(PATCHES) * channels, len(PATCHES) * channels // 16)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(len(PATCHES) * channels, c, 1), nn.ReLU(inplace=True))
            for c in out_channels
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid = F.adaptive_avg_pool2d(x, GRID)
        fused = self.fuse(
            torch.cat(
                [_patchwise(nl, grid, p) for nl, p in zip(self.branches, PATCHES, strict=True)],
                dim=1,
            )
        )
        return [F.adaptive_avg_pool2d(head(fused), x.shape[-2:]) for head in self.heads]


class EUNet(SmpEncoderModel):
    """EU-Net. Outputs, main first: the full-resolution map, then the side outputs of decoder
    levels 2 to 5 (strides 2 to 16), all at input size. ``semantic_channels``: width of the
    SFEM (256 in the paper); the other options: see :class:`SmpEncoderModel` (encoder:
    ResNet-34)."""

    def __init__(
        self,
        config: ModelConfig,
        encoder_name: str = "resnet34",
        encoder_weights: str | Path | None = None,
        semantic_channels: int = 256,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(config, encoder_name, encoder_weights, deep_supervision)
        enc = self.levels  # levels 1..5: strides 2, 4, 8, 16, 32
        dec = [*enc[:4], min(enc[4], 512)]  # decoder level k outputs dec[k-1] channels
        self.project = ConvBNReLU(enc[4], semantic_channels, kernel=1)
        # global context for levels 4, 3, 2, 1 (the skip's width)
        self.semantic = SemanticEnhancement(semantic_channels, tuple(enc[3::-1]))
        self.decoder5 = DecoderBlock(enc[4], dec[4])
        self.cross = nn.ModuleList()  # AGCM: skip <- coarser decoder features
        self.self_attention = nn.ModuleList()
        self.decoders = nn.ModuleList()
        source = dec[4]
        for level in range(4, 0, -1):
            skip, prev = enc[level - 1], dec[level]
            self.cross.append(NonLocal2d(skip, context_channels=source, inter_channels=skip))
            self.self_attention.append(NonLocal2d(prev, subsample=True))
            combined = 2 * skip + prev
            self.decoders.append(DecoderBlock(combined, dec[level - 1]))
            source = combined
        self.sides = nn.ModuleList(SideHead(dec[level - 1]) for level in range(2, 6))
        self.head = nn.Sequential(ConvBNReLU(dec[0], 32), nn.Dropout2d(0.1), nn.Conv2d(32, 1, 1))

    def _decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features of levels 1 (full resolution) to 5 (stride 16)."""
        feats = self.encoder(x)[1:]
        contexts = self.semantic(self.project(feats[4]))
        decoded = [self.decoder5(feats[4])]
        source = decoded[0]
        for i, level in enumerate(range(4, 0, -1)):
            skip, prev = feats[level - 1], decoded[-1]
            local = self.cross[i](skip, source)
            combined = torch.cat(
                [local, self.self_attention[i](prev), upsample_like(contexts[i], skip)], dim=1
            )
            decoded.append(self.decoders[i](combined))
            source = combined
        return decoded[::-1]

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        decoded = self._decode(x)
        sides = [side(d) for side, d in zip(self.sides, decoded[1:], strict=True)]
        return self.outputs([self.head(decoded[0]), *sides], x)

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_like(self.head(self._decode(x)[0]), x)


@register_model(family="sota", encoder="resnet34", encoder_weights="smp", encoder_name="resnet34")
def eunet(config: ModelConfig, **kwargs: Any) -> EUNet:
    """EU-Net (Patel et al. 2021): SFEM + AGCM U-Net, deep supervision.

    ``encoder_name`` picks any smp encoder (the paper: ResNet-34).
    """
    return EUNet(config, **kwargs)
