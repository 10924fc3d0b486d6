"""Mask agreement of a backend with the fp32 reference on a labelled dataset.

Reduced-precision backends (``onnxruntime_int8``) are judged by the masks they produce, not by
probability differences: the fraction of pixels whose binary mask equals fp32 eager's, and the
change of the mean IoU against the ground truth. Both run the evaluation protocol
(:mod:`abanet.engine.evaluation`: whole image resized to the model's input, probabilities resized
back to the ground truth's size, thresholded at the model's threshold).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abanet.inference.backends.auto import compare_outputs
from abanet.inference.backends.base import Backend
from abanet.metrics.binary import binary_scores

#: the acceptance bounds of a reduced-precision backend (issue 15)
MIN_AGREEMENT = 0.99
MAX_IOU_CHANGE = 0.002


@dataclass
class Agreement:
    """Agreement over a set of images (pixels pooled; IoU averaged per image)."""

    images: int
    pixel_agreement: float
    min_image_agreement: float
    worst_image: str
    iou_reference: float
    iou_backend: float
    max_prob_diff: float

    @property
    def iou_change(self) -> float:
        return self.iou_backend - self.iou_reference

    @property
    def passes(self) -> bool:
        """Within the bounds: >= 99 % of pixels agree, |mean IoU change| <= 0.002."""
        return self.pixel_agreement >= MIN_AGREEMENT and abs(self.iou_change) <= MAX_IOU_CHANGE

    def line(self) -> str:
        return (
            f"{self.images} images: {100 * self.pixel_agreement:.3f}% of pixels agree "
            f"(worst image {100 * self.min_image_agreement:.2f}%, {self.worst_image}); mean IoU "
            f"{self.iou_reference:.4f} -> {self.iou_backend:.4f} ({self.iou_change:+.4f}); max "
            f"prob diff {self.max_prob_diff:.3g} -> {'PASS' if self.passes else 'FAIL'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "iou_change": self.iou_change, "passes": self.passes}


@dataclass
class AgreementReport:
    """Agreement on every image, and on those the backend was not calibrated on."""

    backend: str
    reference: str
    all: Agreement
    held_out: Agreement | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"agreement of {self.backend} with {self.reference}, all {self.all.line()}"]
        if self.held_out is not None:
            out.append(f"  images not used for calibration, {self.held_out.line()}")
        return out + [f"  note: {n}" for n in self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reference": self.reference,
            "all": self.all.to_dict(),
            "held_out": self.held_out.to_dict() if self.held_out else None,
            "notes": self.notes,
        }


@dataclass
class ImagePair:
    """One image's masks from both backends, scored: what :func:`summarise` pools."""

    name: str
    agree: float
    pixels: int
    max_diff: float
    iou_reference: float
    iou_backend: float


def compare_image(
    name: str, probs: np.ndarray, reference: np.ndarray, gt: np.ndarray, threshold: float
) -> ImagePair:
    """Score one image's two probability maps (HxW) against each other and the ground truth."""
    p, r = torch.from_numpy(probs), torch.from_numpy(reference)
    agree, diff = compare_outputs(p, r, threshold)
    return ImagePair(
        name,
        agree,
        int(p.numel()),
        diff,
        binary_scores(reference, gt, threshold)["iou"],
        binary_scores(probs, gt, threshold)["iou"],
    )


def summarise(pairs: Sequence[ImagePair]) -> Agreement:
    """Pool :class:`ImagePair` results: agreement over all pixels, IoU averaged over images."""
    pixels = sum(p.pixels for p in pairs)
    worst = min(pairs, key=lambda p: p.agree)
    return Agreement(
        images=len(pairs),
        pixel_agreement=sum(p.agree * p.pixels for p in pairs) / pixels,
        min_image_agreement=worst.agree,
        worst_image=worst.name,
        iou_reference=float(np.mean([p.iou_reference for p in pairs])),
        iou_backend=float(np.mean([p.iou_backend for p in pairs])),
        max_prob_diff=max(p.max_diff for p in pairs),
    )


def backend_agreement(
    model: Any,
    data: str | os.PathLike[str],
    backend: str | Backend,
    reference: str = "eager",
    size: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    kind: str = "auto",
) -> AgreementReport:
    """Run ``backend`` and ``reference`` on every labelled image of ``data`` and compare masks.

    ``model``: a SegmentationModel, shipped name or weights path; ``backend``: a registered name
    or a ready backend built for ``model``. When the backend says which files calibrated it
    (``calibration_files``), the images among them are also left out in ``held_out``.
    """
    from abanet.data.readers import load_image
    from abanet.engine.evaluation import load_scored_mask, select_samples
    from abanet.inference.segmenter import Segmenter
    from abanet.models.hub import resolve_model

    net, dev, _ = resolve_model(model, device)
    samples = select_samples(data, kind=kind)
    segmenters = [
        Segmenter(net, device=str(dev), backend=b, detector=None, batch_size=batch_size, size=size)
        for b in (backend, reference)
    ]
    threshold = segmenters[0].threshold
    pairs = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images = [load_image(s) for s in chunk]
        probs, refs = (seg.segment_crops(images) for seg in segmenters)
        for s, p, r in zip(chunk, probs, refs, strict=True):
            gt = load_scored_mask(s)
            pairs.append(compare_image(s.name, p, r, gt, threshold))
    calibrated = {
        Path(f).resolve() for f in getattr(segmenters[0].backend, "calibration_files", ())
    }
    report = AgreementReport(segmenters[0].backend.name, reference, summarise(pairs))
    if calibrated:
        held = [
            p
            for p, s in zip(pairs, samples, strict=True)
            if Path(s.image_path).resolve() not in calibrated
        ]
        if held:
            report.held_out = summarise(held)
        report.notes.append(f"{len(pairs) - len(held)} of {len(pairs)} images calibrated it")
    return report
