"""Synthetic masked faces: mask templates placed on real unmasked faces by facial landmarks.

``generate`` writes a dataset (images/*.jpg + masks/*.png); ``synthesize`` renders one pair;
``restyle_mask`` repaints the labelled mask of an existing photo (same label, new look).
"""

from __future__ import annotations

from abanet.errors import LandmarkError, PlacementError
from abanet.synth.factory import SynthReport, choose_template, generate, item_rng
from abanet.synth.landmarks import (
    AnchorParams,
    MeshLandmarker,
    canonical_landmarks,
    check_landmarks,
    mask_anchors,
    yaw_ratio,
)
from abanet.synth.render import SynthOptions, restyle_mask, synthesize
from abanet.synth.templates import MaskTemplate, TemplateSet, load_templates, parse_masks_cfg

__all__ = [
    "AnchorParams",
    "MeshLandmarker",
    "LandmarkError",
    "MaskTemplate",
    "PlacementError",
    "SynthOptions",
    "SynthReport",
    "TemplateSet",
    "canonical_landmarks",
    "check_landmarks",
    "choose_template",
    "generate",
    "item_rng",
    "load_templates",
    "mask_anchors",
    "parse_masks_cfg",
    "restyle_mask",
    "synthesize",
    "yaw_ratio",
]
