"""The U-Nets of two masked-face pipelines in the paper's Table 4, trained from scratch.

* ``din_unet`` (Din et al. 2020, IEEE Access, the "map module" of their unmasking GAN): a
  U-Net-like encoder-decoder with skip connections that outputs the binary map of the mask object.
* ``geng_unet`` (Geng et al. 2020, ACM MM, the segmentation network behind IAMGAN's
  segmentation-guided identity module, trained on MFSR-Seg's mask annotations): the U-Net of
  Ronneberger et al.

Both are one :class:`UNet` with different options; what follows the papers and what is guessed is
written in docs/models.md ("Table 4 methods").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.blocks import upsample_like
from abanet.models.config import ModelConfig
from abanet.models.pretrained import refuse_encoder_weights
from abanet.models.registry import register_model


def double_conv(in_ch: int, out_ch: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions (padding 1), each followed by BN (optional) and ReLU."""
    layers: list[nn.Module] = []
    for c_in in (in_ch, out_ch):
        layers.append(nn.Conv2d(c_in, out_ch, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(SegmentationModel):
    """U-Net: ``depth`` 2x2 max-pool stages, channels doubling from ``base_channels``, skips
    concatenated with the upsampled decoder features, a 1x1 conv to one logits map.

    Args:
        base_channels: channels of the first level (Ronneberger et al.: 64).
        depth: number of downsamplings (Ronneberger et al.: 4; input divisor ``2**depth``).
        batch_norm: BN after every convolution (the 2015 U-Net has none).
        upsample: ``"transpose"`` (2x2 transposed conv halving the channels, as in the 2015
            U-Net) or ``"bilinear"`` (bilinear x2 then a 1x1 conv halving the channels).
        encoder_weights: must be None: these networks are trained from scratch, as in the papers.
    """

    def __init__(
        self,
        config: ModelConfig,
        base_channels: int = 64,
        depth: int = 4,
        batch_norm: bool = False,
        upsample: str = "transpose",
        encoder_weights: str | Path | None = None,
    ) -> None:
        super().__init__(config)
        refuse_encoder_weights(config.name, encoder_weights)
        if upsample not in ("transpose", "bilinear"):
            raise ModelError(f"{config.name}: upsample must be transpose or bilinear")
        if depth < 1 or base_channels < 1:
            raise ModelError(f"{config.name}: depth and base_channels must be >= 1")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            double_conv(c_in, c_out, batch_norm)
            for c_in, c_out in zip([3, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decode = nn.ModuleList()
        for c in reversed(widths[1:]):
            if upsample == "transpose":
                self.up.append(nn.ConvTranspose2d(c, c // 2, 2, stride=2))
            else:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(c, c // 2, 1)
                    )
                )
            self.decode.append(double_conv(c, c // 2, batch_norm))
        self.head = nn.Conv2d(base_channels, 1, 1)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_main(x)]

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decode, strict=True):
            skip = skips.pop()
            x = block(torch.cat([upsample_like(up(x), skip), skip], dim=1))
        return self.head(x)


def _unet(config: ModelConfig, kwargs: dict[str, Any]) -> UNet:
    config.size_divisor = 2 ** int(kwargs.get("depth", 4))
    return UNet(config, **kwargs)


@register_model(
    family="maskface", encoder="-", base_channels=32, depth=4, batch_norm=True, upsample="bilinear"
)
def din_unet(config: ModelConfig, **kwargs: Any) -> UNet:
    """Din et al. 2020 map module: a U-Net (BN, bilinear upsampling), from scratch.

    The mask-object detector of "A novel GAN-based network for unmasking of masked face".
    """
    return _unet(config, kwargs)


@register_model(
    family="maskface",
    encoder="-",
    base_channels=64,
    depth=4,
    batch_norm=False,
    upsample="transpose",
)
def geng_unet(config: ModelConfig, **kwargs: Any) -> UNet:
    """Geng et al. 2020 segmentation network: the 2015 U-Net, from scratch.

    The mask segmenter of "Masked face recognition with generative data augmentation and domain
    constrained ranking" (IAMGAN).
    """
    return _unet(config, kwargs)
