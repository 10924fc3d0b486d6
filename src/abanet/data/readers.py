"""Dataset readers: turn a folder into ``Sample`` pairs plus a list of ``Problem`` records.

Layouts (see docs/data.md):

- ``folders``: ``DIR/images/`` + ``DIR/masks/`` paired by file stem (any image extension).
- ``mfsd``: the MFSD release, ``MSFD/1/face_crop`` + ``MSFD/1/face_crop_segmentation`` paired by
  file name, ``MSFD/1/dataset.csv`` face boxes for the photos in ``MSFD/1/img``.
- ``labelme``: a folder of LabelMe ``*.json`` files whose shapes are rasterised into masks.

Readers never raise on a bad file: each bad file becomes a ``Problem`` naming it. Only a bad
*root* (missing folder, unknown layout) raises ``DataError``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from abanet.data.io import (
    IMAGE_EXTENSIONS,
    binarize_mask,
    image_mode,
    is_image_file,
    list_images,
    read_image,
    read_image_bytes,
    read_mask_raw,
)
from abanet.errors import DataError, ImageReadError

Severity = Literal["error", "warning"]
DatasetKind = Literal["folders", "mfsd", "labelme"]

DEFAULT_LABELME_LABELS: tuple[str, ...] = (
    "mask",
    "face_mask",
    "facemask",
    "face-mask",
    "face mask",
)


@dataclass(frozen=True)
class Sample:
    """One image and its mask. ``name`` is unique within a dataset and is what split files list.

    For LabelMe data ``mask_path`` is the ``.json`` file (rasterised on load with ``labels``) and,
    when the picture is embedded in the json (``imageData``), ``image_path`` is the json too.
    """

    image_path: Path
    mask_path: Path | None
    name: str
    group: str | None = None
    labels: tuple[str, ...] = field(default=(), compare=False)

    @property
    def has_mask(self) -> bool:
        return self.mask_path is not None


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file: ``str(problem)`` is ``"PATH: message"``."""

    path: str
    kind: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {
            "path": self.path,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass(frozen=True)
class FaceBox:
    """One face box of an MFSD photo, in pixels (x1, y1 top-left; x2, y2 bottom-right)."""

    x1: float
    y1: float
    x2: float
    y2: float
    with_mask: bool | None = None


ReadResult = tuple[list[Sample], list[Problem]]


# --------------------------------------------------------------------------------------- helpers
def _posix(path: Path) -> str:
    return path.as_posix()


def _key(rel: Path, suffix: str = "") -> str:
    """Pairing key: relative path without extension (and without a mask name suffix)."""
    stem = rel.with_suffix("").as_posix()
    if suffix and stem.endswith(suffix):
        stem = stem[: -len(suffix)]
    return stem


def _auto_groups(samples: list[Sample]) -> list[Sample]:
    """Fill ``group`` with the first naming preset that matches almost every name."""
    from abanet.data.splits import group_of, guess_group_rule

    if not samples or any(s.group is not None for s in samples):
        return samples
    rule = guess_group_rule([s.name for s in samples])
    if rule is None:
        return samples
    return [
        Sample(s.image_path, s.mask_path, s.name, group_of(s.name, rule), s.labels) for s in samples
    ]


def _check_unique_names(samples: list[Sample], problems: list[Problem]) -> list[Sample]:
    seen: dict[str, Sample] = {}
    out: list[Sample] = []
    for s in samples:
        if s.name in seen:
            problems.append(
                Problem(
                    str(s.image_path),
                    "duplicate-name",
                    f"sample name {s.name!r} is also used by {seen[s.name].image_path}; skipped",
                )
            )
            continue
        seen[s.name] = s
        out.append(s)
    return out


# --------------------------------------------------------------------------------------- folders
def read_folders(
    root: str | os.PathLike[str],
    recursive: bool = False,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "",
) -> ReadResult:
    """``ROOT/images`` + ``ROOT/masks`` paired by relative path without extension.

    ``mask_suffix`` (e.g. ``"_mask"``) is stripped from mask stems before pairing. Images without
    a mask come back as samples with ``mask_path=None`` *and* an ``unpaired-image`` problem.
    """
    base = Path(root)
    img_root, mask_root = base / images_dir, base / masks_dir
    if not img_root.is_dir():
        raise DataError(f"{base}: no {images_dir}/ folder (expected {images_dir}/ + {masks_dir}/)")
    problems: list[Problem] = []
    if not mask_root.is_dir():
        problems.append(
            Problem(str(mask_root), "layout", f"no {masks_dir}/ folder: every image is unlabelled")
        )
    images: dict[str, Path] = {}
    for p in list_images(img_root, recursive):
        k = _key(p.relative_to(img_root))
        if k in images:
            problems.append(
                Problem(
                    str(p),
                    "ambiguous",
                    f"two images share the stem {k!r} (also {images[k].name}); skipped",
                )
            )
            continue
        images[k] = p
    masks: dict[str, Path] = {}
    if mask_root.is_dir():
        for p in list_images(mask_root, recursive):
            k = _key(p.relative_to(mask_root), mask_suffix)
            if k in masks:
                problems.append(
                    Problem(
                        str(p),
                        "ambiguous",
                        f"two masks share the stem {k!r} (also {masks[k].name}); skipped",
                    )
                )
                continue
            masks[k] = p
    samples: list[Sample] = []
    for k, img in images.items():
        mask = masks.get(k)
        if mask is None:
            problems.append(Problem(str(img), "unpaired-image", "no mask with the same stem"))
        samples.append(Sample(img, mask, _posix(img.relative_to(img_root))))
    for k, mask in masks.items():
        if k not in images:
            problems.append(Problem(str(mask), "unpaired-mask", "no image with the same stem"))
    if not images:
        problems.append(Problem(str(img_root), "layout", "no image files found"))
    return _auto_groups(samples), problems


# ------------------------------------------------------------------------------------------ MFSD
def find_mfsd_root(path: str | os.PathLike[str]) -> Path | None:
    """The folder holding ``1/face_crop`` (``path`` itself, ``path/MSFD`` or ``path/MFSD``),
    or ``path``'s parent when ``path`` is the ``1`` folder. None when not an MFSD tree."""
    p = Path(path)
    for cand in (p, p / "MSFD", p / "MFSD"):
        if (cand / "1" / "face_crop").is_dir():
            return cand
    if (p / "face_crop").is_dir() and (p / "face_crop_segmentation").is_dir():
        return p.parent
    return None


def _require_mfsd(path: str | os.PathLike[str]) -> Path:
    root = find_mfsd_root(path)
    if root is None:
        raise DataError(f"{path}: not an MFSD release (no MSFD/1/face_crop folder)")
    return root


def mfsd_photo_id(name: str) -> str:
    """MFSD crops are ``<photo>_<face>.jpg``; faces of one photo share the photo id."""
    stem = Path(name).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def read_mfsd(root: str | os.PathLike[str]) -> ReadResult:
    """Face crops of an MFSD release paired with their masks by file name (stem as fallback).

    ``group`` is the photo id, so crops from one photo never straddle two splits.
    """
    base = _require_mfsd(root) / "1"
    crop_dir, seg_dir = base / "face_crop", base / "face_crop_segmentation"
    problems: list[Problem] = []
    if not seg_dir.is_dir():
        problems.append(
            Problem(str(seg_dir), "layout", "no face_crop_segmentation/ folder: no masks")
        )
    masks = list_images(seg_dir) if seg_dir.is_dir() else []
    by_name = {p.name: p for p in masks}
    by_stem: dict[str, Path] = {}
    for p in masks:
        by_stem.setdefault(p.stem, p)
    samples: list[Sample] = []
    used: set[Path] = set()
    for img in list_images(crop_dir):
        mask = by_name.get(img.name) or by_stem.get(img.stem)
        if mask is None:
            problems.append(Problem(str(img), "unpaired-image", "no mask with the same file name"))
        else:
            used.add(mask)
        samples.append(Sample(img, mask, img.name, mfsd_photo_id(img.name)))
    for mask in masks:
        if mask not in used:
            problems.append(Problem(str(mask), "unpaired-mask", "no face crop with the same name"))
    if not samples:
        problems.append(Problem(str(crop_dir), "layout", "no image files found"))
    return samples, problems


def _parse_bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "y", "t", "mask", "with_mask"):
        return True
    if t in ("0", "false", "no", "n", "f", "no_mask", "without_mask"):
        return False
    return None


def read_mfsd_boxes(root: str | os.PathLike[str]) -> tuple[dict[str, list[FaceBox]], list[Problem]]:
    """Per-photo face boxes from ``MSFD/1/dataset.csv`` (``filename,x1,y1,x2,y2,with_mask``).

    Keys are photo file names as found in ``MSFD/1/img`` (``.jpg`` is appended when the CSV omits
    the extension and that file exists). A header row is optional. Bad rows become problems.
    """
    base = _require_mfsd(root) / "1"
    csv_path, img_dir = base / "dataset.csv", base / "img"
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found")
    boxes: dict[str, list[FaceBox]] = {}
    problems: list[Problem] = []
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: cannot read CSV ({exc})") from exc
    rows = list(csv.reader(io.StringIO(text)))
    columns = {"filename": 0, "x1": 1, "y1": 2, "x2": 3, "y2": 4, "with_mask": 5}
    start = 0
    if rows and rows[0]:
        header = [c.strip().lower() for c in rows[0]]
        try:
            float(rows[0][1]) if len(rows[0]) > 1 else float("x")
        except ValueError:
            start = 1
            for col in list(columns):
                if col in header:
                    columns[col] = header.index(col)
            if "filename" not in header and "file" in header:
                columns["filename"] = header.index("file")
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{csv_path}:{lineno}"
        try:
            fname = row[columns["filename"]].strip()
            coords = [float(row[columns[c]]) for c in ("x1", "y1", "x2", "y2")]
        except (IndexError, ValueError):
            problems.append(
                Problem(where, "csv", "bad row (expected filename,x1,y1,x2,y2,with_mask)")
            )
            continue
        with_mask: bool | None = None
        wi = columns["with_mask"]
        if wi < len(row) and row[wi].strip():
            with_mask = _parse_bool(row[wi])
            if with_mask is None:
                problems.append(
                    Problem(where, "csv", f"with_mask value {row[wi]!r} is not 0/1", "warning")
                )
        x1, y1, x2, y2 = coords
        if x2 <= x1 or y2 <= y1:
            problems.append(Problem(where, "csv", f"empty box {coords} for {fname}"))
            continue
        key = fname
        if not Path(fname).suffix and (img_dir / f"{fname}.jpg").is_file():
            key = f"{fname}.jpg"
        boxes.setdefault(key, []).append(FaceBox(x1, y1, x2, y2, with_mask))
    if img_dir.is_dir():
        for key in boxes:
            if not (img_dir / key).is_file():
                problems.append(
                    Problem(
                        str(img_dir / key), "missing-photo", "listed in dataset.csv but missing"
                    )
                )
    else:
        problems.append(Problem(str(img_dir), "layout", "no img/ folder", "warning"))
    return boxes, problems


# --------------------------------------------------------------------------------------- LabelMe
def load_labelme_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a LabelMe json; DataError naming the file when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(f"{p}: not a LabelMe file (no 'shapes' list)")
    return data


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"{where}: bad base64 data ({exc})") from exc


def labelme_image_source(json_path: Path, data: dict[str, Any]) -> Path | None:
    """The image file a LabelMe json refers to (``imagePath`` relative to the json, else a file with
    the json's stem), the json itself when only ``imageData`` is embedded, or None."""
    rel = data.get("imagePath")
    if isinstance(rel, str) and rel.strip():
        cand = (json_path.parent / rel.replace("\\", "/")).resolve()
        if cand.is_file():
            return cand
        cand = json_path.parent / Path(rel.replace("\\", "/")).name
        if cand.is_file():
            return cand
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            cand = json_path.with_suffix(e)
            if cand.is_file():
                return cand
    if isinstance(data.get("imageData"), str) and data["imageData"]:
        return json_path
    return None


def _label_matches(label: Any, labels: Sequence[str]) -> bool:
    if "*" in labels:
        return True
    return isinstance(label, str) and label.strip().lower() in {x.lower() for x in labels}


def rasterize_labelme(
    data: dict[str, Any],
    labels: Sequence[str] = DEFAULT_LABELME_LABELS,
    size: tuple[int, int] | None = None,
    where: str = "<labelme>",
) -> tuple[np.ndarray, list[str]]:
    """Rasterise the shapes whose label is in ``labels`` (case-insensitive; ``"*"`` = any) into a
    ``uint8`` {0, 1} mask of ``size=(height, width)`` (default: imageHeight/imageWidth).

    Polygons, rectangles and circles are filled with their outline included (the LabelMe tool's own
    convention, PIL ImageDraw); ``mask`` shapes (LabelMe >= 5.3) are pasted at their box. Lines and
    points have no area and are skipped. Returns the mask and a list of notes about skipped shapes.
    """
    if size is None:
        h, w = data.get("imageHeight"), data.get("imageWidth")
        if not isinstance(h, int) or not isinstance(w, int) or h <= 0 or w <= 0:
            raise DataError(f"{where}: LabelMe file has no valid imageHeight/imageWidth")
        size = (h, w)
    height, width = size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    pasted = np.zeros((height, width), dtype=bool)
    notes: list[str] = []
    for i, shape in enumerate(data.get("shapes", [])):
        if not isinstance(shape, dict) or not _label_matches(shape.get("label"), labels):
            continue
        kind = shape.get("shape_type") or "polygon"
        try:
            pts = [(float(x), float(y)) for x, y in shape.get("points", [])]
        except (TypeError, ValueError):
            notes.append(f"shape {i} ({kind}) has malformed points; skipped")
            continue
        if kind == "polygon":
            if len(pts) < 3:
                notes.append(f"shape {i} (polygon) has {len(pts)} points; skipped")
                continue
            draw.polygon(pts, fill=1, outline=1)
        elif kind == "rectangle":
            if len(pts) != 2:
                notes.append(f"shape {i} (rectangle) needs 2 points; skipped")
                continue
            (xa, ya), (xb, yb) = pts
            draw.rectangle([min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)], fill=1, outline=1)
        elif kind == "circle":
            if len(pts) != 2:
                notes.append(f"shape {i} (circle) needs 2 points; skipped")
                continue
            (cx, cy), (px, py) = pts
            r = float(np.hypot(cx - px, cy - py))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1, outline=1)
        elif kind == "mask":
            raw = shape.get("mask")
            if not isinstance(raw, str) or len(pts) < 1:
                notes.append(f"shape {i} (mask) has no mask data; skipped")
                continue
            try:
                sub = np.asarray(Image.open(io.BytesIO(_b64(raw, where))).convert("L")) > 0
            except (OSError, DataError):
                notes.append(f"shape {i} (mask) has undecodable mask data; skipped")
                continue
            x0, y0 = int(pts[0][0]), int(pts[0][1])
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + sub.shape[0], height), min(x0 + sub.shape[1], width)
            if ye > ys and xe > xs:
                pasted[ys:ye, xs:xe] |= sub[ys - y0 : ye - y0, xs - x0 : xe - x0]
        else:
            notes.append(f"shape {i} ({kind}) has no area; skipped")
    mask = (np.asarray(canvas, dtype=np.uint8) > 0) | pasted
    return mask.astype(np.uint8), notes


def read_labelme(
    folder: str | os.PathLike[str],
    labels: Sequence[str] = DEFAULT_LABELME_LABELS,
    recursive: bool = False,
) -> ReadResult:
    """Every LabelMe ``*.json`` in ``folder``; masks are rasterised on load from ``labels``."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    pattern = root.rglob("*.json") if recursive else root.glob("*.json")
    samples: list[Sample] = []
    problems: list[Problem] = []
    lab = tuple(labels)
    for jp in sorted(pattern):
        try:
            data = load_labelme_json(jp)
        except DataError as exc:
            problems.append(Problem(str(jp), "labelme", str(exc).split(": ", 1)[-1]))
            continue
        img = labelme_image_source(jp, data)
        if img is None:
            problems.append(
                Problem(
                    str(jp),
                    "unpaired-mask",
                    f"image {data.get('imagePath')!r} not found and no imageData embedded",
                )
            )
            continue
        found = [s.get("label") for s in data["shapes"] if isinstance(s, dict)]
        if not any(_label_matches(x, lab) for x in found):
            problems.append(
                Problem(
                    str(jp),
                    "labelme",
                    f"no shape labelled {'/'.join(lab)} (labels found:"
                    f" {', '.join(sorted({str(x) for x in found})) or 'none'}); mask is empty",
                    "warning",
                )
            )
        rel = jp.relative_to(root).with_suffix("")
        ip = data.get("imagePath")
        suffix = Path(ip).suffix if isinstance(ip, str) and Path(ip).suffix else img.suffix
        if img == jp:
            suffix = suffix if suffix.lower() in IMAGE_EXTENSIONS else ".png"
        samples.append(Sample(img, jp, _posix(rel) + suffix.lower(), None, lab))
    if not samples and not problems:
        problems.append(Problem(str(root), "layout", "no LabelMe *.json files found"))
    samples = _check_unique_names(samples, problems)
    return _auto_groups(samples), problems


def labelme_embedded_bytes(json_path: Path) -> bytes:
    """The image bytes embedded in a LabelMe json (``imageData``)."""
    data = load_labelme_json(json_path)
    raw = data.get("imageData")
    if not isinstance(raw, str) or not raw:
        raise DataError(f"{json_path}: no imageData embedded")
    return _b64(raw, str(json_path))


# ---------------------------------------------------------------------------------- loading
def load_image(sample: Sample) -> np.ndarray:
    """Decode a sample's image (``uint8`` HxWx3 RGB)."""
    if sample.image_path.suffix.lower() == ".json":
        return read_image_bytes(labelme_embedded_bytes(sample.image_path), str(sample.image_path))
    return read_image(sample.image_path)


def _image_size(sample: Sample) -> tuple[int, int]:
    """(height, width) of a sample's image."""
    if sample.image_path.suffix.lower() == ".json":
        return load_image(sample).shape[:2]
    _, (w, h) = image_mode(sample.image_path)
    return h, w


def load_mask_raw(sample: Sample) -> np.ndarray:
    """A sample's mask before thresholding (``uint8`` HxW, 0..255; LabelMe masks are 0/255)."""
    if sample.mask_path is None:
        raise DataError(f"{sample.image_path}: no mask for this image")
    if sample.mask_path.suffix.lower() == ".json":
        data = load_labelme_json(sample.mask_path)
        h, w = data.get("imageHeight"), data.get("imageWidth")
        size = (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None
        if size is None:
            size = _image_size(sample)
        mask, _ = rasterize_labelme(
            data, sample.labels or DEFAULT_LABELME_LABELS, size, str(sample.mask_path)
        )
        return mask * np.uint8(255)
    return read_mask_raw(sample.mask_path)


def load_mask(sample: Sample, threshold: int = 127) -> np.ndarray:
    """A sample's mask as ``uint8`` HxW {0, 1}."""
    return binarize_mask(load_mask_raw(sample), threshold)


# ------------------------------------------------------------------------------- auto detection
def _looks_labelme(folder: Path) -> bool:
    for jp in sorted(folder.glob("*.json"))[:5]:
        try:
            load_labelme_json(jp)
            return True
        except DataError:
            continue
    return False


def detect_kind(path: str | os.PathLike[str]) -> DatasetKind:
    """Guess the layout of ``path``: ``mfsd``, ``folders`` or ``labelme`` (DataError if none)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: folder not found")
    if not p.is_dir():
        raise DataError(f"{p}: not a folder")
    if find_mfsd_root(p) is not None:
        return "mfsd"
    if (p / "images").is_dir():
        return "folders"
    if _looks_labelme(p):
        return "labelme"
    nested = sorted(c.name for c in p.iterdir() if c.is_dir() and (c / "images").is_dir())
    hint = (
        f"; found {', '.join(n + '/' for n in nested)} with images/ inside: point at one of them"
        if nested
        else ""
    )
    raise DataError(
        f"{p}: cannot detect the dataset layout (expected images/ + masks/, MSFD/1/face_crop,"
        f" or LabelMe *.json){hint}"
    )


def open_dataset(
    path: str | os.PathLike[str],
    kind: str = "auto",
    recursive: bool = False,
    labels: Sequence[str] = DEFAULT_LABELME_LABELS,
) -> ReadResult:
    """Read a dataset of any supported layout; ``kind`` is ``auto``, ``folders``, ``mfsd`` or
    ``labelme``."""
    k = detect_kind(path) if kind == "auto" else kind
    if k == "folders":
        return read_folders(path, recursive=recursive)
    if k == "mfsd":
        return read_mfsd(path)
    if k == "labelme":
        return read_labelme(path, labels=labels, recursive=recursive)
    raise DataError(f"{path}: unknown dataset kind {kind!r} (auto, folders, mfsd, labelme)")


def paired(samples: Iterable[Sample]) -> list[Sample]:
    """Only the samples that have a mask."""
    return [s for s in samples if s.mask_path is not None]


__all__ = [
    "DEFAULT_LABELME_LABELS",
    "FaceBox",
    "ImageReadError",
    "Problem",
    "Sample",
    "detect_kind",
    "find_mfsd_root",
    "is_image_file",
    "labelme_embedded_bytes",
    "labelme_image_source",
    "load_image",
    "load_labelme_json",
    "load_mask",
    "load_mask_raw",
    "mfsd_photo_id",
    "open_dataset",
    "paired",
    "rasterize_labelme",
    "read_folders",
    "read_labelme",
    "read_mfsd",
    "read_mfsd_boxes",
]
