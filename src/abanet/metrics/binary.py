"""Binary segmentation scores at a threshold (paper equations 6-10) and MAE, per image.

Conventions (see docs/metrics.md):

- ``pred = prob >= threshold`` (0.5 by default). A prediction saved as ``round(255 * prob)`` and
  thresholded at ``> 127`` gives exactly the same mask.
- The ground truth is binarised as ``gt >= 0.5``; it must be boolean or hold values in [0, 1]
  (threshold 0..255 masks at 127 first).
- A ratio whose numerator and denominator are both 0 is 1 (nothing to find / nothing wrongly
  predicted). Hence: both empty => iou = f1 = precision = recall = 1; empty ground truth with a
  non-empty prediction => iou = f1 = precision = 0, recall = 1; non-empty ground truth with an empty
  prediction => iou = f1 = recall = 0, precision = 1. F1 is ``2TP / (2TP + FP + FN)``, which equals
  the harmonic mean of precision and recall in every case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from abanet.errors import AbanetError

BINARY_KEYS = ("iou", "f1", "precision", "recall", "accuracy", "mae")
DATASET_KEYS = ("iou", "f1", "precision", "recall", "accuracy")


def to_tensor(x: Any, what: str) -> torch.Tensor:
    """A detached torch view of a tensor, numpy array or nested list (no copy where possible)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise AbanetError(f"metrics: cannot read {what} as an array ({exc})") from None


def as_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    """(H, W), (B, H, W) or (B, 1, H, W) -> (B, H, W)."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise AbanetError(
        f"metrics: {what} must have shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}"
    )


def prepare(probs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and return ``(probs (B, H, W) float, gt (B, H, W) bool)`` on the input's device."""
    p = as_batch(to_tensor(probs, "prediction"), "prediction")
    g = as_batch(to_tensor(targets, "ground truth"), "ground truth")
    if p.shape != g.shape:
        raise AbanetError(
            f"metrics: prediction shape {tuple(p.shape)} differs from ground-truth shape "
            f"{tuple(g.shape)}"
        )
    if p.numel() == 0:
        raise AbanetError(f"metrics: empty prediction of shape {tuple(p.shape)}")
    if g.device != p.device:
        g = g.to(p.device)
    if not p.is_floating_point() or p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()
    pmin, pmax = float(p.min()), float(p.max())
    if not (pmin >= 0.0 and pmax <= 1.0):  # also catches NaN
        raise AbanetError(
            f"metrics: prediction values must be probabilities in [0, 1], got min {pmin:g}, "
            f"max {pmax:g} (apply sigmoid to logits; divide 0..255 maps by 255)"
        )
    if g.dtype != torch.bool:
        gmin, gmax = float(g.min()), float(g.max())
        if not (gmin >= 0.0 and gmax <= 1.0):
            raise AbanetError(
                f"metrics: ground truth must be boolean or in [0, 1], got min {gmin:g}, max "
                f"{gmax:g} (threshold 0..255 masks at 127 first)"
            )
        g = g >= 0.5
    return p, g


def confusion_counts(
    probs: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image TP, FP, FN, TN (int64 arrays of shape (B,)) for prepared (B, H, W) inputs."""
    pred = probs >= threshold
    tp = (pred & gt).flatten(1).sum(dim=1)
    fp = (pred & ~gt).flatten(1).sum(dim=1)
    fn = (~pred & gt).flatten(1).sum(dim=1)
    n = pred[0].numel()
    counts = torch.stack([tp, fp, fn]).cpu().numpy().astype(np.int64)
    return counts[0], counts[1], counts[2], n - counts.sum(axis=0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 / 0 := 1."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.ones(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores_from_counts(tp: Any, fp: Any, fn: Any, tn: Any) -> dict[str, np.ndarray]:
    """IoU, F1, precision, recall and accuracy from confusion counts (element-wise, 0/0 := 1)."""
    tp, fp, fn, tn = (np.asarray(v, dtype=np.int64) for v in (tp, fp, fn, tn))
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def batch_binary_scores(probs: Any, targets: Any, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-image binary scores and MAE for a batch; each value is a float64 array of shape (B,).

    Shape:
        - **probs** - (B, 1, H, W), (B, H, W) or (H, W) probabilities in [0, 1] (torch or numpy).
        - **targets** - same shape, boolean or values in [0, 1] (binarised at 0.5).
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise AbanetError(f"metrics: threshold must lie in [0, 1], got {threshold!r}")
    p, g = prepare(probs, targets)
    tp, fp, fn, tn = confusion_counts(p, g, threshold)
    scores = scores_from_counts(tp, fp, fn, tn)
    mae = (p.double() - g.double()).abs().flatten(1).mean(dim=1)
    scores["mae"] = mae.cpu().numpy()
    return scores


def binary_scores(prob: Any, gt: Any, threshold: float = 0.5) -> dict[str, float]:
    """IoU, F1, precision, recall, accuracy (at ``prob >= threshold``) and MAE of ONE image.

    MAE is the mean absolute difference between the probability map (not thresholded) and the
    ground truth. Empty masks follow the module's 0/0 := 1 rule.

    Shape:
        - **prob** - (H, W), (1, H, W) or (1, 1, H, W) probabilities in [0, 1].
        - **gt** - same shape, boolean or values in [0, 1].
    """
    scores = batch_binary_scores(prob, gt, threshold)
    if len(scores["mae"]) != 1:
        raise AbanetError(
            f"metrics: binary_scores takes one image, got {len(scores['mae'])}; use "
            "batch_binary_scores or SegmentationMetrics for batches"
        )
    return {k: float(scores[k][0]) for k in BINARY_KEYS}
