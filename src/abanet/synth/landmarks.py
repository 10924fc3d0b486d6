"""68-point facial landmarks (dlib/iBUG layout): detection, sanity checks and mask anchor points.

Index layout (0-based): jaw 0-16 (0 on the image left of a frontal face), brows 17-26, nose bridge
27-30, nostrils 31-35, eyes 36-41 and 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

JAW = slice(0, 17)
BROWS = slice(17, 27)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_BRIDGE = slice(27, 31)


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


#: the MediaPipe face-mesh point standing for each of the 68 dlib/iBUG landmarks
MESH_TO_68 = np.array(
    [
        *(127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356),
        *(70, 63, 105, 66, 107, 336, 296, 334, 293, 300),  # brows
        *(168, 197, 5, 4, 75, 97, 2, 326, 305),  # nose bridge, nostrils
        *(33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380),  # eyes
        *(61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181),  # outer lips
        *(78, 82, 13, 312, 308, 317, 14, 87),  # inner lips
    ]
)
MESH_MODEL = (
    Path(__file__).resolve().parent.parent / "assets" / "mediapipe" / "face_landmark.tflite"
)
MESH_SIDE = 192  # the mesh model's input side


@dataclass(frozen=True)
class FaceBox:
    """A square face region: centre, side and roll (radians, the eye line's angle)."""

    cx: float
    cy: float
    side: float
    roll: float = 0.0

    def to_crop(self) -> np.ndarray:
        """2x3 affine map from image pixels to the mesh model's input pixels."""
        k = MESH_SIDE / self.side
        c, s = np.cos(self.roll), np.sin(self.roll)
        rot = k * np.array([[c, s], [-s, c]])
        shift = MESH_SIDE / 2 - rot @ np.array([self.cx, self.cy])
        return np.hstack([rot, shift[:, None]])


def box_from_points(pts: np.ndarray, scale: float = 1.5) -> FaceBox:
    """MediaPipe's region for the next fit: the points' box, ``scale`` times its longer side,
    turned by the eye line (mesh points 33 and 263)."""
    (x0, y0), (x1, y1) = pts[:, :2].min(0), pts[:, :2].max(0)
    d = pts[263, :2] - pts[33, :2]
    side = scale * max(x1 - x0, y1 - y0)
    return FaceBox((x0 + x1) / 2, (y0 + y1) / 2, side, float(np.arctan2(d[1], d[0])))


class MeshLandmarker:
    """68 landmarks from MediaPipe's face mesh (the vendored ``face_landmark.tflite``, run by
    ``ai-edge-litert``, a base dependency: nothing else to install).

    Regions are tried in turn: the largest face the ``detector`` finds (a square 1.5 times its
    box, as MediaPipe does), then the whole crop. Each fit is refitted ``refits`` times from the
    region its own points imply (which also levels a rolled head). Landmarks are kept when the
    mesh's face-presence score is at least ``min_presence``, they pass :func:`check_landmarks`
    and are stable: one more refit moves them by at most ``max_drift`` inter-ocular distances
    on average.
    """

    def __init__(
        self,
        detector: str | None = "default",
        min_presence: float = 0.5,
        refits: int = 2,
        max_drift: float = 0.1,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(MESH_MODEL), num_threads=1)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self.interpreter.get_output_details()}
        self._points, self._presence = outputs["conv2d_20"], outputs["conv2d_30"]
        self.detector_name = detector
        self._detector: Any = None
        self.min_presence = min_presence
        self.refits = refits
        self.max_drift = max_drift

    def mesh(self, rgb: np.ndarray, box: FaceBox) -> tuple[np.ndarray, float]:
        """The 468 mesh points (x, y in image pixels, z) in ``box`` and the presence score."""
        import cv2

        m = box.to_crop()
        crop = cv2.warpAffine(rgb, m, (MESH_SIDE, MESH_SIDE), flags=cv2.INTER_LINEAR)
        self.interpreter.set_tensor(self._input, (crop[None] / np.float32(255)).astype(np.float32))
        self.interpreter.invoke()
        pts = self.interpreter.get_tensor(self._points).reshape(468, 3).astype(np.float64)
        logit = float(self.interpreter.get_tensor(self._presence).reshape(()))
        inv = cv2.invertAffineTransform(m)
        pts[:, :2] = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        return pts, float(1.0 / (1.0 + np.exp(-logit)))

    def _boxes(self, rgb: np.ndarray):
        h, w = rgb.shape[:2]
        if self.detector_name is not None:
            if self._detector is None:
                from abanet.faces import create_detector

                self._detector = create_detector(self.detector_name)
            faces = self._detector.detect(rgb)
            if faces:
                f = max(faces, key=lambda f: f.width * f.height)
                x0, y0, x1, y1 = f.box
                side = 1.5 * max(x1 - x0, y1 - y0)
                yield "detector", FaceBox((x0 + x1) / 2, (y0 + y1) / 2, side)
        yield "whole_crop", FaceBox(w / 2, h / 2, float(max(h, w)))

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Landmarks in ``rgb`` pixel coordinates and how they were found (``detector`` or
        ``whole_crop``), or ``(None, reason)``."""
        reason = "no face found"
        for how, box in self._boxes(rgb):
            pts, presence = self.mesh(rgb, box)
            for _ in range(self.refits):
                pts, presence = self.mesh(rgb, box_from_points(pts))
            lm = pts[MESH_TO_68, :2]
            again, _ = self.mesh(rgb, box_from_points(pts))
            drift = float(np.linalg.norm(again[MESH_TO_68, :2] - lm, axis=1).mean())
            drift /= max(face_frame(lm).iod, 1e-6)
            why = check_landmarks(lm, rgb.shape)
            if presence < self.min_presence:
                why = "no face found"
            elif why is None and drift > self.max_drift:
                why = "unstable landmarks"
            if why is None:
                return lm, how
            reason = why
        return None, reason
