"""Data layer: image IO, dataset readers, checks, splits, augmentation and the torch dataset.

Importing ``abanet.data`` stays light (numpy + PIL); ``SegmentationDataset`` and
``build_transforms`` (torch, albumentations) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from abanet.data.io import (
    IMAGE_EXTENSIONS,
    binarize_mask,
    mask_value_problems,
    read_image,
    read_image_bytes,
    read_mask,
    read_mask_raw,
    write_image_atomic,
)
from abanet.data.readers import (
    FaceBox,
    Problem,
    Sample,
    detect_kind,
    load_image,
    load_mask,
    open_dataset,
    paired,
    read_folders,
    read_labelme,
    read_mfsd,
    read_mfsd_boxes,
)
from abanet.data.splits import (
    apply_split,
    kfold_splits,
    load_folds,
    load_split,
    paper_split,
    save_split,
    split_by_ratios,
    split_from_lists,
)

_LAZY = {
    "SegmentationDataset": "abanet.data.dataset",
    "build_transforms": "abanet.data.transforms",
    "IMAGENET_MEAN": "abanet.data.transforms",
    "IMAGENET_STD": "abanet.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'abanet.data' has no attribute {name!r}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "FaceBox",
    "Problem",
    "Sample",
    "SegmentationDataset",
    "apply_split",
    "binarize_mask",
    "build_transforms",
    "detect_kind",
    "kfold_splits",
    "load_folds",
    "load_image",
    "load_mask",
    "load_split",
    "mask_value_problems",
    "open_dataset",
    "paired",
    "paper_split",
    "read_folders",
    "read_image",
    "read_image_bytes",
    "read_labelme",
    "read_mask",
    "read_mask_raw",
    "read_mfsd",
    "read_mfsd_boxes",
    "save_split",
    "split_by_ratios",
    "split_from_lists",
    "write_image_atomic",
]
