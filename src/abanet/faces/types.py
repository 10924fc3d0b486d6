"""The face-detector interface: :class:`Face` results and the :class:`FaceDetector` base class."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abanet.errors import DataError


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` is ``(x1, y1, x2, y2)`` in image pixels (floats, x2/y2 exclusive, may reach past the
    image border when the detector says so). ``score`` is the detector's own confidence (a
    probability for the neural detectors, a cascade/SVM margin for Haar and dlib-HOG).
    ``source`` names the detector that found it. ``landmarks`` is an ``(K, 2)`` float array of
    ``(x, y)`` points or ``None``; MTCNN gives 5 points (eyes, nose, mouth corners, image-left
    first), MediaPipe 6.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)
    #: name of the detector that produced the face (selects the crop rule in the pipeline)
    source: str | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (plain floats and lists)."""
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
        }
        if self.source:
            out["source"] = self.source
        if self.landmarks is not None:
            out["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        return out


def as_rgb_image(image: Any, what: str = "image") -> np.ndarray:
    """Check that ``image`` is an ``HxWx3`` uint8 RGB array (``HxW`` gray is expanded); return it.

    Raises :class:`abanet.errors.DataError` with a one-line message naming ``what``.
    """
    if not isinstance(image, np.ndarray):
        raise DataError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{what}: expected an HxWx3 RGB array, got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise DataError(f"{what}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise DataError(f"{what}: empty image of shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


class FaceDetector(abc.ABC):
    """Finds faces in an RGB photo. Subclasses implement :meth:`_detect`.

    ``detect`` validates the input, calls ``_detect`` and returns faces sorted by descending score.
    """

    #: registry name of the detector (``create_detector(name)``)
    name: str = "detector"
    #: whether ``detect`` may run in several threads at once (else callers serialise it)
    thread_safe: bool = False

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in ``image_rgb`` (``HxWx3`` uint8 RGB), highest score first."""
        image = as_rgb_image(image_rgb)
        faces = [
            f if f.source else Face(f.box, f.score, f.landmarks, self.name)
            for f in self._detect(image)
        ]
        return sorted(faces, key=lambda f: f.score, reverse=True)

    __call__ = detect

    def detect_padded(self, image_rgb: np.ndarray, pad: float = 0.5) -> list[Face]:
        """Faces of a tight face crop: detect on the image centred in a grey canvas.

        Detectors are trained on faces with some head and background around them and miss many
        faces that fill the frame. The image is padded by ``pad`` x its longer side on every side
        with grey (measured better than replicated borders, docs/faces.md); boxes come back in
        the image's coordinates. Subclasses may look with a lower threshold here
        (:meth:`_detect_context`).
        """
        import cv2

        image = as_rgb_image(image_rgb)
        p = max(1, round(pad * max(image.shape[:2])))
        canvas = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        faces = []
        for f in self._detect_context(canvas):
            x1, y1, x2, y2 = (v - p for v in f.box)
            pts = None if f.landmarks is None else f.landmarks - p
            faces.append(Face((x1, y1, x2, y2), f.score, pts, f.source or self.name))
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def _detect_context(self, canvas_rgb: np.ndarray) -> list[Face]:
        """Detection on a padded canvas (:meth:`detect_padded`); the normal detection here."""
        return self._detect(canvas_rgb)

    @abc.abstractmethod
    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Detect faces in a validated contiguous ``HxWx3`` uint8 RGB array."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
