"""Torch dataset over ``Sample`` pairs: decode, augment, resize, normalise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from abanet.data.readers import Sample, load_image, load_mask
from abanet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transforms,
    seed_transform,
    wrap_custom,
)
from abanet.errors import DataError

_STREAM_STRIDE = 1_000_003  # seed distance between augmentation streams (a prime)


class SegmentationDataset(Dataset):
    """Items are ``dict(image=float32 3xSxS normalised, mask=float32 1xSxS in {0,1}, name=str)``.

    ``augment``: False (resize + normalise), True (the ``strength`` preset of
    :func:`abanet.data.transforms.build_transforms`), or an albumentations transform applied to the
    uint8 image and float {0,1} mask before the resize and normalisation.
    ``cache``: keep decoded images and masks in memory (decode once; datasets here are small).
    Call :meth:`preload` to decode everything up front (before DataLoader workers fork, so they
    share it).
    ``seed``: reproducible augmentation; DataLoader workers reseed from torch's worker seed.
    ``stream``: datasets with different streams draw different augmentations from the same seeds
    (distributed training passes each process's rank; 0 leaves the seeds as they are).
    ``empty_masks``: the samples are negatives (e.g. bare faces): masks are not read, every mask
    is empty.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: bool | Any = False,
        strength: str = "default",
        cache: bool = False,
        threshold: int = 127,
        seed: int | None = None,
        empty_masks: bool = False,
        stream: int = 0,
    ) -> None:
        self.samples = list(samples)
        self._seed_offset = int(stream) * _STREAM_STRIDE
        if seed is not None:
            seed = (int(seed) + self._seed_offset) % 2**32
        self.empty_masks = empty_masks
        missing = [s for s in self.samples if s.mask_path is None]
        if missing and not empty_masks:
            raise DataError(
                f"{missing[0].image_path}: no mask ({len(missing)} of {len(self.samples)} samples"
                " have none; pass only paired samples)"
            )
        self.size = size
        self.threshold = threshold
        if augment is True:
            self.transform = build_transforms(
                size, mean, std, train=True, strength=strength, seed=seed
            )
        elif augment is False or augment is None:
            self.transform = build_transforms(size, mean, std, train=False, seed=seed)
        else:
            self.transform = wrap_custom(augment, size, mean, std, seed=seed)
        self.cache = cache
        self._seeded_worker: tuple[int, int] | None = None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``(image uint8 HxWx3, mask uint8 HxW {0,1})`` of one sample (cached if on)."""
        if self.cache and index in self._cache:
            return self._cache[index]
        s = self.samples[index]
        image = load_image(s)
        if self.empty_masks:
            mask = np.zeros(image.shape[:2], np.uint8)
        else:
            mask = load_mask(s, self.threshold)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{s.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {s.image_path}"
                f" is {image.shape[1]}x{image.shape[0]}"
            )
        if self.cache:
            self._cache[index] = (image, mask)
        return image, mask

    def preload(self, workers: int = 2) -> None:
        """Decode every sample into the cache (threads; PIL releases the GIL while decoding)."""
        self.cache = True
        todo = [i for i in range(len(self)) if i not in self._cache]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(self.load, todo))

    def _reseed_in_worker(self) -> None:
        """Reseed the augmentation once per DataLoader worker process.

        Forked workers inherit the same generator state, so without this every worker would draw
        the same augmentations. The worker seed is torch's (``base_seed + worker id``), which
        changes every epoch unless workers are persistent and follows ``torch.manual_seed``.
        """
        info = torch.utils.data.get_worker_info()
        if info is None:
            return
        key = (os.getpid(), info.id)
        if self._seeded_worker != key:
            seed_transform(self.transform, (int(info.seed) + self._seed_offset) % 2**32)
            self._seeded_worker = key

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._reseed_in_worker()
        image, mask = self.load(index)
        out = self.transform(image=image, mask=mask.astype(np.float32))
        img = np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32)
        m = (np.asarray(out["mask"]) > 0.5).astype(np.float32)[None]
        return {
            "image": torch.from_numpy(img),
            "mask": torch.from_numpy(np.ascontiguousarray(m)),
            "name": self.samples[index].name,
        }
