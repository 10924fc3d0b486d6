"""Predicted masks as annotation files: LabelMe JSON (one per image) and COCO instances (one per
run), for the model-assisted labelling loop (predict -> review in LabelMe or CVAT -> masks).

LabelMe: one ``polygon`` shape labelled ``mask`` per outer region of the mask (holes are not
kept: LabelMe polygons have none), ``imagePath`` relative to the JSON file, no embedded image.
``abanet data convert-labelme`` reads these files back (docs/data.md, "The annotation loop").

COCO: one image entry per input, one annotation per connected mask region (category ``mask``,
``iscrowd`` 0) whose ``segmentation`` is the region's compressed RLE (pycocotools, exact: holes
kept), with ``area`` and ``bbox`` from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from abanet.faces.pipeline import mask_polygons

#: the LabelMe format version written (LabelMe warns on another major version only)
LABELME_VERSION = "5.5.0"
#: the label of every predicted shape (one of ``DEFAULT_LABELME_LABELS``)
MASK_LABEL = "mask"
#: polygon simplification in pixels (``cv2.approxPolyDP``): 0.5 keeps round trips at IoU >= 0.996
#: on small masks with half the points of the raw contour (1.0 fell to 0.981)
POLYGON_EPSILON = 0.5


def labelme_document(mask: np.ndarray, image_path: str) -> dict[str, Any]:
    """A LabelMe document for a 0/1 (or 0/255) ``mask``; ``image_path`` as LabelMe should find
    the picture (relative to the JSON's folder)."""
    h, w = mask.shape[:2]
    shapes = [
        {
            "label": MASK_LABEL,
            "points": [[float(x), float(y)] for x, y in poly],
            "group_id": None,
            "description": "abanet prediction",
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        }
        for poly in mask_polygons(np.asarray(mask) > 0, POLYGON_EPSILON)
    ]
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": Path(image_path).as_posix(),
        "imageData": None,
        "imageHeight": int(h),
        "imageWidth": int(w),
    }


def labelme_bytes(mask: np.ndarray, image_path: str) -> bytes:
    """:func:`labelme_document` as UTF-8 JSON bytes."""
    return (json.dumps(labelme_document(mask, image_path), indent=1) + "\n").encode()


def coco_document(items: Iterable[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """A COCO instances document from ``(file_name, 0/1 mask)`` pairs (one image entry each)."""
    from pycocotools import mask as mask_utils

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (file_name, mask) in enumerate(items, start=1):
        m = (np.asarray(mask) > 0).astype(np.uint8)
        h, w = m.shape
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        count, labels = cv2.connectedComponents(m, connectivity=8)
        for region in range(1, count):
            rle = mask_utils.encode(np.asfortranarray((labels == region).astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "abanet predictions"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": MASK_LABEL, "supercategory": "mask"}],
    }


def coco_from_masks(
    pairs: Iterable[tuple[Path, Path]], coco_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """The COCO document of ``(image, mask PNG)`` pairs; file names relative to ``coco_path``'s
    folder (POSIX separators)."""
    from abanet.data.io import read_mask

    base = Path(coco_path).resolve().parent
    return coco_document(
        (Path(os.path.relpath(Path(image).resolve(), base)).as_posix(), read_mask(mask))
        for image, mask in pairs
    )


def write_coco(
    pairs: Iterable[tuple[Path, Path]], path: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write the COCO instances file of ``(input, mask file)`` pairs (``predict --coco``)
    atomically; :class:`~abanet.errors.OutputExistsError` when it exists and not ``overwrite``."""
    from abanet.data.io import write_bytes_atomic

    data = json.dumps(coco_from_masks(pairs, path)) + "\n"
    return write_bytes_atomic(path, data.encode(), overwrite=overwrite)
