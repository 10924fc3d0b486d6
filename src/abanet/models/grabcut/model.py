"""GrabCut (Rother et al. 2004; OpenCV ``cv2.grabCut``) initialised from face landmarks, as
Zhang et al. (2022, masked face recognition with mask transfer) segment the mask region.

Nothing is learned (``trainable = False``): ``train`` saves the method as it is, and it is
evaluated like every model. Per face crop (the network input, un-normalised back to RGB):

1. Landmarks: BlazeFace on the crop padded with grey (as the full-photo pipeline looks at face
   crops); its six points are the eyes, nose tip, mouth centre and ear tragions. Where it finds
   no face, :data:`MFSD_LANDMARKS` (the median points of the 136 mfsd-dev crops) stand in.
2. Initial labels: the rectangle from the nose bridge (halfway between the eye line and the nose
   tip) down to the bottom of the crop, between the ear tragions, is *probably mask*; outside it,
   *background*; a square around the mouth (half side :data:`MOUTH_SEED` x the ear-to-ear width)
   is *mask* (a worn mask covers the mouth).
3. ``cv2.grabCut`` with these labels (``GC_INIT_WITH_MASK``, ``iterations`` rounds); mask and
   probably-mask pixels are the prediction, returned as logits ``+-LOGIT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.pretrained import refuse_encoder_weights
from abanet.models.registry import register_model

#: the logit of a pixel GrabCut labels mask (and minus it for background)
LOGIT = 10.0
#: BlazeFace's six points (right eye, left eye, nose tip, mouth, right and left ear tragion) as
#: fractions of the crop: medians over the 136 mfsd-dev crops at 128 px (docs/models.md)
MFSD_LANDMARKS = np.array(
    [[0.288, 0.424], [0.697, 0.415], [0.495, 0.655], [0.514, 0.832], [0.096, 0.484], [0.903, 0.47]],
    dtype=np.float32,
)
#: half side of the sure-mask square at the mouth, as a fraction of the ear-to-ear width
MOUTH_SEED = 0.12


def initial_labels(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """GrabCut's initial label map (``cv2.GC_*``) for a crop of ``shape`` (H, W) from the six
    BlazeFace points ``(6, 2)`` in pixels (see the module docstring)."""
    h, w = shape
    eyes_y = float(landmarks[:2, 1].mean())
    nose_x, nose_y = (float(v) for v in landmarks[2])
    mouth_x, mouth_y = (float(v) for v in landmarks[3])
    left, right = sorted(float(v) for v in landmarks[4:, 0])
    top = int(np.clip(round(nose_y - 0.5 * (nose_y - eyes_y)), 1, h - 2))  # >= 1 background row
    x1, x2 = int(np.clip(round(left), 0, w - 2)), int(np.clip(round(right), 1, w))
    if x2 <= x1:
        x1, x2 = 0, w
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    labels[top:, x1:x2] = cv2.GC_PR_FGD
    half = max(1, round(MOUTH_SEED * (x2 - x1)))
    my = int(np.clip(round(mouth_y), top, h - 1))
    mx = int(np.clip(round(mouth_x), x1, x2 - 1))
    labels[max(top, my - half) : my + half + 1, max(x1, mx - half) : min(x2, mx + half + 1)] = (
        cv2.GC_FGD
    )
    return labels


def grabcut_mask(image: np.ndarray, labels: np.ndarray, iterations: int = 5) -> np.ndarray:
    """``cv2.grabCut`` from ``labels`` on an RGB uint8 image; the {0, 1} mask (the initial
    probably-mask region when GrabCut cannot model the colours, e.g. a flat image).
    Deterministic: OpenCV's RNG is seeded before each call."""
    work = labels.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # its colour models start from k-means on OpenCV's global RNG
    try:
        cv2.grabCut(image, work, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        work = labels
    return ((work == cv2.GC_FGD) | (work == cv2.GC_PR_FGD)).astype(np.uint8)


class GrabCut(SegmentationModel):
    """GrabCut from face landmarks; no learned parameters.

    Args:
        landmarks: find the landmarks with BlazeFace (else always :data:`MFSD_LANDMARKS`).
        iterations: GrabCut's rounds of colour-model fitting and graph cut.
        encoder_weights: must be None (nothing is pretrained).
    """

    trainable = False

    def __init__(
        self,
        config: ModelConfig,
        landmarks: bool = True,
        iterations: int = 5,
        encoder_weights: str | Path | None = None,
    ) -> None:
        super().__init__(config)
        refuse_encoder_weights(config.name, encoder_weights)
        self.use_landmarks = bool(landmarks)
        self.iterations = int(iterations)
        self._detector: Any = None

    def landmarks_of(self, image: np.ndarray) -> np.ndarray:
        """The six BlazeFace points of a face crop in pixels (the MFSD medians when none)."""
        if self.use_landmarks:
            if self._detector is None:
                from abanet.faces.blazeface import BlazeFaceDetector

                self._detector = BlazeFaceDetector(tiles=False)
            faces = [f for f in self._detector.detect_padded(image) if f.landmarks is not None]
            if faces:
                return np.asarray(faces[0].landmarks, np.float32)
        h, w = image.shape[:2]
        return MFSD_LANDMARKS * np.array([w, h], np.float32)

    def to_images(self, x: torch.Tensor) -> np.ndarray:
        """The normalised batch back to RGB uint8 ``(B, H, W, 3)``."""
        mean = torch.tensor(self.config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, dtype=torch.float32).view(1, 3, 1, 1)
        rgb = (x.detach().float().cpu() * std + mean).clamp(0, 1) * 255
        return rgb.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_main(x)]

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        masks = []
        for image in self.to_images(x):
            labels = initial_labels(image.shape[:2], self.landmarks_of(image))
            masks.append(grabcut_mask(image, labels, self.iterations))
        fg = torch.from_numpy(np.stack(masks)).to(x.device)[:, None].float()
        return (2 * fg - 1) * LOGIT


@register_model(family="classical", encoder="-")
def grabcut(config: ModelConfig, **kwargs: Any) -> GrabCut:
    """GrabCut (OpenCV) from BlazeFace landmarks: Zhang et al.'s mask segmentation, untrained.

    Rectangle from the nose bridge to the chin between the ears, sure-mask seed at the mouth.
    """
    config.size_divisor = 1
    return GrabCut(config, **kwargs)
