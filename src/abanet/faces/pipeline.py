"""Full-photo pipeline: detect faces, crop each in the training framing, segment, paste back.

Crop rule (measured, see docs/faces.md). The MFSD face crops the models are trained on are tight:
eyebrows/forehead to chin, cheek to cheek, square. Running each detector on the 136 mfsd-dev crops
(padded with grey so the whole crop is visible) gives where that detector's box sits relative to
the crop; the medians define a :class:`CropRule` per detector. For a box ``(x1, y1, x2, y2)``
with ``w = x2 - x1``, ``h = y2 - y1``, centre ``(cx, cy)``:

    side = scale * max(w, h)
    crop centre = (cx + dx * w, cy + dy * h)
    crop = [round(centre_x - side / 2), round(centre_y - side / 2)] + [side, side]

============ ====== ====== ====== ==========================================================
detector     dx     dy     scale  note
============ ====== ====== ====== ==========================================================
ssd          0.00   +0.08  1.00   measured 0.84 / 0.00 (MFSD framing) loosened so masks
                                    reaching below the chin are not cut (docs/faces.md)
mtcnn        0.00   -0.03  0.91   105 of 136 crops found; its boxes are taller than the crop
(others)     0.00    0.00  1.10   not calibrated: a slightly loose square
============ ====== ====== ====== ==========================================================

Parts of a crop outside the image are filled by replicating the border pixels (the crop stays
square, so the segmenter sees the face undistorted); only the part inside the image is pasted
back.

Whole-image rule: the image is segmented as one piece (no crop) when ``whole_image=True``, when
no detector is given, when no face is found, or when a face is found whose crop, clipped to the
image, covers at least ``WHOLE_IMAGE_COVER`` (60 %) of the image area, i.e. the photo is already
a face crop (other, smaller detections in it are then spurious); or when a face box, unclipped,
is at least ``FACE_BOX_COVER`` (50 %) of the image area (on tight crops detectors return boxes as
large as the image, often partly off-frame).

Paste-back: each crop's probability map is written into a full-resolution map with ``max``, so
overlapping faces form a union. ``mask = prob >= threshold``. Per face, ``mask_area`` and
``polygons`` come from that face's own map inside its (clipped) crop box; polygons are the outer
contours of the thresholded map (``cv2.findContours`` + ``cv2.approxPolyDP`` with
``polygon_epsilon`` pixels), in full-image ``(x, y)`` coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abanet.errors import DataError
from abanet.faces.types import Face, FaceDetector, as_rgb_image

SegmentCrops = Callable[[list[np.ndarray]], Sequence[np.ndarray]]

#: a single face whose clipped crop covers this fraction of the image -> segment the whole image
WHOLE_IMAGE_COVER = 0.6
#: a face box (unclipped) at least this fraction of the image area -> the image is a face crop
FACE_BOX_COVER = 0.5


@dataclass(frozen=True)
class CropRule:
    """Square crop around a face box: centre ``(cx + dx*w, cy + dy*h)``, side ``scale*max(w,h)``."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def crop_box(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """Integer square ``(x1, y1, x2, y2)`` (x2/y2 exclusive); may extend past the image."""
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise DataError(f"face box {tuple(box)}: needs x2 > x1 and y2 > y1 (finite)")
        side = max(1, round(self.scale * max(w, h)))
        cx = (x1 + x2) / 2.0 + self.dx * w
        cy = (y1 + y2) / 2.0 + self.dy * h
        left = math.floor(cx - side / 2.0 + 0.5)
        top = math.floor(cy - side / 2.0 + 0.5)
        return (left, top, left + side, top + side)


#: measured crop rules per detector (see the module docstring); ``DEFAULT_CROP_RULE`` otherwise
CROP_RULES: dict[str, CropRule] = {
    "ssd": CropRule(dx=0.0, dy=0.08, scale=1.0),
    "mtcnn": CropRule(dx=0.0, dy=-0.02, scale=0.93),
}
DEFAULT_CROP_RULE = CropRule()


def crop_rule_for(face: Face, detector: FaceDetector | None = None) -> CropRule:
    """The crop rule for a face: by its ``source``, else by the detector's name, else default."""
    for name in (face.source, getattr(detector, "name", None)):
        if name in CROP_RULES:
            return CROP_RULES[name]
    return DEFAULT_CROP_RULE


def clip_box(box: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """Intersection of an integer box with the image ``[0, width) x [0, height)``."""
    x1, y1, x2, y2 = box
    return (max(0, x1), max(0, y1), min(width, x2), min(height, y2))


def extract_crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """The pixels of integer ``box`` (may reach outside), border pixels replicated outside."""
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"crop box {tuple(box)} is empty")
    cx1, cy1, cx2, cy2 = clip_box((x1, y1, x2, y2), w, h)
    if cx2 <= cx1 or cy2 <= cy1:
        raise DataError(f"crop box {tuple(box)} lies outside the {w}x{h} image")
    inside = image[cy1:cy2, cx1:cx2]
    pads = (cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2)
    if not any(pads):
        return np.ascontiguousarray(inside)
    return cv2.copyMakeBorder(inside, *pads, borderType=cv2.BORDER_REPLICATE)


def mask_polygons(
    mask: np.ndarray, epsilon: float = 1.0, offset: tuple[int, int] = (0, 0)
) -> list[list[list[int]]]:
    """Outer contours of a 0/1 mask as polygons ``[[x, y], ...]`` (at least 3 points each).

    ``cv2.findContours`` (external contours) simplified by ``cv2.approxPolyDP`` with ``epsilon``
    pixels, shifted by ``offset`` ``(x, y)``; largest polygon first.
    """
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    if not m.any():
        return []
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)
    out = []
    for c in contours:
        poly = (
            cv2.approxPolyDP(c, epsilon, True).reshape(-1, 2) if epsilon > 0 else c.reshape(-1, 2)
        )
        if len(poly) < 3:
            poly = c.reshape(-1, 2)  # tiny blobs: keep the raw contour
        if len(poly) >= 3:
            out.append([[int(x) + offset[0], int(y) + offset[1]] for x, y in poly])
    return out


@dataclass
class FaceResult:
    """One face of a photo: detection, crop and its segmentation."""

    box: tuple[float, float, float, float]
    score: float
    crop_box: tuple[int, int, int, int]  # square crop (may extend past the image)
    mask_area: int  # pixels >= threshold inside the clipped crop box
    polygons: list[list[list[int]]] = field(default_factory=list)
    landmarks: np.ndarray | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "crop_box": [int(v) for v in self.crop_box],
            "mask_area": int(self.mask_area),
            "polygons": self.polygons,
        }
        if self.source:
            out["detector"] = self.source
        if self.landmarks is not None:
            out["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        return out


@dataclass
class PhotoResult:
    """Segmentation of one photo: full-resolution ``prob`` (float32) and ``mask`` (uint8 0/1)."""

    prob: np.ndarray
    mask: np.ndarray
    faces: list[FaceResult]
    threshold: float
    whole_image: bool  # True when the image was segmented as one piece

    @property
    def mask_area(self) -> int:
        return int(self.mask.sum())

    def polygons(self, epsilon: float = 1.0) -> list[list[list[int]]]:
        """Outer polygons of the whole (union) mask."""
        return mask_polygons(self.mask, epsilon)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: size, threshold, whole-image flag, mask area, polygons, faces."""
        h, w = self.mask.shape
        return {
            "width": int(w),
            "height": int(h),
            "threshold": float(self.threshold),
            "whole_image": bool(self.whole_image),
            "mask_area": self.mask_area,
            "polygons": self.polygons(),
            "faces": [f.to_json() for f in self.faces],
        }


def _check_probs(probs: Sequence[np.ndarray], crops: list[np.ndarray]) -> list[np.ndarray]:
    probs = list(probs)
    if len(probs) != len(crops):
        raise DataError(f"segment_crops returned {len(probs)} maps for {len(crops)} crops")
    out = []
    for i, (p, c) in enumerate(zip(probs, crops, strict=True)):
        p = np.asarray(p, dtype=np.float32)
        if p.ndim == 3 and p.shape[-1] == 1:
            p = p[..., 0]
        if p.shape != c.shape[:2]:
            raise DataError(
                f"segment_crops map {i} has shape {p.shape}, expected the crop's {c.shape[:2]}"
            )
        if p.size and not np.isfinite(p).all():
            raise DataError(f"segment_crops map {i} is not a probability map: it has NaN/inf")
        if p.size and (p.min() < 0.0 or p.max() > 1.0):
            raise DataError(
                f"segment_crops map {i} is not a probability map in [0, 1] "
                f"(min {p.min():.3g}, max {p.max():.3g}): apply a sigmoid to logits"
            )
        out.append(p)
    return out


def is_face_crop(
    faces: Sequence[Face], width: int, height: int, detector: FaceDetector | None = None
) -> bool:
    """The whole-image rule: some face's clipped crop covers >= ``WHOLE_IMAGE_COVER`` of the image.

    Other detections in such an image are spurious (no second face fits beside one that fills
    most of the frame; detectors fire on mask patterns and chins of face crops).
    """
    area = width * height
    for face in faces:
        x1, y1, x2, y2 = clip_box(crop_rule_for(face, detector).crop_box(face.box), width, height)
        if max(0, x2 - x1) * max(0, y2 - y1) >= WHOLE_IMAGE_COVER * area:
            return True
        # on a tight crop, detectors return a face box as large as the image, often partly
        # off-frame (the crop cuts the forehead and chin they were trained to see)
        if face.width * face.height >= FACE_BOX_COVER * area:
            return True
    return False


def _crop_inside(face: Face, detector: FaceDetector | None, width: int, height: int) -> bool:
    try:
        x1, y1, x2, y2 = clip_box(crop_rule_for(face, detector).crop_box(face.box), width, height)
    except DataError:
        return False
    return x2 > x1 and y2 > y1


@dataclass
class PhotoPlan:
    """A photo ready for the segmenter: its faces and the crops to segment (step 1 of 2)."""

    image: np.ndarray
    faces: list[Face]
    boxes: list[tuple[int, int, int, int]] | None  # square crop boxes; None: the whole image
    crops: list[np.ndarray]

    @property
    def whole_image(self) -> bool:
        return self.boxes is None


def plan_photo(
    image_rgb: np.ndarray, detector: FaceDetector | str | None, whole_image: bool = False
) -> PhotoPlan:
    """Detect faces and cut the crops to segment (crop and whole-image rules: module doc)."""
    image = as_rgb_image(image_rgb)
    if isinstance(detector, str):
        from abanet.faces.detectors import create_detector

        detector = create_detector(detector)
    h, w = image.shape[:2]
    faces = [] if whole_image or detector is None else detector.detect(image)
    faces = [f for f in faces if _crop_inside(f, detector, w, h)]  # drop empty/outside boxes
    if whole_image or detector is None or not faces or is_face_crop(faces, w, h, detector):
        return PhotoPlan(image, faces, None, [image])
    boxes = [crop_rule_for(f, detector).crop_box(f.box) for f in faces]
    return PhotoPlan(image, faces, boxes, [extract_crop(image, b) for b in boxes])


def finish_photo(
    plan: PhotoPlan,
    probs: Sequence[np.ndarray],
    threshold: float = 0.5,
    polygon_epsilon: float = 1.0,
) -> PhotoResult:
    """Paste the crops' probability maps back into a full-resolution result (step 2 of 2)."""
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold {threshold} is outside [0, 1]")
    probs = _check_probs(probs, plan.crops)
    h, w = plan.image.shape[:2]
    if plan.boxes is None:
        prob = probs[0]
        mask = (prob >= threshold).astype(np.uint8)
        results = [
            FaceResult(
                f.box,
                f.score,
                (0, 0, w, h),
                int(mask.sum()),
                mask_polygons(mask, polygon_epsilon),
                f.landmarks,
                f.source,
            )
            for f in plan.faces
        ]
        return PhotoResult(np.ascontiguousarray(prob), mask, results, float(threshold), True)

    full = np.zeros((h, w), np.float32)
    results = []
    for face, box, p in zip(plan.faces, plan.boxes, probs, strict=True):
        cx1, cy1, cx2, cy2 = clip_box(box, w, h)
        part = p[cy1 - box[1] : cy2 - box[1], cx1 - box[0] : cx2 - box[0]]
        np.maximum(full[cy1:cy2, cx1:cx2], part, out=full[cy1:cy2, cx1:cx2])
        own = (part >= threshold).astype(np.uint8)
        results.append(
            FaceResult(
                face.box,
                face.score,
                box,
                int(own.sum()),
                mask_polygons(own, polygon_epsilon, (cx1, cy1)),
                face.landmarks,
                face.source,
            )
        )
    return PhotoResult(full, (full >= threshold).astype(np.uint8), results, float(threshold), False)


def segment_photo(
    image_rgb: np.ndarray,
    detector: FaceDetector | str | None,
    segment_crops: SegmentCrops,
    threshold: float = 0.5,
    whole_image: bool = False,
    polygon_epsilon: float = 1.0,
) -> PhotoResult:
    """Segment the face-mask region of a photo (crop rule and whole-image rule: module doc).

    ``detector`` is a :class:`FaceDetector`, a registry name, or ``None`` (segment whole).
    ``segment_crops`` takes a list of RGB uint8 crops and returns one float probability map per
    crop, at the crop's size (the caller's model; sigmoid already applied). The same as
    :func:`plan_photo`, ``segment_crops(plan.crops)``, :func:`finish_photo`.
    """
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold {threshold} is outside [0, 1]")
    plan = plan_photo(image_rgb, detector, whole_image)
    return finish_photo(plan, segment_crops(plan.crops), threshold, polygon_epsilon)
