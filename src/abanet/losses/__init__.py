"""Segmentation losses on logits: focal, SSIM, IoU, BCE, Dice and the paper's hybrid loss.

>>> from abanet.losses import build_loss
>>> loss_fn = build_loss("focal+ssim+iou")  # the paper's loss; pass the 8 ABANet outputs as a list
"""

from __future__ import annotations

from abanet.losses.functional import (
    SSIM_C1,
    SSIM_C2,
    bce_loss,
    dice_loss,
    focal_loss,
    gaussian_window,
    iou_loss,
    ssim,
    ssim_loss,
)
from abanet.losses.hybrid import (
    PAPER_WEIGHTS,
    PRESETS,
    BCELoss,
    DiceLoss,
    FocalLoss,
    HybridLoss,
    IoULoss,
    SSIMLoss,
    build_loss,
    list_losses,
    parse_loss_spec,
)

__all__ = [
    "PAPER_WEIGHTS",
    "PRESETS",
    "SSIM_C1",
    "SSIM_C2",
    "BCELoss",
    "DiceLoss",
    "FocalLoss",
    "HybridLoss",
    "IoULoss",
    "SSIMLoss",
    "bce_loss",
    "build_loss",
    "dice_loss",
    "focal_loss",
    "gaussian_window",
    "iou_loss",
    "list_losses",
    "parse_loss_spec",
    "ssim",
    "ssim_loss",
]
