"""Face detection and the full-photo pipeline (detect, crop, segment, paste back)."""

from __future__ import annotations

from abanet.faces.detectors import (
    DetectorUnavailableError,
    create_detector,
    detector_install_hint,
    list_detectors,
)
from abanet.faces.types import Face, FaceDetector

__all__ = [
    "DetectorUnavailableError",
    "Face",
    "FaceDetector",
    "create_detector",
    "detector_install_hint",
    "list_detectors",
]
