"""Streaming evaluation with the paper's protocol: per-image metrics, averaged over images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from abanet.errors import AbanetError
from abanet.metrics.binary import (
    BINARY_KEYS,
    DATASET_KEYS,
    confusion_counts,
    prepare,
    scores_from_counts,
)
from abanet.metrics.structure import STRUCTURE_KEYS, structure_one, to_uint8

#: Keys of ``compute()`` that are means of the per-image values.
MEAN_KEYS = BINARY_KEYS + ("fbeta_adaptive", "smeasure", "emeasure_adaptive", "emeasure_mean")


def _is_image_list(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(
        isinstance(v, (np.ndarray, torch.Tensor)) for v in x
    )


class SegmentationMetrics:
    """Accumulate per-image segmentation metrics over batches.

    ``update(probs, targets, names=None)`` takes a batch of probabilities (B, 1, H, W), (B, H, W) or
    one (H, W) map, torch or numpy, with binary targets of the same shape; a list of such arrays
    is accepted too (images of different sizes). Per image it records IoU, F1, precision, recall,
    accuracy (at ``prob >= threshold``), MAE on the probability map and, with ``structure=True``,
    PySODMetrics' F-beta (beta^2 0.3), S-measure (alpha 0.5) and E-measure (see
    :mod:`abanet.metrics.structure`; ``normalize`` is passed there). Binary counting is vectorised
    on the input's device; only the counts come back to the CPU (plus the maps, for structure).

    ``compute()`` returns, as floats:

    - ``iou f1 precision recall accuracy mae fbeta_adaptive smeasure emeasure_adaptive
      emeasure_mean``: means over images of the per-image values (the paper's protocol);
    - ``fbeta_max`` and ``emeasure_max``: the maximum over the 256 thresholds of the curve averaged
      over images (PySODMetrics' and the SOD literature's definition; a per-image row instead holds
      that image's own maximum, so the row mean can be higher);
    - ``dataset_iou dataset_f1 dataset_precision dataset_recall dataset_accuracy``: the same
      scores from the confusion matrix pooled over all pixels of all images;
    - ``images``: the number of images.

    Empty masks: a 0/0 ratio counts as 1 (both empty => iou = f1 = precision = recall = 1; empty
    ground truth with a non-empty prediction => iou = f1 = precision = 0, recall = 1; empty
    prediction with a non-empty ground truth => iou = f1 = recall = 0, precision = 1).
    """

    def __init__(self, threshold: float = 0.5, structure: bool = True, normalize: bool = False):
        if not 0.0 <= float(threshold) <= 1.0:
            raise AbanetError(f"metrics: threshold must lie in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.structure = bool(structure)
        self.normalize = bool(normalize)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._names: list[str] = []
        self._counts: list[np.ndarray] = []  # (B, 4) tp fp fn tn per batch
        self._mae: list[np.ndarray] = []
        self._structure_rows: list[dict[str, float]] = []
        self._fbeta_curve_sum = np.zeros(256, dtype=np.float64)
        self._emeasure_curve_sum = np.zeros(256, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._names)

    def update(self, probs: Any, targets: Any, names: Sequence[str] | None = None) -> None:
        """Add a batch of probability maps and their ground-truth masks."""
        if _is_image_list(probs) or _is_image_list(targets):
            if not (isinstance(probs, (list, tuple)) and isinstance(targets, (list, tuple))):
                raise AbanetError("metrics: give predictions and ground truths both as lists")
            if len(probs) != len(targets):
                raise AbanetError(
                    f"metrics: {len(probs)} predictions but {len(targets)} ground truths"
                )
            if names is not None and len(names) != len(probs):
                raise AbanetError(f"metrics: {len(names)} names for {len(probs)} images")
            for i, (p, g) in enumerate(zip(probs, targets, strict=True)):
                self.update(p, g, None if names is None else [names[i]])
            return

        p, g = prepare(probs, targets)
        b = p.shape[0]
        if names is None:
            start = len(self._names)
            batch_names = [str(start + i) for i in range(b)]
        else:
            if isinstance(names, str) or len(names) != b:
                raise AbanetError(
                    f"metrics: names must be a list of {b} names for a batch of {b} images"
                )
            batch_names = [str(n) for n in names]
        tp, fp, fn, tn = confusion_counts(p, g, self.threshold)
        mae = (p.double() - g.double()).abs().flatten(1).mean(dim=1).cpu().numpy()

        rows: list[dict[str, float]] = []
        if self.structure:
            p_u8 = to_uint8(p.cpu().numpy())
            g_np = g.cpu().numpy()
            for i in range(b):
                res = structure_one(p_u8[i], g_np[i], normalize=self.normalize)
                rows.append(res.scores)
                self._fbeta_curve_sum += res.fbeta_curve
                self._emeasure_curve_sum += res.emeasure_curve

        # Record only once everything for the batch succeeded.
        self._counts.append(np.stack([tp, fp, fn, tn], axis=1))
        self._mae.append(mae)
        self._structure_rows.extend(rows)
        self._names.extend(batch_names)

    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._names:
            raise AbanetError("metrics: no images were added (call update() first)")
        return np.concatenate(self._counts, axis=0), np.concatenate(self._mae, axis=0)

    def per_image(self) -> list[dict[str, Any]]:
        """One row per image: ``name`` and every per-image metric, in the order images came."""
        if not self._names:
            return []
        counts, mae = self._stacked()
        scores = scores_from_counts(*counts.T)
        scores["mae"] = mae
        rows = []
        for i, name in enumerate(self._names):
            row: dict[str, Any] = {"name": name}
            row.update({k: float(scores[k][i]) for k in BINARY_KEYS})
            if self.structure:
                row.update(self._structure_rows[i])
            rows.append(row)
        return rows

    def compute(self) -> dict[str, float]:
        """Per-image means, pooled (``dataset_*``) scores and the image count (see class doc)."""
        counts, mae = self._stacked()
        n = len(self._names)
        per = scores_from_counts(*counts.T)
        out: dict[str, float] = {k: float(per[k].mean()) for k in DATASET_KEYS}
        out["mae"] = float(mae.mean())
        if self.structure:
            for k in STRUCTURE_KEYS:
                out[k] = float(np.mean([r[k] for r in self._structure_rows]))
            out["fbeta_max"] = float((self._fbeta_curve_sum / n).max())
            out["emeasure_max"] = float((self._emeasure_curve_sum / n).max())
        pooled = scores_from_counts(*counts.sum(axis=0))
        for k in DATASET_KEYS:
            out[f"dataset_{k}"] = float(pooled[k])
        out["images"] = float(n)
        return out
