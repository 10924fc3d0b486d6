"""Test-time refinements a model's config can ask for: horizontal-flip averaging and hole filling.

Both are part of a trained model's inference recipe (``ModelConfig.flip_tta`` and
``ModelConfig.fill_holes``), honoured by :class:`abanet.Segmenter`, ``abanet predict`` and
``abanet evaluate`` alike, and switchable per call.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch


def flip_average(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``run(x)`` and the mirror image of ``run(mirror(x))`` (left-right flip).

    Shape:
        - x: ``(B, C, H, W)``; ``run`` maps it to probabilities ``(B, 1, H, W)``.
        - Output: ``(B, 1, H, W)``.
    """
    both = run(torch.cat([x, x.flip(-1)]))
    n = x.shape[0]
    return 0.5 * (both[:n] + both[n:].flip(-1))


def fill_holes(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``prob`` with the holes of its mask (background not connected to the image border, inside
    ``prob >= threshold``) raised to 1.0. A face mask has no holes; patterned cloth and highlights
    punch them into predictions.

    Shape:
        - prob: ``(H, W)`` float probabilities. Output: the same shape and dtype (a new array when
          there are holes, else ``prob`` itself).
    """
    mask = (prob >= threshold).astype(np.uint8)
    if not mask.any():
        return prob
    flood = np.pad(mask, 1)
    seed_mask = np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, seed_mask, (0, 0), 1)  # background reachable from the border -> 1
    holes = flood[1:-1, 1:-1] == 0
    if not holes.any():
        return prob
    out = prob.copy()
    out[holes] = 1.0
    return out
