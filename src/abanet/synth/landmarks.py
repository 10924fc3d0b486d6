"""68-point facial landmarks (dlib/iBUG layout): detection, sanity checks and mask anchor points.

Index layout (0-based): jaw 0-16 (0 on the image left of a frontal face), brows 17-26, nose bridge
27-30, nostrils 31-35, eyes 36-41 and 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abanet.errors import AbanetError

JAW = slice(0, 17)
BROWS = slice(17, 27)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_BRIDGE = slice(27, 31)


class LandmarkError(AbanetError):
    """Landmarks could not be found or make no sense for this face."""


@dataclass(frozen=True)
class FaceFrame:
    """A face-aligned frame: origin between the eyes, u along the eye line, v down the face."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    iod: float

    def to_uv(self, pts: np.ndarray) -> np.ndarray:
        d = np.asarray(pts, dtype=np.float64) - self.origin
        return np.stack([d @ self.ex, d @ self.ey], axis=-1)

    def to_xy(self, uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64)
        return self.origin + uv[..., :1] * self.ex + uv[..., 1:2] * self.ey


def face_frame(lm: np.ndarray) -> FaceFrame:
    lm = np.asarray(lm, dtype=np.float64)
    le, re = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    d = re - le
    iod = float(np.hypot(*d))
    ex = d / max(iod, 1e-9)
    ey = np.array([-ex[1], ex[0]])
    return FaceFrame((le + re) / 2, ex, ey, iod)


def canonical_landmarks(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """A plausible frontal 68-point face filling the box (x0, y0, w, h): brows near the top, chin at
    the bottom. For tests, demos and hand-made fixtures."""
    pts = np.zeros((68, 2), dtype=np.float64)
    # jaw: from the left ear (eye height) round the chin to the right ear
    phi = np.linspace(np.pi, 0.0, 17)
    pts[0:17, 0] = 0.5 + 0.5 * np.cos(phi)
    pts[0:17, 1] = 0.30 + 0.70 * np.sin(phi)
    # brows
    t = np.linspace(0, 1, 5)
    pts[17:22] = np.stack([0.12 + 0.28 * t, 0.17 - 0.06 * np.sin(np.pi * t)], 1)
    pts[22:27] = np.stack([0.60 + 0.28 * t, 0.17 - 0.06 * np.sin(np.pi * t)], 1)
    # nose bridge and nostrils
    pts[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.30, 0.55, 4)], 1)
    pts[31:36] = np.stack([np.linspace(0.41, 0.59, 5), 0.62 - 0.02 * np.sin(np.pi * t)], 1)

    def eye(cx: float) -> np.ndarray:
        ang = np.deg2rad([180, 120, 60, 0, -60, -120])
        return np.stack([cx + 0.08 * np.cos(ang), 0.30 - 0.03 * np.sin(ang)], 1)

    pts[36:42] = eye(0.30)
    pts[42:48] = eye(0.70)
    ang = np.deg2rad(np.linspace(180, -150, 12))
    pts[48:60] = np.stack([0.5 + 0.15 * np.cos(ang), 0.79 - 0.055 * np.sin(ang)], 1)
    ang = np.deg2rad([180, 90, 90, 90, 0, -90, -90, -90])
    dx = np.array([0, -0.05, 0, 0.05, 0, 0.05, 0, -0.05])
    pts[60:68] = np.stack([0.5 + 0.10 * np.cos(ang) + dx, 0.79 - 0.015 * np.sin(ang)], 1)
    pts[:, 0] = x0 + pts[:, 0] * w
    pts[:, 1] = y0 + pts[:, 1] * h
    return pts


def check_landmarks(lm: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """A short reason if the 68 landmarks are implausible for an image of ``shape``, else None."""
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape != (68, 2):
        return f"expected 68x2 landmarks, got {lm.shape}"
    if not np.isfinite(lm).all():
        return "non-finite landmarks"
    h, w = shape[:2]
    fr = face_frame(lm)
    if fr.iod < 4.0 or fr.iod < 0.08 * min(h, w):
        return "eyes too close together"
    if abs(np.degrees(np.arctan2(fr.ex[1], fr.ex[0]))) > 45:
        return "head roll above 45 degrees"
    uv = fr.to_uv(lm) / fr.iod
    v_nose, v_mouth, v_chin = uv[30, 1], uv[48:60, 1].mean(), uv[8, 1]
    if not (0.2 < v_nose < v_mouth < v_chin):
        return "eyes, nose, mouth and chin out of order"
    if not (1.0 < v_chin < 3.2):
        return "chin distance implausible"
    jaw_w = uv[16, 0] - uv[0, 0]
    if not (1.3 < jaw_w < 3.6):
        return "jaw width implausible"
    if not (uv[0, 0] < uv[30, 0] < uv[16, 0]):
        return "nose outside the jaw"
    m = 0.15
    for idx in (LEFT_EYE, RIGHT_EYE, slice(27, 36)):
        p = lm[idx]
        if (p[:, 0] < 0).any() or (p[:, 0] > w).any() or (p[:, 1] < 0).any() or (p[:, 1] > h).any():
            return "eyes or nose outside the image"
    if lm[8, 1] > h * (1 + m) or lm[8, 0] < -m * w or lm[8, 0] > w * (1 + m):
        return "chin far outside the image"
    return None


def _jaw_point_at(uv_side: np.ndarray, v: float) -> np.ndarray:
    """Point of a jaw polyline (ordered ear to chin) at face height ``v`` (clamped to the ends)."""
    vs = uv_side[:, 1]
    for i in range(len(uv_side) - 1):
        v0, v1 = vs[i], vs[i + 1]
        if (v0 - v) * (v1 - v) <= 0 and v0 != v1:
            t = (v - v0) / (v1 - v0)
            return uv_side[i] + t * (uv_side[i + 1] - uv_side[i])
    return uv_side[0] if v < vs[0] else uv_side[-1]


@dataclass(frozen=True)
class AnchorParams:
    """Where the six template anchors go on the face (fractions; 0 = nose bridge b, 1 = chin e)."""

    bridge: float = 0.45  # b along the nose bridge (landmark 27 -> 30)
    top: float = 0.20  # a and c: height on the jaw, from b towards the chin
    bottom: float = 0.70  # d and f: height on the jaw
    chin_drop: float = 0.02  # e below landmark 8, in units of the b-to-chin height
    widen: float = 0.0  # a, c, d, f pushed out sideways, in units of the jaw width


def mask_anchors(lm: np.ndarray, p: AnchorParams | None = None) -> np.ndarray:
    """The six face points (a, b, c, d, e, f; 6x2 image px) a template's anchors map onto."""
    p = p or AnchorParams()
    lm = np.asarray(lm, dtype=np.float64)
    fr = face_frame(lm)
    uv = fr.to_uv(lm)
    b = uv[27] + p.bridge * (uv[30] - uv[27])
    chin = uv[8]
    height = chin[1] - b[1]
    e = chin + np.array([0.0, p.chin_drop * height])
    left, right = uv[0:9], uv[16:7:-1]  # both ordered ear -> chin
    v_top = b[1] + p.top * height
    v_bot = b[1] + p.bottom * height
    a, d = _jaw_point_at(left, v_top), _jaw_point_at(left, v_bot)
    c, f = _jaw_point_at(right, v_top), _jaw_point_at(right, v_bot)
    jaw_w = max(uv[16, 0] - uv[0, 0], 1e-6)
    push = np.array([p.widen * jaw_w, 0.0])
    a, d = a - push, d - push
    c, f = c + push, f + push
    return fr.to_xy(np.stack([a, b, c, d, e, f]))


def yaw_ratio(lm: np.ndarray) -> float:
    """Where the nose sits between the jaw sides at nose height: 0.5 frontal, < 0.5 turned to the
    image left (the template view called ``left``), > 0.5 turned right."""
    lm = np.asarray(lm, dtype=np.float64)
    fr = face_frame(lm)
    uv = fr.to_uv(lm)
    v = uv[30, 1]
    a = _jaw_point_at(uv[0:9], v)
    c = _jaw_point_at(uv[16:7:-1], v)
    nose = 0.5 * (uv[30, 0] + uv[28, 0])
    return float((nose - a[0]) / max(c[0] - a[0], 1e-6))


def default_predictor_path() -> Path:
    """dlib's 68-point model shipped by ``face-recognition-models`` (found without importing the
    package, whose ``__init__`` needs the removed ``pkg_resources``)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkError(
            "face-recognition-models is not installed (pip install face-recognition-models), "
            "or pass precomputed landmarks with --landmarks"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise LandmarkError("face-recognition-models has no shape_predictor_68_face_landmarks.dat")


class DlibLandmarker:
    """dlib face detection + 68-point shape predictor, tuned for small face crops.

    The crop is upscaled so that its shorter side is at least ``min_side`` px. Boxes are tried in
    turn until the predicted landmarks pass :func:`check_landmarks` and are stable: dlib's HOG
    detector (fast), then dlib's CNN (MMOD) detector on a ``cnn_side`` px version (slower, finds
    most blurry or turned faces the HOG misses), and, only if ``whole_crop`` is set, the whole crop
    as the face box (on faces-unmasked this mostly gave wrong landmarks, so it is off by default).
    CNN and whole-crop boxes are refined from the predicted landmarks into the box shape the
    predictor was trained on. Stable means: predicting again from the box the landmarks imply moves
    them by at most ``max_drift`` inter-ocular distances on average (good fits move < 0.02).
    """

    def __init__(
        self,
        predictor_path: str | Path | None = None,
        min_side: int = 256,
        cnn_side: int | None = 128,
        whole_crop: bool = False,
        max_drift: float = 0.1,
    ) -> None:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise LandmarkError(
                "dlib is not installed (pip install dlib-bin face-recognition-models), "
                "or pass precomputed landmarks with --landmarks"
            ) from exc
        if predictor_path is None:
            predictor_path = default_predictor_path()
        predictor_path = Path(predictor_path)
        if not predictor_path.is_file():
            raise LandmarkError(f"{predictor_path}: dlib shape predictor not found")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        self.cnn = None
        mmod = predictor_path.parent / "mmod_human_face_detector.dat"
        if cnn_side and mmod.is_file():
            self.cnn = dlib.cnn_face_detection_model_v1(str(mmod))
        self.min_side = min_side
        self.cnn_side = cnn_side
        self.whole_crop = whole_crop
        self.max_drift = max_drift

    def _predict(self, img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self.predictor(img, self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64)

    @staticmethod
    def _box_from_landmarks(lm: np.ndarray) -> tuple[float, float, float, float]:
        """The box dlib's HOG detector would give for these landmarks (median offsets measured on
        faces-unmasked crops: jaw width left to right, a seventh above the brows to the chin)."""
        x0, x1 = lm[JAW, 0].min(), lm[JAW, 0].max()
        top, bottom = lm[BROWS, 1].min(), lm[8, 1]
        w, h = x1 - x0, bottom - top
        return x0 - 0.016 * w, top - 0.144 * h, x1 - 0.019 * w, bottom - 0.022 * h

    def _boxes(self, img: np.ndarray):
        """Yield (how, box) candidates lazily, cheapest first."""
        import cv2

        dets, scores, _ = self.detector.run(img, 1, -0.2)
        if len(dets):
            best = max(range(len(dets)), key=lambda i: dets[i].area() * (1 + scores[i]))
            d = dets[best]
            yield "hog", (d.left(), d.top(), d.right(), d.bottom()), False
        hh, ww = img.shape[:2]
        if self.cnn is not None:
            k = min(1.0, self.cnn_side / min(hh, ww))
            small = np.ascontiguousarray(
                cv2.resize(img, (round(ww * k), round(hh * k)), cv2.INTER_AREA)
            )
            found = self.cnn(small, 0)
            if len(found):
                d = max(found, key=lambda r: r.rect.area() * (1 + r.confidence)).rect
                yield "cnn", (d.left() / k, d.top() / k, d.right() / k, d.bottom() / k), True
        if self.whole_crop:
            yield "whole_crop", (0.04 * ww, 0.04 * hh, 0.96 * ww, 0.96 * hh), True

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Landmarks in ``rgb`` pixel coordinates and how they were found (``hog``, ``cnn`` or
        ``whole_crop``), or ``(None, reason)``."""
        import cv2

        h, w = rgb.shape[:2]
        s = max(1.0, self.min_side / min(h, w))
        img = rgb if s == 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)), cv2.INTER_CUBIC)
        img = np.ascontiguousarray(img)
        reason = "no face found"
        for how, box, refine in self._boxes(img):
            lm = self._predict(img, box)
            if refine:
                for _ in range(2):
                    lm = self._predict(img, self._box_from_landmarks(lm))
            again = self._predict(img, self._box_from_landmarks(lm))
            drift = float(np.linalg.norm(again - lm, axis=1).mean()) / max(face_frame(lm).iod, 1e-6)
            lm = lm / s
            why = check_landmarks(lm, rgb.shape)
            if why is None and drift > self.max_drift:
                why = "unstable landmarks"
            if why is None:
                return lm, how
            reason = why
        return None, reason
