"""Evaluation metrics with the paper's protocol: per-image scores averaged over images.

>>> from abanet.metrics import SegmentationMetrics
>>> m = SegmentationMetrics()          # threshold 0.5, PySODMetrics structure measures on
>>> # m.update(torch.sigmoid(logits), masks, names=batch_names); m.compute(); m.per_image()

See docs/metrics.md for definitions and the empty-mask rules.
"""

from __future__ import annotations

from abanet.metrics.accumulator import MEAN_KEYS, SegmentationMetrics
from abanet.metrics.binary import (
    BINARY_KEYS,
    DATASET_KEYS,
    batch_binary_scores,
    binary_scores,
    scores_from_counts,
)
from abanet.metrics.structure import (
    FBETA_BETA2,
    SMEASURE_ALPHA,
    STRUCTURE_KEYS,
    structure_scores,
    to_uint8,
)

__all__ = [
    "BINARY_KEYS",
    "DATASET_KEYS",
    "FBETA_BETA2",
    "MEAN_KEYS",
    "SMEASURE_ALPHA",
    "STRUCTURE_KEYS",
    "SegmentationMetrics",
    "batch_binary_scores",
    "binary_scores",
    "scores_from_counts",
    "structure_scores",
    "to_uint8",
]
