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
no detector is given, or when a face is found (first in the image padded with grey, then in the
image) whose crop, clipped to the image, covers at least ``WHOLE_IMAGE_COVER`` (60 %) of the
image area, i.e. the photo is already a face crop (other, smaller detections in it are then
spurious); or when a face box, unclipped, is at least ``FACE_BOX_COVER`` (50 %) of the image area
(on tight crops detectors return boxes as large as the image, often partly off-frame). Neither
counts when the photo holds a face under ``SMALLER_FACE`` x that box's side scoring
``SMALLER_FACE_MARGIN`` higher (a false face-sized box over a scene of small faces). When no
face is found at all, nothing is segmented and the mask is empty (``PhotoPlan.no_face``).

Per face, the mask score (:func:`mask_score`, read around the mouth) decides whether it wears a
mask; a bare face's map is emptied. A mask reaching its crop's edge is segmented again in a
larger crop (:func:`extension_boxes`); :class:`CropBatcher` segments those second crops of many
photos together with the first crops of the next ones. docs/faces.md has the measurements.

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

from abanet.errors import AbanetError, DataError
from abanet.faces.types import Face, FaceDetector, as_rgb_image

SegmentCrops = Callable[[list[np.ndarray]], Sequence[np.ndarray]]

#: a single face whose clipped crop covers this fraction of the image -> segment the whole image
WHOLE_IMAGE_COVER = 0.6
#: a face box (unclipped) at least this fraction of the image area -> the image is a face crop
FACE_BOX_COVER = 0.5
#: ... unless the photo holds a face under this fraction of its side that scores at least
#: ``SMALLER_FACE_MARGIN`` higher (a false face-sized box over a scene; one MFSD crop holds two
#: false small faces 0.02-0.04 above its own face)
SMALLER_FACE = 0.5
SMALLER_FACE_MARGIN = 0.1
#: a face's mask score is the mean probability in a square around its mouth, of this side
#: (a fraction of the crop's side); without a face, of the top ``MASK_SCORE_TOP`` of the map
MOUTH_WINDOW = 0.25
#: where the mouth sits in a crop when the detector gives no landmarks (MFSD framing)
DEFAULT_MOUTH = (0.5, 0.78)
MASK_SCORE_TOP = 0.05
#: a face whose mask score is below this has no mask: its map is emptied
MIN_MASK_SCORE = 0.5
#: a face whose mouth is bare still wears a mask when the window between its mouth and chin
#: scores at least this (a mask pulled down on the chin; docs/faces.md) and the detector is at
#: least ``MIN_CHIN_DETECTOR_SCORE`` sure of the face (a low-score false box on a railing scored
#: high at its "chin")
MIN_CHIN_SCORE = 0.85
MIN_CHIN_DETECTOR_SCORE = 0.6
#: a crop is re-segmented larger when its mask covers this share of a border row inside the photo
EDGE_TOUCH = 0.05
#: side of the extended crop (``EXTEND_SCALE`` x the crop's), same top edge, centred horizontally
EXTEND_SCALE = 1.5


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
    "blazeface": CropRule(dx=0.0, dy=0.07, scale=1.07),
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
    mask_score: float = 0.0  # mean probability around the mouth (see mask_score())
    extended: bool = False  # re-segmented in a larger crop because the mask reached its edge

    @property
    def masked(self) -> bool:
        """Whether this face wears a mask (``mask_score >= MIN_MASK_SCORE``)."""
        return self.mask_score >= MIN_MASK_SCORE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "masked": self.masked,
            "mask_score": round(float(self.mask_score), 4),
            "crop_box": [int(v) for v in self.crop_box],
            "mask_area": int(self.mask_area),
            "polygons": self.polygons,
        }
        if self.extended:
            out["extended"] = True
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
    no_face: bool = False  # the detector found no face: nothing was segmented, the mask is empty
    mask_score: float = 0.0  # the highest mask score of a face (of the whole image when whole)

    @property
    def mask_area(self) -> int:
        return int(self.mask.sum())

    @property
    def masked_faces(self) -> int:
        """Faces that wear a mask (:attr:`FaceResult.masked`)."""
        return sum(f.masked for f in self.faces)

    def polygons(self, epsilon: float = 1.0) -> list[list[list[int]]]:
        """Outer polygons of the whole (union) mask."""
        return mask_polygons(self.mask, epsilon)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: size, threshold, flags, mask score and area, polygons, faces."""
        h, w = self.mask.shape
        return {
            "width": int(w),
            "height": int(h),
            "threshold": float(self.threshold),
            "whole_image": bool(self.whole_image),
            "no_face": bool(self.no_face),
            "masked": bool(self.mask_score >= MIN_MASK_SCORE),
            "mask_score": round(float(self.mask_score), 4),
            "masked_faces": self.masked_faces,
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
    faces: Sequence[Face],
    width: int,
    height: int,
    detector: FaceDetector | None = None,
    others: Sequence[Face] = (),
) -> bool:
    """The whole-image rule: some face's clipped crop covers >= ``WHOLE_IMAGE_COVER`` of the image.

    Other detections in such an image are spurious (no second face fits beside one that fills
    most of the frame; detectors fire on mask patterns and chins of face crops), unless one of
    ``others`` (the photo's own detections) is under ``SMALLER_FACE`` x its side and scores at
    least ``SMALLER_FACE_MARGIN`` higher: then the big box is a false face over a scene (a hand
    and a coat, docs/faces.md).
    """
    area = width * height
    for face in faces:
        side = max(face.width, face.height)
        if any(
            o.score >= face.score + SMALLER_FACE_MARGIN
            and max(o.width, o.height) < SMALLER_FACE * side
            for o in others
        ):
            continue
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


def mouth_point(face: Face, box: Sequence[int]) -> tuple[float, float]:
    """The face's mouth in crop ``box`` pixels: a landmark when the detector gives one
    (BlazeFace: point 3; MTCNN: the mean of the mouth corners), else :data:`DEFAULT_MOUTH`."""
    pts = face.landmarks
    side = box[2] - box[0]
    if pts is not None and len(pts) == 6:
        x, y = float(pts[3][0]), float(pts[3][1])
    elif pts is not None and len(pts) == 5:
        x, y = float(pts[3:5, 0].mean()), float(pts[3:5, 1].mean())
    else:
        return (DEFAULT_MOUTH[0] * side, DEFAULT_MOUTH[1] * (box[3] - box[1]))
    return (x - box[0], y - box[1])


def mask_score(
    prob: np.ndarray, mouth: tuple[float, float] | None = None, top: float = MASK_SCORE_TOP
) -> float:
    """How sure the model is that a face wears a mask: the mean probability around its mouth.

    A mask covers the mouth; a bare face's lips, a dark collar below a chin or a shoulder under a
    false face box do not reach it (docs/faces.md). ``mouth`` ``(x, y)`` in ``prob`` pixels; the
    window is a square of :data:`MOUTH_WINDOW` x the map's longer side, clipped to the map.
    Without ``mouth`` (an image segmented whole: a face crop): the mean of the top ``top`` share
    of the probabilities (a mask fills 15-50 % of a face crop).
    """
    prob = np.asarray(prob, np.float32)
    if mouth is not None and prob.size:
        h, w = prob.shape[:2]
        half = max(1.0, MOUTH_WINDOW * max(h, w) / 2)
        x1, x2 = int(max(0, round(mouth[0] - half))), int(min(w, round(mouth[0] + half)))
        y1, y2 = int(max(0, round(mouth[1] - half))), int(min(h, round(mouth[1] + half)))
        if x2 > x1 and y2 > y1:
            return float(prob[y1:y2, x1:x2].mean())
        return 0.0
    flat = prob.ravel()
    if not flat.size:
        return 0.0
    k = max(1, round(top * flat.size))
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def face_mask_score(prob: np.ndarray, face: Face, box: Sequence[int]) -> float:
    """The mask score of a detected face from its crop's map ``prob`` (crop ``box`` pixels).

    The mean probability around the mouth (:func:`mask_score`); when that says "no mask", the
    window between the mouth and the face box's bottom (the chin, inside the face box, so a
    collar below it does not count) speaks for a mask pulled down on the chin if it scores at
    least :data:`MIN_CHIN_SCORE` and the face's detector score is at least
    :data:`MIN_CHIN_DETECTOR_SCORE`.
    """
    mouth = mouth_point(face, box)
    score = mask_score(prob, mouth)
    if score >= MIN_MASK_SCORE or face.score < MIN_CHIN_DETECTOR_SCORE:
        return score
    prob = np.asarray(prob, np.float32)
    h, w = prob.shape[:2]
    half = max(1.0, MOUTH_WINDOW * max(h, w) / 2)
    bottom = float(face.box[3]) - box[1]
    cy = max(mouth[1], min((mouth[1] + bottom) / 2, bottom - half))
    chin = mask_score(prob, (mouth[0], cy))
    return chin if chin >= MIN_CHIN_SCORE else score


@dataclass
class PhotoPlan:
    """A photo ready for the segmenter: its faces and the crops to segment (step 1 of 2).

    ``boxes`` is ``None`` when the image is segmented whole (one crop: the image), and so is it
    when no face was found (``no_face``; then there is no crop and the mask will be empty).
    """

    image: np.ndarray
    faces: list[Face]
    boxes: list[tuple[int, int, int, int]] | None  # square crop boxes; None: the whole image
    crops: list[np.ndarray]
    no_face: bool = False

    @property
    def whole_image(self) -> bool:
        return self.boxes is None and not self.no_face


def plan_photo(
    image_rgb: np.ndarray, detector: FaceDetector | str | None, whole_image: bool = False
) -> PhotoPlan:
    """Detect faces and cut the crops to segment (crop and whole-image rules: module doc).

    The image is looked at padded with grey (:meth:`FaceDetector.detect_padded`) and as it is:
    when the padded view's best face fills the image (the whole-image rule) and the photo shows
    no smaller face scoring higher, the image is a face crop, segmented whole. Otherwise the
    photo's own faces are segmented (faces found only in the padded view are used when it finds
    none); when neither finds a face, the plan has no crop and the photo's mask will be empty
    (``no_face``).
    """
    image = as_rgb_image(image_rgb)
    if isinstance(detector, str):
        from abanet.faces.detectors import create_detector

        detector = create_detector(detector)
    h, w = image.shape[:2]
    if whole_image or detector is None:
        return PhotoPlan(image, [], None, [image])
    # in a tight crop, views of parts of the face (tiles) find false faces: the padded view
    # decides, the photo's own faces can only veto it
    context = [f for f in detector.detect_padded(image) if _crop_inside(f, detector, w, h)]
    found = [f for f in detector.detect(image) if _crop_inside(f, detector, w, h)]
    if context and is_face_crop(context[:1], w, h, detector, others=found):
        return PhotoPlan(image, context[:1], None, [image])
    faces = found or context
    if not faces:
        return PhotoPlan(image, [], None, [], no_face=True)
    if is_face_crop(faces, w, h, detector, others=faces):
        return PhotoPlan(image, faces, None, [image])
    boxes = [crop_rule_for(f, detector).crop_box(f.box) for f in faces]
    return PhotoPlan(image, faces, boxes, [extract_crop(image, b) for b in boxes])


def extension_boxes(
    plan: PhotoPlan, probs: Sequence[np.ndarray], threshold: float = 0.5
) -> dict[int, tuple[int, int, int, int]]:
    """Larger crops for faces whose mask reaches the bottom, left or right edge of their crop.

    A mask cut flat by the crop's edge (an N95 reaching below the chin, a face turned aside) is
    segmented again in a square ``EXTEND_SCALE`` x larger with the same top edge, centred on the
    crop; :func:`finish_photo` takes the new map only outside the first crop. Edges on the
    photo's border do not count (nothing lies beyond them). Returns ``{face index: box}``.
    """
    if plan.boxes is None:
        return {}
    h, w = plan.image.shape[:2]
    out = {}
    for i, (box, p) in enumerate(zip(plan.boxes, probs, strict=True)):
        x1, y1, x2, y2 = box
        side = x2 - x1
        own = np.asarray(p) >= threshold
        if face_mask_score(p, plan.faces[i], box) < MIN_MASK_SCORE:
            continue
        edges = (
            (y2 < h, own[-1, :]),  # bottom
            (x1 > 0, own[:, 0]),  # left
            (x2 < w, own[:, -1]),  # right
        )
        if any(inside and row.mean() >= EDGE_TOUCH for inside, row in edges):
            big = max(side + 1, round(EXTEND_SCALE * side))
            left = (x1 + x2) // 2 - big // 2
            out[i] = (left, y1, left + big, y1 + big)
    return out


def _paste(
    dst: np.ndarray,
    prob: np.ndarray,
    box: Sequence[int],
    clipped: Sequence[int],
    origin: tuple[int, int],
) -> None:
    """Write the part of crop map ``prob`` (crop ``box``) inside ``clipped`` into ``dst``, whose
    top-left pixel is image pixel ``origin``."""
    x1, y1, x2, y2 = clipped
    dst[y1 - origin[1] : y2 - origin[1], x1 - origin[0] : x2 - origin[0]] = prob[
        y1 - box[1] : y2 - box[1], x1 - box[0] : x2 - box[0]
    ]


def finish_photo(
    plan: PhotoPlan,
    probs: Sequence[np.ndarray],
    threshold: float = 0.5,
    polygon_epsilon: float = 1.0,
    extensions: dict[int, tuple[tuple[int, int, int, int], np.ndarray]] | None = None,
) -> PhotoResult:
    """Paste the crops' probability maps back into a full-resolution result (step 2 of 2).

    Faces whose mask score is below ``MIN_MASK_SCORE`` (bare faces, false detections) get an
    empty map. ``extensions`` maps a face index to ``(box, prob)``: a larger crop (see
    :func:`extension_boxes`) whose map fills in what lies outside the face's first crop.
    """
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold {threshold} is outside [0, 1]")
    probs = _check_probs(probs, plan.crops)
    h, w = plan.image.shape[:2]
    if plan.no_face:
        zeros = np.zeros((h, w), np.float32)
        return PhotoResult(zeros, zeros.astype(np.uint8), [], float(threshold), False, True)
    if plan.boxes is None:
        prob = probs[0]
        # a face crop: the model saw the whole face, but the padded look's box (and mouth) can be
        # far off in a tight crop, so the score is the map's top 5 % here
        score = mask_score(prob)
        if score < MIN_MASK_SCORE:
            prob = np.zeros_like(prob)
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
                score,
            )
            for f in plan.faces
        ]
        return PhotoResult(
            np.ascontiguousarray(prob), mask, results, float(threshold), True, mask_score=score
        )

    extensions = extensions or {}
    full = np.zeros((h, w), np.float32)
    results = []
    for i, (face, box, p) in enumerate(zip(plan.faces, plan.boxes, probs, strict=True)):
        score = face_mask_score(p, face, box)
        crop = clip_box(box, w, h)
        ext = extensions.get(i) if score >= MIN_MASK_SCORE else None
        # this face's map over its clipped crop, or over crop + larger crop when extended
        rx1, ry1, rx2, ry2 = crop
        if ext is not None:
            ex1, ey1, ex2, ey2 = clip_box(ext[0], w, h)
            rx1, ry1, rx2, ry2 = min(rx1, ex1), min(ry1, ey1), max(rx2, ex2), max(ry2, ey2)
        own_map = np.zeros((ry2 - ry1, rx2 - rx1), np.float32)
        if score >= MIN_MASK_SCORE:
            if ext is not None:  # the larger crop first; inside the first crop its map stands
                _paste(own_map, ext[1], ext[0], (ex1, ey1, ex2, ey2), (rx1, ry1))
            _paste(own_map, p, box, crop, (rx1, ry1))
        region = full[ry1:ry2, rx1:rx2]
        np.maximum(region, own_map, out=region)
        own = (own_map >= threshold).astype(np.uint8)
        results.append(
            FaceResult(
                face.box,
                face.score,
                box,
                int(own.sum()),
                mask_polygons(own, polygon_epsilon, (rx1, ry1)),
                face.landmarks,
                face.source,
                score,
                ext is not None,
            )
        )
    best = max((r.mask_score for r in results), default=0.0)
    mask = (full >= threshold).astype(np.uint8)
    return PhotoResult(full, mask, results, float(threshold), False, mask_score=best)


def segment_photo(
    image_rgb: np.ndarray,
    detector: FaceDetector | str | None,
    segment_crops: SegmentCrops,
    threshold: float = 0.5,
    whole_image: bool = False,
    polygon_epsilon: float = 1.0,
) -> PhotoResult:
    """Segment the face-mask region of a photo (crop, whole-image and no-face rules: module doc).

    ``detector`` is a :class:`FaceDetector`, a registry name, or ``None`` (segment whole).
    ``segment_crops`` takes a list of RGB uint8 crops and returns one float probability map per
    crop, at the crop's size (the caller's model; sigmoid already applied). The same as
    :func:`plan_photo`, a :class:`CropBatcher` (first crops, then the larger crops of
    :func:`extension_boxes`) and :func:`finish_photo`.
    """
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold {threshold} is outside [0, 1]")
    plan = plan_photo(image_rgb, detector, whole_image)
    (done,) = CropBatcher(segment_crops, threshold).drain([(None, plan)])
    if done.error is not None:
        raise done.error
    return finish_photo(plan, done.probs, threshold, polygon_epsilon, done.extensions)


@dataclass
class BatchedPhoto:
    """A photo whose crops the :class:`CropBatcher` has segmented: ready for :func:`finish_photo`.

    ``error`` is set (and the maps are missing) when the segmenter failed on a batch holding one
    of its crops.
    """

    key: Any
    plan: PhotoPlan
    probs: list[np.ndarray] = field(default_factory=list)
    extensions: dict[int, tuple[tuple[int, int, int, int], np.ndarray]] = field(
        default_factory=dict
    )
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # to segment
    error: AbanetError | None = None
    first_done: bool = False

    @property
    def done(self) -> bool:
        return self.error is not None or (self.first_done and not self.boxes)


class CropBatcher:
    """Segments the crops of many photos in shared ``segment_crops`` calls.

    A photo's first crops are segmented, then the larger crops of the masks that reached their
    crop's edge (:func:`extension_boxes`). Each :meth:`run` is one ``segment_crops`` call over
    every crop waiting: the second crops of earlier photos together with the first crops of later
    ones, so a second pass costs no call of its own. Photos come out in the order they went in.
    """

    def __init__(self, segment_crops: SegmentCrops, threshold: float = 0.5) -> None:
        self.segment_crops = segment_crops
        self.threshold = float(threshold)
        self._photos: list[BatchedPhoto] = []
        self.calls = 0  # segment_crops calls made

    def add(self, key: Any, plan: PhotoPlan) -> None:
        """Queue a photo's first crops; ``key`` comes back with its :class:`BatchedPhoto`."""
        self._photos.append(BatchedPhoto(key, plan))

    @property
    def pending(self) -> int:
        """Photos not yet returned by :meth:`run`."""
        return len(self._photos)

    @property
    def queued(self) -> int:
        """Crops waiting for the next :meth:`run`."""
        return sum(
            len(p.boxes) if p.first_done else len(p.plan.crops) for p in self._photos if not p.done
        )

    def run(self) -> list[BatchedPhoto]:
        """One ``segment_crops`` call over every waiting crop; returns the photos now complete
        (leading ones only, in input order)."""
        work = [p for p in self._photos if not p.done]
        crops: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        for p in work:
            if p.first_done:
                crops += [extract_crop(p.plan.image, b) for b in p.boxes.values()]
            else:
                crops += p.plan.crops
        if crops:
            self.calls += 1
            try:
                maps = _check_probs(self.segment_crops(crops), crops)
            except AbanetError as exc:
                for p in work:
                    p.error = exc
        k = 0
        for p in work:
            if p.error is not None:
                continue
            if p.first_done:
                n = len(p.boxes)
                p.extensions = dict(
                    zip(p.boxes, zip(p.boxes.values(), maps[k : k + n], strict=True), strict=True)
                )
                p.boxes = {}
            else:
                n = len(p.plan.crops)
                p.probs, p.first_done = maps[k : k + n], True
                p.boxes = extension_boxes(p.plan, p.probs, self.threshold)
            k += n
        out = []
        while self._photos and self._photos[0].done:
            out.append(self._photos.pop(0))
        return out

    def drain(self, photos: Sequence[tuple[Any, PhotoPlan]] = ()) -> list[BatchedPhoto]:
        """Add ``photos`` ``(key, plan)``, run until nothing waits; every photo, in order."""
        for key, plan in photos:
            self.add(key, plan)
        out: list[BatchedPhoto] = []
        while self.pending:
            out += self.run()
        return out
