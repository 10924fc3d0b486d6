"""Face detection and the full-photo pipeline (detect, crop in the training framing, segment each
crop, paste back). See docs/faces.md for the measured detector comparison and the crop rule."""

from __future__ import annotations

from abanet.faces.detectors import (
    DetectorUnavailableError,
    create_detector,
    detector_install_hint,
    list_detectors,
)
from abanet.faces.pipeline import (
    CROP_RULES,
    CropRule,
    FaceResult,
    PhotoPlan,
    PhotoResult,
    extract_crop,
    finish_photo,
    mask_polygons,
    plan_photo,
    segment_photo,
)
from abanet.faces.types import Face, FaceDetector

__all__ = [
    "CROP_RULES",
    "CropRule",
    "DetectorUnavailableError",
    "Face",
    "FaceDetector",
    "FaceResult",
    "PhotoPlan",
    "PhotoResult",
    "create_detector",
    "detector_install_hint",
    "extract_crop",
    "finish_photo",
    "list_detectors",
    "mask_polygons",
    "plan_photo",
    "segment_photo",
]
