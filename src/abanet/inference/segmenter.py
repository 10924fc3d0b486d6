"""``Segmenter``: a loaded model, a backend and a face detector, ready to segment images.

One session per model (like rembg): build it once, call :meth:`Segmenter.predict` many times.
Face crops are segmented whole; full photos go through the face pipeline (detect, crop in the
training framing, segment each crop, paste back) unless ``whole_image=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from PIL import Image

from abanet.data.preprocess import resolve_data_config
from abanet.errors import AbanetError, ModelError
from abanet.faces.pipeline import (
    BatchedPhoto,
    CropBatcher,
    PhotoPlan,
    PhotoResult,
    finish_photo,
)
from abanet.inference.profiling import StageTimer
from abanet.inference.refine import fill_holes, flip_average

if TYPE_CHECKING:
    from abanet.faces.types import FaceDetector
    from abanet.inference.backends.base import Backend

ImageLike = str | os.PathLike[str] | Image.Image | np.ndarray


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """RGB uint8 HxWx3 from a path, a PIL image or an array (gray, RGB or RGBA)."""
    from abanet.data.io import read_image, to_rgb

    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image, "<PIL image>")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.size and float(arr.max()) <= 1.0:
            arr = (arr * 255.0).round()
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise AbanetError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


class Segmenter:
    """Segment face-mask regions.

    Args:
        model: shipped name (``"default"``), a weights folder/file, or a loaded model.
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: inference backend name (``auto`` picks the fastest faithful one on this machine),
            or a ready :class:`~abanet.inference.backends.base.Backend` for ``model``.
        threshold: probability threshold (default: the model config's).
        detector: face detector name for full photos, or ``None`` to always segment whole images.
        batch_size: crops per forward pass.
        flip_tta, fill_holes: test-time refinements (:mod:`abanet.inference.refine`); ``None``
            follows the model config.
        size: square side images are resized to (default: the model config's input size).
        num_threads: CPU threads of the backend (default: every core; one process of several
            on a machine, like a Ray actor, takes its share).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | torch.nn.Module = "default",
        device: str = "auto",
        backend: str | Backend = "auto",
        threshold: float | None = None,
        detector: str | None = "default",
        batch_size: int = 8,
        flip_tta: bool | None = None,
        fill_holes: bool | None = None,
        size: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        from abanet.models.hub import resolve_model

        self.model, self.device, _ = resolve_model(model, device)
        cfg = self.model.config
        self.data_config = resolve_data_config(cfg, size)
        self.size = self.data_config.size
        self.threshold = float(cfg.threshold if threshold is None else threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ModelError(f"threshold must be between 0 and 1, got {self.threshold}")
        self.batch_size = max(1, int(batch_size))
        self.flip_tta = bool(cfg.flip_tta if flip_tta is None else flip_tta)
        self.fill_holes = bool(cfg.fill_holes if fill_holes is None else fill_holes)
        self.num_threads = num_threads
        self._backend: Backend | None = None
        if isinstance(backend, str):
            self.backend_name = backend
        else:
            self.backend_name, self._backend = backend.name, backend
        self.detector_name = detector
        self._detector: FaceDetector | None = None

    # -- lazily built parts -------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from abanet.inference.backends import create_backend

            # on full photos the face detector runs beside the model: ONNX Runtime, whose idle
            # threads sleep, ran the pipeline 1.6x faster than eager_fused on 2 cores (43-45 vs
            # 26-28 photos/s, docs/faces.md) though alone the two are within 15 %
            pipeline = self.detector_name is not None and self.device.type == "cpu"
            auto_options = (
                {"prefer": ("onnxruntime",)} if self.backend_name == "auto" and pipeline else {}
            )
            self._backend = create_backend(
                self.model,
                self.backend_name,
                self.device,
                size=self.size,
                batch=self.batch_size,
                num_threads=self.num_threads,
                **auto_options,
            )
        return self._backend

    @property
    def detector(self) -> FaceDetector | None:
        if self._detector is None and self.detector_name is not None:
            from abanet.faces import create_detector

            self._detector = create_detector(self.detector_name)
        return self._detector

    # -- core ---------------------------------------------------------------------------------
    def segment_crops(
        self, crops: Sequence[np.ndarray], timer: StageTimer | None = None
    ) -> list[np.ndarray]:
        """Probability maps (float32, each at its crop's size) for RGB uint8 crops."""
        timer = timer or StageTimer()
        out: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            with timer.stage("preprocess"):
                batch = torch.from_numpy(np.stack([self.data_config(c) for c in chunk]))
            with timer.stage("model"):
                x = batch.to(self.device)
                run = self.backend.run
                probs = flip_average(run, x) if self.flip_tta else run(x)
                probs = probs.float().cpu().numpy()[:, 0]
            with timer.stage("postprocess"):
                for crop, prob in zip(chunk, probs, strict=True):
                    h, w = crop.shape[:2]
                    prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
                    out.append(fill_holes(prob, self.threshold) if self.fill_holes else prob)
        return out

    def plan(self, image: ImageLike, whole_image: bool = False) -> PhotoPlan:
        """Find the faces of one image and cut its crops (step 1 of :meth:`segment`)."""
        from abanet.faces.pipeline import plan_photo

        detector = None if whole_image else self.detector
        return plan_photo(to_rgb_array(image), detector, whole_image or detector is None)

    def batcher(self, timer: StageTimer | None = None) -> CropBatcher:
        """A :class:`~abanet.faces.pipeline.CropBatcher` on this model: the crops of many photos,
        first and second (past a crop's edge) crops alike, in shared batches."""
        return CropBatcher(lambda crops: self.segment_crops(crops, timer), self.threshold)

    def finish(self, done: BatchedPhoto, timer: StageTimer | None = None) -> PhotoResult:
        """Paste a batched photo's maps back at full resolution (step 3 of :meth:`segment`)."""
        if done.error is not None:
            raise done.error
        with (timer or StageTimer()).stage("postprocess"):
            return finish_photo(done.plan, done.probs, self.threshold, extensions=done.extensions)

    def segment_plans(
        self, plans: Sequence[PhotoPlan], timer: StageTimer | None = None
    ) -> list[PhotoResult]:
        """Full results for planned photos; crops of all of them share forward passes."""
        batcher = self.batcher(timer)
        return [self.finish(d, timer) for d in batcher.drain([(None, p) for p in plans])]

    def segment(self, image: ImageLike, whole_image: bool = False) -> PhotoResult:
        """Full result for one image: ``PhotoResult`` with ``prob``, ``mask`` and ``faces``."""
        return self.segment_plans([self.plan(image, whole_image)])[0]

    def predict(
        self, image: ImageLike, whole_image: bool = False, soft: bool = False
    ) -> np.ndarray | Image.Image:
        """The mask of one image, in the caller's type family.

        Path or numpy in: ``np.ndarray`` uint8 HxW (0/255, or 0..255 probabilities with
        ``soft``). PIL in: a mode ``L`` PIL image of the same values.
        """
        result = self.segment(image, whole_image=whole_image)
        mask = encode_mask(result, soft)
        return Image.fromarray(mask, mode="L") if isinstance(image, Image.Image) else mask

    def predict_batch(
        self, images: Sequence[ImageLike], whole_image: bool = False, soft: bool = False
    ) -> list[np.ndarray | Image.Image]:
        """``predict`` for several images; crops of all images share forward passes."""
        plans = [self.plan(im, whole_image) for im in images]
        out = []
        for result, im in zip(self.segment_plans(plans), images, strict=True):
            mask = encode_mask(result, soft)
            out.append(Image.fromarray(mask, mode="L") if isinstance(im, Image.Image) else mask)
        return out


def _encode(prob: np.ndarray, threshold: float, soft: bool) -> np.ndarray:
    if soft:
        return np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.where(prob >= threshold, 255, 0).astype(np.uint8)


def encode_mask(result: PhotoResult, soft: bool = False) -> np.ndarray:
    """uint8 HxW mask of a ``PhotoResult``: 0/255, or 8-bit probabilities with ``soft``."""
    if soft:
        return _encode(result.prob, 0.5, True)
    return (result.mask > 0).astype(np.uint8) * 255


def default_samples_dir() -> Path:
    """Folder of the sample images shipped in the package."""
    return Path(__file__).resolve().parent.parent / "assets" / "samples"
