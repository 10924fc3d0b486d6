"""Scoring face detections against hand-checked boxes (used by scripts/eval_face_detectors.py).

Matching rule (documented in docs/faces.md):

1. Labelled faces shorter than ``min_face_height`` pixels are too small to segment; they are
   moved to the ignore regions.
2. Detections are taken in descending score order. A detection *matches* a still-unmatched face
   when their IoU is at least ``iou_threshold`` (0.3), or when the detection's centre lies inside
   the face box. Among several candidates it takes the one with the highest IoU.
3. A detection that matches no unmatched face is ignored (neither hit nor false positive) when it
   would have matched an ignore region (IoU >= threshold or centre inside); otherwise it is a false
   positive. A second detection on an already-matched face is a false positive (a duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Box = Sequence[float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def center_inside(det: Box, region: Box) -> bool:
    """True when the centre of ``det`` lies inside ``region`` (borders included)."""
    cx, cy = (det[0] + det[2]) / 2.0, (det[1] + det[3]) / 2.0
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


@dataclass
class MatchResult:
    """Outcome of matching one image's detections."""

    n_faces: int  # faces that count (tall enough)
    hits: list[int] = field(default_factory=list)  # index (into counted faces) found
    false_positives: list[int] = field(default_factory=list)  # detection indices
    ignored: list[int] = field(default_factory=list)  # detection indices on ignore regions
    matched_detection: dict[int, int] = field(default_factory=dict)  # face index -> detection

    @property
    def tp(self) -> int:
        return len(self.hits)

    @property
    def fp(self) -> int:
        return len(self.false_positives)

    @property
    def fn(self) -> int:
        return self.n_faces - len(self.hits)


def _matches(det: Box, target: Box, iou_threshold: float) -> float | None:
    iou = box_iou(det, target)
    if iou >= iou_threshold or center_inside(det, target):
        return iou
    return None


def split_faces(
    faces: Sequence[Box], ignore: Sequence[Box], min_face_height: float
) -> tuple[list[Box], list[Box]]:
    """(faces that count, ignore regions incl. faces shorter than ``min_face_height``)."""
    counted = [f for f in faces if f[3] - f[1] >= min_face_height]
    small = [f for f in faces if f[3] - f[1] < min_face_height]
    return counted, [*ignore, *small]


def match_detections(
    faces: Sequence[Box],
    detections: Sequence[Box],
    scores: Sequence[float] | None = None,
    ignore: Sequence[Box] = (),
    iou_threshold: float = 0.3,
    min_face_height: float = 16.0,
) -> MatchResult:
    """Match one image's detections to its labelled faces (rule in the module docstring).

    ``hits`` and ``matched_detection`` index the faces that count, in their original order
    after dropping those shorter than ``min_face_height``.
    """
    counted, regions = split_faces(faces, ignore, min_face_height)
    if scores is None:
        scores = [0.0] * len(detections)
    if len(scores) != len(detections):
        raise ValueError(f"{len(detections)} detections but {len(scores)} scores")
    order = sorted(range(len(detections)), key=lambda i: -float(scores[i]))
    result = MatchResult(n_faces=len(counted))
    for d in order:
        det = detections[d]
        best, best_iou = -1, -1.0
        for f, face in enumerate(counted):
            if f in result.matched_detection:
                continue
            iou = _matches(det, face, iou_threshold)
            if iou is not None and iou > best_iou:
                best, best_iou = f, iou
        if best >= 0:
            result.matched_detection[best] = d
            result.hits.append(best)
        elif any(_matches(det, r, iou_threshold) is not None for r in regions):
            result.ignored.append(d)
        else:
            result.false_positives.append(d)
    result.hits.sort()
    return result
