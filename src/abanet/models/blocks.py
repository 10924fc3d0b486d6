"""Building blocks shared by the architectures: conv-BN-ReLU, attention gate, refinement module,
non-local attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (by default) convolution, batch norm, ReLU."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, dilation: int = 1, stride: int = 1
    ) -> None:
        pad = dilation * (kernel // 2)
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref``."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., Attention U-Net) as ABANet uses it.

    ``x`` (skip, resolution 2s) is brought to the gating signal's resolution ``s`` by a strided
    1x1 conv, added to a 1x1 projection of ``g``, passed through ReLU, a 1x1 conv to one channel
    and a sigmoid; the coefficient map is upsampled x2 and multiplies ``x``.

    Shape:
        - x: ``(B, C_x, 2H, 2W)``; g: ``(B, C_g, H, W)``
        - output: ``(B, C_x, 2H, 2W)`` (same as ``x``)
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = inter_channels or max(x_channels // 2, 1)
        self.w_x = nn.Conv2d(x_channels, inter, 1, stride=2, bias=False)
        self.w_g = nn.Conv2d(g_channels, inter, 1, bias=True)
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention map in [0, 1] at the resolution of ``x``: ``(B, 1, 2H, 2W)``."""
        theta = self.w_x(x)
        phi = upsample_like(self.w_g(g), theta)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return upsample_like(alpha, x)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class RefinementModule(nn.Module):
    """BASNet's residual refinement module: a 4-level encoder-decoder predicting a residual.

    Input and output are logits; output = input + residual.

    Shape:
        - input: ``(B, 1, H, W)`` with H, W multiples of 16
        - output: ``(B, 1, H, W)``
    """

    def __init__(self, channels: int = 64, levels: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.down = nn.ModuleList(ConvBNReLU(channels, channels) for _ in range(levels))
        self.bottom = ConvBNReLU(channels, channels)
        self.up = nn.ModuleList(ConvBNReLU(2 * channels, channels) for _ in range(levels))
        self.head = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        h = self.stem(logits)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = block(torch.cat([upsample_like(h, skip), skip], dim=1))
        return logits + self.head(h)


class NonLocal2d(nn.Module):
    """Non-local attention (Wang et al. 2018, embedded Gaussian): each position of ``x`` gathers
    from every position of ``context`` (``x`` itself by default).

    ``out = x + W(softmax(theta(x) phi(c)^T) g(c))``: theta, phi and g are 1x1 convs to
    ``inter_channels`` (half of ``channels`` by default), W a 1x1 conv back to ``channels`` and a
    batch norm initialised to zero, so the block starts as the identity. ``subsample`` max-pools
    the keys and values by 2 (the original's cheaper form).

    Shape:
        - x: ``(B, C, H, W)``; context: ``(B, C_c, H_c, W_c)``
        - output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        inter_channels: int | None = None,
        subsample: bool = False,
    ) -> None:
        super().__init__()
        inter = inter_channels or max(channels // 2, 1)
        ctx = context_channels or channels
        self.subsample = subsample
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(ctx, inter, 1)
        self.g = nn.Conv2d(ctx, inter, 1)
        self.w = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w[1].weight)
        nn.init.zeros_(self.w[1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        c = x if context is None else context
        key, value = self.phi(c), self.g(c)
        if self.subsample and min(c.shape[-2:]) >= 2:
            key, value = F.max_pool2d(key, 2), F.max_pool2d(value, 2)
        query = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, inter)
        out = F.scaled_dot_product_attention(
            query, key.flatten(2).transpose(1, 2), value.flatten(2).transpose(1, 2), scale=1.0
        )
        return x + self.w(out.transpose(1, 2).reshape(x.shape[0], -1, *x.shape[-2:]))
