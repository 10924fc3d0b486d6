"""Loss components on logits: focal, SSIM, IoU, BCE and Dice (paper section 4.5, spec section 3).

Every function takes LOGITS (never probabilities) and a target in {0, 1}, both of shape
(B, C, H, W) (C is 1 for abanet), and computes in float32 with autocast disabled, whatever the input
dtype. All images of a batch are computed at once (no Python loop over images);
``reduction="mean"`` averages the per-image values over the batch, ``reduction="none"`` returns
them, shape (B,).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from abanet.errors import AbanetError

Reduction = Literal["mean", "none"]

#: SSIM constants for maps in [0, 1] (the paper prints 0.012 and 0.032: a typesetting slip).
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
#: Smoothing added to numerator and denominator of the IoU and Dice ratios.
DEFAULT_EPS = 1e-6


@contextlib.contextmanager
def float32_scope(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device`` inside the block (losses must run in float32)."""
    try:
        ctx = torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dim() != 4:
        raise AbanetError(f"loss: logits must have shape (B, C, H, W), got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise AbanetError(
            f"loss: target shape {tuple(target.shape)} differs from logits shape "
            f"{tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise AbanetError(f"loss: logits must be a floating tensor, got {logits.dtype}")
    return logits.float(), target.float()


def _fp32_loss(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Validate shapes, cast to float32, disable autocast and apply the batch reduction."""

    @functools.wraps(fn)
    def wrapper(
        logits: torch.Tensor, target: torch.Tensor, *args, reduction: Reduction = "mean", **kw
    ) -> torch.Tensor:
        if reduction not in ("mean", "none"):
            raise AbanetError(f"loss: reduction must be 'mean' or 'none', got {reduction!r}")
        with float32_scope(logits.device):
            x, y = _check_pair(logits, target)
            per_image = fn(x, y, *args, **kw)
            return per_image.mean() if reduction == "mean" else per_image

    return wrapper


@_fp32_loss
def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.3, gamma: float = 2.0
) -> torch.Tensor:
    """Binary focal loss (Lin et al.), mean over pixels.

    ``FL = -alpha (1-p)^gamma log(p)`` where the target is 1 and ``-(1-alpha) p^gamma log(1-p)``
    where it is 0, with ``p = sigmoid(logits)``: ``alpha`` weights the POSITIVE (mask) class. The
    logarithms come from ``logsigmoid`` and the modulating factors from ``exp(gamma * logsigmoid)``,
    so extreme logits give finite values and gradients for any ``gamma >= 0``.

    Shape:
        - **logits** - (B, C, H, W) logits.
        - **target** - (B, C, H, W) in {0, 1}.
        - **output** - scalar, or (B,) with ``reduction="none"``.
    """
    log_p = F.logsigmoid(logits)  # log p
    log_q = F.logsigmoid(-logits)  # log (1 - p)
    pos = -alpha * torch.exp(gamma * log_q) * log_p
    neg = -(1.0 - alpha) * torch.exp(gamma * log_p) * log_q
    loss = target * pos + (1.0 - target) * neg
    return loss.flatten(1).mean(dim=1)


@functools.lru_cache(maxsize=8)
def _gaussian_1d(size: int, sigma: float) -> tuple[float, ...]:
    centre = size // 2
    values = [math.exp(-((i - centre) ** 2) / (2.0 * sigma**2)) for i in range(size)]
    total = sum(values)
    return tuple(v / total for v in values)


def gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, device: torch.device | None = None
) -> torch.Tensor:
    """The normalised 2-D Gaussian window (size x size) used by SSIM, float32."""
    g = torch.tensor(_gaussian_1d(size, sigma), dtype=torch.float32, device=device)
    return torch.outer(g, g)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
) -> torch.Tensor:
    """Per-image SSIM of two maps in [0, 1] (Wang et al., as in BASNet's pytorch_ssim).

    Local statistics use an ``window_size`` x ``window_size`` Gaussian window (``sigma``), zero
    padding of ``window_size // 2`` (the output keeps the input size), and the SSIM map is averaged
    over channels and pixels of each image. The Gaussian is applied as two separable 1-D
    convolutions, which equals the 2-D zero-padded convolution.

    Shape:
        - **x**, **y** - (B, C, H, W) maps in [0, 1].
        - **output** - (B,) SSIM per image (1 for identical maps).
    """
    if window_size < 1 or window_size % 2 == 0:
        raise AbanetError(f"ssim: window_size must be a positive odd number, got {window_size}")
    if x.shape != y.shape or x.dim() != 4:
        raise AbanetError(
            f"ssim: inputs must share shape (B, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    with float32_scope(x.device):
        x, y = x.float(), y.float()
        b, c, h, w = x.shape
        pad = window_size // 2
        g = torch.tensor(_gaussian_1d(window_size, sigma), dtype=torch.float32, device=x.device)
        # The five maps whose local means SSIM needs, filtered together as one depthwise
        # (one group per map) convolution: several times faster on CPU than a batch of
        # single-channel convolutions, forward and backward.
        n = b * 5 * c
        maps = torch.stack([x, y, x * x, y * y, x * y], dim=1).reshape(1, n, h, w)
        k_row = g.view(1, 1, 1, -1).expand(n, 1, 1, -1).contiguous()
        k_col = g.view(1, 1, -1, 1).expand(n, 1, -1, 1).contiguous()
        maps = F.conv2d(maps, k_row, padding=(0, pad), groups=n)
        maps = F.conv2d(maps, k_col, padding=(pad, 0), groups=n)
        mu_x, mu_y, e_xx, e_yy, e_xy = maps.view(b, 5, c, h, w).unbind(dim=1)
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
        num = (2.0 * mu_xy + c1) * (2.0 * cov + c2)
        den = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
        return (num / den).flatten(1).mean(dim=1)


@_fp32_loss
def ssim_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Structural loss ``1 - SSIM(sigmoid(logits), target)`` per image (11x11 window, sigma 1.5,
    C1 = 0.01^2, C2 = 0.03^2, zero padding 5 as BASNet's pytorch_ssim), then the batch mean.

    Shape:
        - **logits** - (B, C, H, W) logits.
        - **target** - (B, C, H, W) in {0, 1}.
        - **output** - scalar, or (B,) with ``reduction="none"``.
    """
    return 1.0 - ssim(torch.sigmoid(logits), target, window_size=window_size, sigma=sigma)


@_fp32_loss
def iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Soft IoU loss per image: ``1 - (sum(S*G) + eps) / (sum(S + G - S*G) + eps)``, S = sigmoid.

    ``eps`` is added to numerator and denominator so the ratio is always defined: an image whose
    target is empty and whose prediction is (numerically) empty scores 0 loss, not 0/0. With an
    empty target the loss is ``1 - eps / (sum(S) + eps)``, which falls towards 0 only as the
    predicted mass ``sum(S)`` falls well below ``eps`` (the focal and SSIM terms carry the signal
    on such images). On non-empty masks ``eps`` changes the value by less than 1e-6.

    Shape:
        - **logits** - (B, C, H, W) logits.
        - **target** - (B, C, H, W) in {0, 1}.
        - **output** - scalar, or (B,) with ``reduction="none"``.
    """
    s = torch.sigmoid(logits).flatten(1)
    g = target.flatten(1)
    inter = (s * g).sum(dim=1)
    union = s.sum(dim=1) + g.sum(dim=1) - inter
    return 1.0 - (inter + eps) / (union + eps)


@_fp32_loss
def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Soft Dice loss per image: ``1 - (2 sum(S*G) + eps) / (sum(S) + sum(G) + eps)``.

    Same ``eps`` rule as :func:`iou_loss` (both empty => 0 loss).

    Shape:
        - **logits** - (B, C, H, W) logits.
        - **target** - (B, C, H, W) in {0, 1}.
        - **output** - scalar, or (B,) with ``reduction="none"``.
    """
    s = torch.sigmoid(logits).flatten(1)
    g = target.flatten(1)
    inter = (s * g).sum(dim=1)
    return 1.0 - (2.0 * inter + eps) / (s.sum(dim=1) + g.sum(dim=1) + eps)


@_fp32_loss
def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over pixels (the stable log-sum-exp formulation).

    Shape:
        - **logits** - (B, C, H, W) logits.
        - **target** - (B, C, H, W) in {0, 1}.
        - **output** - scalar, or (B,) with ``reduction="none"``.
    """
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.flatten(1).mean(dim=1)
