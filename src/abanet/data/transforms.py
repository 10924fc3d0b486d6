"""Mask-aware augmentation and preprocessing with albumentations (>= 2.0).

``build_transforms(size, mean, std, train, strength)`` returns a transform that takes ``image``
(uint8 HxWx3 RGB) and ``mask`` (float32 HxW in {0, 1}) and returns a normalised float32 image and a
resized mask (threshold it at 0.5: masks are resampled bilinearly so that edges stay smooth under
rotation and scaling). Without ``train`` it is the inference preprocessing
(:class:`abanet.data.preprocess.DataConfig`: area filter when shrinking), so that validation scores
what predict and evaluate will see.

Training pipeline (order matters): resize to ``size`` x ``size`` -> horizontal flip -> affine
(zoom in *and out*, shift, rotate, shear; zoom-out leaves a constant border so the mask does not
always fill the lower half of the frame) -> colour (brightness/contrast/saturation jitter, hue
shift, grayscale) -> degradation (blur / motion blur / downscale, JPEG compression, Gaussian noise)
-> normalise.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from abanet.data.preprocess import DataConfig, EvalTransform  # noqa: E402
from abanet.errors import DataError  # noqa: E402
from abanet.models.config import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

STRENGTHS: tuple[str, ...] = ("none", "light", "default", "heavy")


@dataclass(frozen=True)
class _Params:
    p_affine: float
    scale: tuple[float, float]
    translate: float
    rotate: float
    shear: float
    p_color: float
    jitter: float
    p_hue: float
    hue_shift: int
    p_gray: float
    p_blur: float
    p_jpeg: float
    jpeg_quality: tuple[int, int]
    p_noise: float
    noise_std: tuple[float, float]


_PRESETS: dict[str, _Params] = {
    "light": _Params(
        p_affine=0.5, scale=(0.8, 1.1), translate=0.05, rotate=10, shear=0,
        p_color=0.5, jitter=0.15, p_hue=0.1, hue_shift=10, p_gray=0.05,
        p_blur=0.1, p_jpeg=0.1, jpeg_quality=(60, 95), p_noise=0.05, noise_std=(0.01, 0.04),
    ),
    "default": _Params(
        p_affine=0.8, scale=(0.55, 1.2), translate=0.1, rotate=15, shear=5,
        p_color=0.8, jitter=0.3, p_hue=0.3, hue_shift=30, p_gray=0.1,
        p_blur=0.3, p_jpeg=0.3, jpeg_quality=(30, 95), p_noise=0.2, noise_std=(0.02, 0.08),
    ),
    "heavy": _Params(
        p_affine=0.9, scale=(0.4, 1.3), translate=0.15, rotate=25, shear=8,
        p_color=0.9, jitter=0.4, p_hue=0.5, hue_shift=90, p_gray=0.15,
        p_blur=0.4, p_jpeg=0.4, jpeg_quality=(20, 90), p_noise=0.3, noise_std=(0.02, 0.12),
    ),
}  # fmt: skip


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 8:
        raise DataError(f"input size must be an integer >= 8, got {size!r}")


def resize_normalize(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[A.BasicTransform]:
    """Resize to ``size`` x ``size`` (bilinear image and mask), normalise with ``mean``/``std``."""
    _check_size(size)
    return [
        A.Resize(size, size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_LINEAR),
        A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
    ]


def augmentations(strength: str = "default") -> list[A.BasicTransform]:
    """The augmentation steps of a preset (no resize, no normalisation); empty for ``none``."""
    if strength == "none":
        return []
    if strength not in _PRESETS:
        raise DataError(
            f"unknown augmentation strength {strength!r} (one of {', '.join(STRENGTHS)})"
        )
    q = _PRESETS[strength]
    j = q.jitter
    return [
        # Faces are upright: horizontal flips only.
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=q.scale,
            translate_percent=(-q.translate, q.translate),
            rotate=(-q.rotate, q.rotate),
            shear=(-q.shear, q.shear),
            keep_ratio=True,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=q.p_affine,
        ),
        A.ColorJitter(
            brightness=(1 - j, 1 + j),
            contrast=(1 - j, 1 + j),
            saturation=(1 - j, 1 + j),
            hue=(-0.03, 0.03),
            p=q.p_color,
        ),
        # Larger hue shifts recolour masks (real masks come in every colour).
        A.HueSaturationValue(
            hue_shift_limit=q.hue_shift, sat_shift_limit=30, val_shift_limit=20, p=q.p_hue
        ),
        A.ToGray(p=q.p_gray),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 7)),
                A.MotionBlur(blur_limit=(3, 7)),
                # Blurry upscaled crops are common in real data.
                A.Downscale(
                    scale_range=(0.3, 0.7),
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                ),
            ],
            p=q.p_blur,
        ),
        A.ImageCompression(compression_type="jpeg", quality_range=q.jpeg_quality, p=q.p_jpeg),
        A.GaussNoise(std_range=q.noise_std, p=q.p_noise),
    ]


def seed_transform(transform: A.BaseCompose | A.BasicTransform, seed: int | None) -> None:
    """Give ``transform`` and all its children ONE shared pair of generators seeded with ``seed``
    (None: fresh entropy).

    albumentations' own ``Compose(seed=...)`` seeds every child with the *same* seed, so the
    children's random draws are identical streams (a flip and a grayscale step would fire
    together); one shared generator keeps runs reproducible without that correlation.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_transforms(
    size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    train: bool = False,
    strength: str = "default",
    seed: int | None = None,
) -> A.Compose | EvalTransform:
    """Training (``train``): resize, the ``strength`` preset, normalise. Otherwise the inference
    preprocessing of ``DataConfig(size, mean, std)``.

    ``strength`` is ``none``, ``light``, ``default`` or ``heavy``. ``seed`` makes the random draws
    reproducible (see :func:`seed_transform`).
    """
    steps: list[Any] = resize_normalize(size, mean, std)
    if strength not in STRENGTHS:
        raise DataError(
            f"unknown augmentation strength {strength!r} (one of {', '.join(STRENGTHS)})"
        )
    if not train:
        return EvalTransform(DataConfig(size, tuple(mean), tuple(std)))
    compose = A.Compose([steps[0], *augmentations(strength), steps[1]])
    seed_transform(compose, seed)
    return compose


def wrap_custom(
    aug: A.BaseCompose | A.BasicTransform,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> A.Compose:
    """A user's augmentation followed by resize to ``size`` and normalisation."""
    resize, norm = resize_normalize(size, mean, std)
    compose = A.Compose([aug, resize, norm])
    seed_transform(compose, seed)
    return compose
