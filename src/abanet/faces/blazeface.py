"""MediaPipe BlazeFace (short range) on LiteRT, with tiling for small faces.

The model (``assets/mediapipe/face_detection_short_range.tflite``, vendored, see the README
there) takes a 128x128 RGB image in [-1, 1] and scores 896 anchors (a 16x16 grid at stride 8
with 2 anchors, an 8x8 grid at stride 16 with 6); each anchor regresses a box and 6 keypoints
(eyes, nose tip, mouth, ear tragions) in input pixels relative to its centre. Decoding follows
MediaPipe's ``TensorsToDetectionsCalculator`` (fixed anchor size, scale 128, sigmoid score with
the raw score clipped to +-80) and its weighted non-maximum suppression.

A 128-pixel view of a whole photo loses small faces, so the detector looks at the photo as a
whole and at ``tiles`` more views: the four corner squares of ``tile_size`` x the photo's sides,
each at 128x128 again (1.7x zoom at the default 0.6), then a 3x3 grid at 0.4. Tiles that are a
fraction of the photo still shrink a big photo's small faces (a 40-pixel face in a 1,200-pixel
photo is 10 pixels in a 0.4 tile), so big photos are also tiled in squares of fixed pixel sides,
down to ``min_view`` pixels. A detection that touches a tile's inner edge is a cut face and is
dropped (the face is whole in another view); the views' detections are merged by weighted NMS.
Measured in docs/faces.md.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from abanet.faces.types import Face, FaceDetector

MODEL_FILE = (
    Path(__file__).resolve().parent.parent
    / "assets"
    / "mediapipe"
    / "face_detection_short_range.tflite"
)
INPUT_SIZE = 128
#: 2x2 tiles at 0.6 and 3x3 at 0.4 of each side (measured in docs/faces.md)
DEFAULT_TILINGS: tuple[tuple[int, float], ...] = ((2, 0.6), (3, 0.4))
#: fixed-size square tiles down to 48 px on big photos, at most 256 views (scene benchmark,
#: docs/faces.md)
DEFAULT_MIN_VIEW = 48
DEFAULT_MAX_VIEWS = 256
#: photos whose longer side is shorter get no squares (293 of 300 RMFD photos, face crops of
#: 250 px: their 3x3 tiles already show a 16 px face at 20 px, and 64 squares would halve
#: their speed)
DEFAULT_SQUARES_FROM = 300
#: squares under ``FINE_VIEW`` px are upsampled > 1.33x to the 128 px input: their blur makes
#: texture look like faces (a KN95's print, docs/faces.md), so their detections need this score
FINE_VIEW = 96
DEFAULT_UPSAMPLED_THRESHOLD = 0.6
RAW_SCORE_LIMIT = 80.0


def ssd_anchor_centres(
    input_size: int = INPUT_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16), per_layer: int = 2
) -> np.ndarray:
    """Anchor centres ``(N, 2)`` in [0, 1] of MediaPipe's SSD anchor generator (fixed size).

    Consecutive layers with the same stride share one grid: their anchors are interleaved per
    cell, ``per_layer`` anchors each (aspect ratio 1 plus the interpolated scale).
    """
    out = []
    i = 0
    while i < len(strides):
        stride, repeats = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            repeats += 1
            i += 1
        grid = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_layer * repeats, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def _iou_matrix(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of its cluster.

    ``boxes`` ``(N, 4)`` x1y1x2y2, ``scores`` ``(N,)``, ``points`` ``(N, K, 2)``; the cluster of
    the best remaining detection is every remaining one with IoU above ``iou_threshold``; its
    score is the best one's.
    """
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        cluster = alive & (_iou_matrix(boxes[i], boxes) > iou_threshold)
        cluster[i] = True
        w = scores[cluster][:, None]
        box = (boxes[cluster] * w).sum(0) / w.sum()
        pts = (points[cluster] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[i]), pts))
        alive &= ~cluster
    return out


def drop_parts_of_heads(
    detections: list[tuple[np.ndarray, float, np.ndarray]],
    area_ratio: float = 0.25,
    grow: float = 0.25,
    margin: float = 0.1,
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Drop small detections that sit on a much larger face's head.

    A zoomed tile sees an ear, hair or a cheek of a big face as a small face of its own. A
    detection whose area is below ``area_ratio`` x a larger one's and whose centre lies inside
    that one's box grown by ``grow`` x its size on every side is such a part, unless it scores
    at least ``margin`` higher than the larger one (a real small face beside a low-score giant
    false box; a mask picture's two near-equal boxes stay one).
    """
    keep = []
    for i, (box, score, pts) in enumerate(detections):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        area = (box[2] - box[0]) * (box[3] - box[1])
        part = False
        for j, (big, big_score, _) in enumerate(detections):
            bw, bh = big[2] - big[0], big[3] - big[1]
            if j == i or area >= area_ratio * bw * bh or big_score + margin <= score:
                continue
            if big[0] - grow * bw <= cx <= big[2] + grow * bw and (
                big[1] - grow * bh <= cy <= big[3] + grow * bh
            ):
                part = True
                break
        if not part:
            keep.append((box, score, pts))
    return keep


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace short range on LiteRT (``ai-edge-litert``), whole photo + corner tiles.

    Args:
        threshold: minimum score (sigmoid probability).
        tiles: extra views as ``(grid, fraction)`` pairs: a ``grid`` x ``grid`` layout of tiles
            whose sides are ``fraction`` of the photo's (evenly spaced, corners included);
            ``True`` is :data:`DEFAULT_TILINGS`, ``False`` the whole photo only.
        min_view: big photos are also tiled in squares of fixed pixel sides, the first half the
            smallest fractional tile's, halving while the side stays >= ``min_view`` pixels (a
            128-pixel view of a 1,200-pixel photo shrinks a 40-pixel face to 4 pixels);
            neighbour squares overlap by a third of their side. ``None`` or 0: fractional tiles
            only.
        max_views: at most this many views per photo (the finest square level that would exceed
            it is left out).
        squares_from: only photos whose longer side has at least this many pixels get squares.
        upsampled_threshold: minimum score in squares under :data:`FINE_VIEW` px (never below
            ``threshold``).
        nms_iou: IoU above which detections are merged.
        context_threshold: minimum score in :meth:`detect_padded` (is this image a face crop?),
            lower than ``threshold``: on the 136 MFSD crops padded with grey it finds 134 faces
            at 0.3 and 129 at 0.5 (docs/faces.md).
        num_threads: LiteRT threads (1: the detector overlaps with the segmenter on another core).
        model_path: another ``.tflite`` file of the same model.
    """

    name = "blazeface"

    def __init__(
        self,
        threshold: float = 0.5,
        tiles: bool | Sequence[tuple[int, float]] = True,
        min_view: int | None = DEFAULT_MIN_VIEW,
        max_views: int = DEFAULT_MAX_VIEWS,
        squares_from: int = DEFAULT_SQUARES_FROM,
        upsampled_threshold: float = DEFAULT_UPSAMPLED_THRESHOLD,
        nms_iou: float = 0.3,
        context_threshold: float = 0.3,
        num_threads: int = 1,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        from abanet.faces.detectors import DetectorUnavailableError

        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError as e:  # pragma: no cover - a base dependency
            raise DetectorUnavailableError(
                "blazeface: ai-edge-litert is not installed (`pip install ai-edge-litert`)"
            ) from e
        path = Path(model_path) if model_path else MODEL_FILE
        if not path.is_file():
            raise DetectorUnavailableError(f"blazeface: model file {path} not found")
        self._model_path = str(path)
        self._num_threads = max(1, int(num_threads))
        self._local = threading.local()  # one interpreter per thread: detect() is thread-safe
        self._interpreter()  # fail early on a bad model file
        self._anchors = ssd_anchor_centres()
        self.threshold = float(threshold)
        if tiles is True:
            tiles = DEFAULT_TILINGS
        self.tilings: tuple[tuple[int, float], ...] = tuple(
            (int(g), float(f)) for g, f in (tiles or ())
        )
        self.min_view = int(min_view or 0)
        self.max_views = int(max_views)
        self.squares_from = int(squares_from)
        self.upsampled_threshold = float(upsampled_threshold)
        self.nms_iou = float(nms_iou)
        self.context_threshold = float(context_threshold)

    thread_safe = True

    def _interpreter(self) -> Any:
        """This thread's LiteRT interpreter (built on first use) and its tensor indices."""
        state = getattr(self._local, "state", None)
        if state is None:
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=self._model_path, num_threads=self._num_threads)
            it.allocate_tensors()
            outputs = {d["name"]: d["index"] for d in it.get_output_details()}
            state = (
                it,
                it.get_input_details()[0]["index"],
                outputs.get("regressors", 0),
                outputs.get("classificators", 1),
            )
            self._local.state = state
        return state

    # -- one 128x128 view -----------------------------------------------------------------
    def _run_view(
        self, view: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections of one square view scoring >= ``threshold``: boxes and points in view
        pixels, scores."""
        side = view.shape[0]
        interp = cv2.INTER_AREA if side > INPUT_SIZE else cv2.INTER_LINEAR
        small = cv2.resize(view, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
        x = (small.astype(np.float32) / 127.5 - 1.0)[None]
        it, input_index, boxes_index, scores_index = self._interpreter()
        it.set_tensor(input_index, x)
        it.invoke()
        raw = it.get_tensor(boxes_index)[0]
        logit = it.get_tensor(scores_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logit, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores >= threshold
        if not keep.any():
            empty = np.zeros((0, 4), np.float32)
            return empty, np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        pts = raw.reshape(-1, 8, 2) / INPUT_SIZE
        centre = pts[:, 0] + anchors
        half = pts[:, 1] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1) * side
        points = (pts[:, 2:] + anchors[:, None, :]) * side
        return boxes, scores, points

    def _views(
        self, image: np.ndarray, tiled: bool = True
    ) -> list[tuple[np.ndarray, int, int, tuple[bool, ...], bool]]:
        """Square views ``(pixels, x0, y0, inner_edges, fine)``: the letterboxed photo, tiles,
        then squares.

        ``inner_edges`` (left, top, right, bottom) says which view edges lie inside the photo;
        ``fine`` marks squares under :data:`FINE_VIEW` px (``upsampled_threshold``).
        """
        h, w = image.shape[:2]
        side = max(h, w)
        pad = ((0, side - h), (0, side - w), (0, 0))
        whole = np.pad(image, pad, constant_values=128) if side != h or side != w else image
        views = [(whole, 0, 0, (False,) * 4, False)]
        for grid, frac in self.tilings if tiled else ():
            tw, th = max(1, round(frac * w)), max(1, round(frac * h))
            steps = [i / (grid - 1) for i in range(grid)] if grid > 1 else [0.5]
            for fy in steps:
                for fx in steps:
                    x0, y0 = round(fx * (w - tw)), round(fy * (h - th))
                    crop = image[y0 : y0 + th, x0 : x0 + tw]
                    if th != tw:
                        s = max(th, tw)
                        crop = np.pad(crop, ((0, s - th), (0, s - tw), (0, 0)), constant_values=128)
                    inner = (x0 > 0, y0 > 0, x0 + tw < w, y0 + th < h)
                    views.append((np.ascontiguousarray(crop), x0, y0, inner, False))
        if tiled:
            for x0, y0, t in self.square_tiles(w, h, budget=self.max_views - len(views)):
                crop = image[y0 : y0 + t, x0 : x0 + t]
                inner = (x0 > 0, y0 > 0, x0 + t < w, y0 + t < h)
                views.append((np.ascontiguousarray(crop), x0, y0, inner, t < FINE_VIEW))
        return views

    def square_tiles(self, w: int, h: int, budget: int) -> list[tuple[int, int, int]]:
        """Fixed-size square tiles ``(x0, y0, side)`` for a ``w`` x ``h`` photo (``min_view``)."""
        if not self.min_view or not self.tilings or max(w, h) < self.squares_from:
            return []
        side = min(f for _, f in self.tilings) * max(w, h) / 2
        out: list[tuple[int, int, int]] = []
        while side >= self.min_view and side <= min(w, h):
            t = round(side)
            stride = 2 * t / 3
            nx, ny = (max(1, math.ceil((n - t) / stride) + 1) for n in (w, h))
            if len(out) + nx * ny > budget:
                break
            xs = [round(i * (w - t) / max(1, nx - 1)) for i in range(nx)]
            ys = [round(j * (h - t) / max(1, ny - 1)) for j in range(ny)]
            out += [(x, y, t) for y in ys for x in xs]
            side /= 2
        return out

    def _detect_context(self, canvas_rgb: np.ndarray) -> list[Face]:
        """The whole padded canvas, one view, at ``context_threshold``."""
        return self._detect(canvas_rgb, self.context_threshold, tiled=False)

    def _detect(
        self, image_rgb: np.ndarray, threshold: float | None = None, tiled: bool = True
    ) -> list[Face]:
        all_boxes, all_scores, all_points = [], [], []
        base = self.threshold if threshold is None else threshold
        for view, x0, y0, inner, fine in self._views(image_rgb, tiled):
            boxes, scores, points = self._run_view(
                view, max(base, self.upsampled_threshold) if fine else base
            )
            if not len(scores):
                continue
            if any(inner):  # drop faces cut by a tile edge that lies inside the photo
                side = view.shape[0]
                margin = 0.02 * side
                cut = np.zeros(len(scores), bool)
                if inner[0]:
                    cut |= boxes[:, 0] <= margin
                if inner[1]:
                    cut |= boxes[:, 1] <= margin
                if inner[2]:
                    cut |= boxes[:, 2] >= side - margin
                if inner[3]:
                    cut |= boxes[:, 3] >= side - margin
                boxes, scores, points = boxes[~cut], scores[~cut], points[~cut]
            offset = np.array([x0, y0], np.float32)
            all_boxes.append(boxes + np.tile(offset, 2))
            all_scores.append(scores)
            all_points.append(points + offset)
        if not all_scores:
            return []
        merged = weighted_nms(
            np.concatenate(all_boxes),
            np.concatenate(all_scores),
            np.concatenate(all_points),
            self.nms_iou,
        )
        merged = drop_parts_of_heads(merged)
        h, w = image_rgb.shape[:2]
        faces = []
        for box, score, pts in merged:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not (0 <= cx < w and 0 <= cy < h) or box[2] <= box[0] or box[3] <= box[1]:
                continue
            faces.append(Face(tuple(float(v) for v in box), score, pts.astype(np.float32)))
        return faces
