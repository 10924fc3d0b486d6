"""Scene benchmark: synthetic photo-like scenes with exact ground truth for the full-photo pipeline.

A *scene* is a real background patch (from ``rmfd-real-masked`` photos, away from every labelled
face and ignore region) with 0 to ~8 face crops pasted on it with a feathered alpha: masked faces
(labelled crops: image + mask) and bare faces (unmasked crops, empty masks) as distractors. The
ground-truth mask is each masked crop's mask where that crop is pasted with alpha > 0.5, so it is
exact. :func:`build_scenes` writes a scene set, :func:`evaluate_scenes` scores a
``segment(image_rgb) -> PhotoResult`` function on it, :func:`evaluate_crops` scores it on labelled
face crops (the paper's setting), :func:`draw_overlay` draws a prediction against the ground truth.

Metrics (docs/faces.md, "Scene benchmark"): per-image IoU over the whole photo (mean over images;
empty ground truth and empty prediction count as IoU 1, as in docs/metrics.md), masked-face recall
with the matching rule of :mod:`abanet.faces.evaluation`, false faces per scene, share of bare
faces painted, share of predicted pixels outside the masked faces, photos with mask far from every
face, photos per second.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abanet.data.io import (
    list_images,
    read_image,
    read_mask,
    write_bytes_atomic,
    write_image_atomic,
)
from abanet.errors import DataError
from abanet.faces.evaluation import match_detections

Box = tuple[float, float, float, float]
SegmentFn = Callable[[np.ndarray], Any]  # image RGB uint8 -> PhotoResult (.mask, .faces[*].box)

SCENES_VERSION = 1
#: face box of a FFHQ-aligned portrait (maskedface-net-seg500), as fractions of width / height
PORTRAIT_FACE_BOX: Box = (0.22, 0.32, 0.78, 0.92)
#: the part of a portrait that is pasted (head, hair, a little neck)
PORTRAIT_PASTE_BOX: Box = (0.06, 0.10, 0.94, 1.0)
#: bare-face crops kept as distractors: aspect (w/h) in this range and long side at most 400 px
UNMASKED_ASPECT = (0.8, 1.25)
UNMASKED_MAX_SIDE = 400
#: faces shorter than this (after clipping) do not count (``match_detections``' min height)
MIN_FACE_HEIGHT = 16.0
#: recall is split at this face box height (pixels)
SMALL_FACE = 64.0


# ------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class FaceSource:
    """One face to paste: image, mask (None for a bare face), and the face / paste boxes.

    ``kind`` is ``crop`` (the whole image is the face box: MFSD-style crops, bare-face crops) or
    ``portrait`` (FFHQ-aligned 512x512 portrait: :data:`PORTRAIT_FACE_BOX`).
    """

    image_path: Path
    mask_path: Path | None
    kind: str
    name: str  # "<set>/<file>" written to scenes.json

    @property
    def masked(self) -> bool:
        return self.mask_path is not None


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    from abanet.data.readers import open_dataset, paired

    if not folder.is_dir():
        raise DataError(f"{folder}: face source folder not found")
    samples, _ = open_dataset(folder)
    return [(s.image_path, s.mask_path) for s in paired(samples) if s.mask_path is not None]


def _set_name(root: Path) -> str:
    """``mfsd-dev``, or ``maskedface-net-seg500/test`` for a split folder."""
    generic = {"test", "train", "val", "valid", "dev"}
    return f"{root.resolve().parent.name}/{root.name}" if root.name in generic else root.name


def collect_sources(
    crops: Sequence[str | os.PathLike[str]] = (),
    portraits: Sequence[str | os.PathLike[str]] = (),
    unmasked: str | os.PathLike[str] | None = None,
    crop_names: Collection[str] | None = None,
) -> tuple[list[FaceSource], list[FaceSource]]:
    """(masked sources, bare sources) from labelled crop folders, portrait folders and a folder
    of bare faces (``images/`` or flat; filtered by :data:`UNMASKED_ASPECT` and size).

    ``crop_names``: keep only the crops whose file name is listed (e.g. one cross-validation
    fold's test crops, so that a model of that fold never trained on the scenes' faces).
    """
    masked: list[FaceSource] = []
    for kind, folders in (("crop", crops), ("portrait", portraits)):
        for folder in folders:
            root = Path(folder)
            for img, mask in _pairs(root):
                if kind == "crop" and crop_names is not None and img.name not in crop_names:
                    continue
                masked.append(
                    FaceSource(img, mask, kind, f"{_set_name(root)}/{img.relative_to(root)}")
                )
    bare: list[FaceSource] = []
    if unmasked is not None:
        from abanet.data.io import image_mode

        root = Path(unmasked)
        folder = root / "images" if (root / "images").is_dir() else root
        if not folder.is_dir():
            raise DataError(f"{root}: bare-face folder not found")
        for img in list_images(folder):
            _, (w, h) = image_mode(img)
            if UNMASKED_ASPECT[0] <= w / h <= UNMASKED_ASPECT[1] and max(w, h) <= UNMASKED_MAX_SIDE:
                name = f"{_set_name(root)}/{img.relative_to(root)}"
                bare.append(FaceSource(img, None, "crop", name))
    return masked, bare


class _Loader:
    """Decoded face sources, cached: (image, mask 0/1 float32, face box, paste box) in pixels."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[np.ndarray, np.ndarray, Box, Box]] = {}

    def load(self, src: FaceSource) -> tuple[np.ndarray, np.ndarray, Box, Box]:
        if src.image_path not in self._cache:
            image = read_image(src.image_path)
            h, w = image.shape[:2]
            if src.mask_path is None:
                mask = np.zeros((h, w), np.float32)
            else:
                mask = read_mask(src.mask_path).astype(np.float32)
                if mask.shape != (h, w):
                    raise DataError(
                        f"{src.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                        f"its image is {w}x{h}"
                    )
            if src.kind == "portrait":
                face = _scale_box(PORTRAIT_FACE_BOX, w, h)
                paste = _scale_box(PORTRAIT_PASTE_BOX, w, h)
            else:
                face = paste = (0.0, 0.0, float(w), float(h))
            self._cache[src.image_path] = (image, mask, face, paste)
        return self._cache[src.image_path]


def _scale_box(frac: Box, w: int, h: int) -> Box:
    return (frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h)


# -------------------------------------------------------------------------------- backgrounds
class BackgroundBank:
    """Background patches from labelled photos, away from every face and ignore region.

    ``labels`` is ``scripts/rmfd_face_labels.json`` (``images: {rel: {size, faces, ignore}}``).
    Each box is expanded by ``expand`` box widths sideways and above and ``expand_below`` box
    heights below (hair, neck, body); a patch may not touch any expanded box.
    ``every=(n, k)`` keeps the photos whose index in the sorted label list is ``k`` modulo ``n``:
    the default ``(2, 0)`` leaves the odd ones to the training negatives
    (``scripts/default_model/make_negatives.py``); ``None`` keeps all.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        labels: str | os.PathLike[str] | None,
        expand: float = 0.75,
        expand_below: float = 1.5,
        min_side: int = 64,
        every: tuple[int, int] | None = (2, 0),
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.expand, self.expand_below, self.min_side = expand, expand_below, min_side
        self.entries: list[tuple[str, list[Box]]] = []
        self._boxes: dict[str, list[Box]] = {}
        self._cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        if self.root is None or labels is None:
            return
        try:
            data = json.loads(Path(labels).read_text())
            images = data["images"]
            for i, rel in enumerate(sorted(images)):
                if every is not None and i % every[0] != every[1]:
                    continue
                entry = images[rel]
                boxes = [tuple(map(float, b)) for b in [*entry["faces"], *entry["ignore"]]]
                self.entries.append((rel, boxes))  # type: ignore[arg-type]
                self._boxes[rel] = boxes  # type: ignore[assignment]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{labels}: cannot read face labels ({exc})") from exc

    def _photo(self, rel: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(image, integral image of the blocked map) or None when the file does not fit."""
        if rel not in self._cache:
            assert self.root is not None
            path = self.root / rel
            boxes = self._boxes[rel]
            try:
                image = read_image(path)
            except DataError:
                self._cache[rel] = None
                return None
            h, w = image.shape[:2]
            blocked = np.zeros((h + 1, w + 1), np.int32)
            for x1, y1, x2, y2 in boxes:
                bw, bh = x2 - x1, y2 - y1
                ex1 = max(0, math.floor(x1 - self.expand * bw))
                ex2 = min(w, math.ceil(x2 + self.expand * bw))
                ey1 = max(0, math.floor(y1 - self.expand * bh))
                ey2 = min(h, math.ceil(y2 + self.expand_below * bh))
                blocked[ey1 + 1 : ey2 + 1, ex1 + 1 : ex2 + 1] = 1
            self._cache[rel] = (image, blocked.cumsum(0).cumsum(1))
        return self._cache[rel]

    def sample(
        self, rng: np.random.Generator, width: int, height: int, tries: int | None = None
    ) -> tuple[np.ndarray, str]:
        """A ``height x width`` background and where it came from (``texture`` as fallback).

        Photos are tried in random order (``tries`` of them, default all); in each, the largest
        free rectangle of the scene's aspect among a few scales and random positions is taken.
        """
        import cv2

        aspect = width / height
        order = rng.permutation(len(self.entries)) if self.entries else []
        for k in list(order)[:tries]:
            rel = self.entries[int(k)][0]
            photo = self._photo(rel)
            if photo is None:
                continue
            image, integral = photo
            ph, pw = image.shape[:2]
            h_max = min(ph, pw / aspect)
            for frac in (1.0, 0.8, 0.64, 0.5, 0.4, 0.32):
                rh = int(h_max * frac)
                rw = int(rh * aspect)
                if min(rw, rh) < self.min_side:
                    break
                for _ in range(10):
                    x = int(rng.integers(0, pw - rw + 1))
                    y = int(rng.integers(0, ph - rh + 1))
                    inside = (
                        integral[y + rh, x + rw]
                        - integral[y, x + rw]
                        - integral[y + rh, x]
                        + integral[y, x]
                    )
                    if inside == 0:
                        patch = image[y : y + rh, x : x + rw]
                        if rng.random() < 0.5:
                            patch = patch[:, ::-1]
                        interp = cv2.INTER_AREA if rw > width else cv2.INTER_CUBIC
                        out = cv2.resize(
                            np.ascontiguousarray(patch), (width, height), None, 0, 0, interp
                        )
                        return out, f"{rel}@{x},{y},{x + rw},{y + rh}"
        return texture(rng, width, height), "texture"


def texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A plain colour with a soft gradient and noise (fallback background)."""
    base = rng.uniform(40, 215, 3)
    gy = np.linspace(-1, 1, height, dtype=np.float32)[:, None, None]
    gx = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    tilt = rng.uniform(-30, 30, (2, 3)).astype(np.float32)
    noise = rng.normal(0, rng.uniform(2, 12), (height, width, 3)).astype(np.float32)
    out = base.astype(np.float32) + gy * tilt[0] + gx * tilt[1] + noise
    return np.clip(out, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ pasting
def soft_alpha(width: int, height: int, power: float = 3.0, feather: float = 0.15) -> np.ndarray:
    """Feathered superellipse alpha (``|u|^p + |v|^p <= 1``), 1 inside, 0 at the rectangle edge.

    ``power`` 2 is an ellipse; larger is squarer (but never a hard square edge).
    """
    u = np.abs((np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1)[None, :]
    v = np.abs((np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1)[:, None]
    r = (u**power + v**power) ** (1.0 / power)
    t = np.clip((1.0 - r) / feather, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep


@dataclass
class _Placed:
    source: FaceSource
    paste: tuple[int, int, int, int]  # integer paste rectangle (may reach outside)
    face: Box  # unclipped face box in scene pixels
    power: float

    def __post_init__(self) -> None:
        self.power = round(self.power, 4)  # as written to scenes.json, so it can be replayed


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _expand(b: Sequence[float], f: float) -> Box:
    w, h = b[2] - b[0], b[3] - b[1]
    return (b[0] - f * w, b[1] - f * h, b[2] + f * w, b[3] + f * h)


def clip_face_box(box: Sequence[float], width: int, height: int) -> Box:
    """A face box clipped to the image ``[0, width] x [0, height]``."""
    return (
        max(0.0, float(box[0])),
        max(0.0, float(box[1])),
        min(float(width), float(box[2])),
        min(float(height), float(box[3])),
    )


def _place(
    rng: np.random.Generator,
    loader: _Loader,
    src: FaceSource,
    width: int,
    height: int,
    placed: list[_Placed],
    size_range: tuple[float, float],
    cut_prob: float,
) -> _Placed | None:
    _, _, face, paste = loader.load(src)
    fw, fh = face[2] - face[0], face[3] - face[1]
    lo, hi = size_range
    for attempt in range(40):
        top = hi * 0.85 ** (attempt // 4)
        target = math.exp(rng.uniform(math.log(lo), math.log(max(lo, top))))
        s = target / fh
        pw = max(2, round((paste[2] - paste[0]) * s))
        ph = max(2, round((paste[3] - paste[1]) * s))
        sx, sy = pw / (paste[2] - paste[0]), ph / (paste[3] - paste[1])
        off = ((face[0] - paste[0]) * sx, (face[1] - paste[1]) * sy)
        bw, bh = fw * sx, fh * sy
        if rng.random() < cut_prob:  # face box centre anywhere: may be cut by the border
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            fx, fy = cx - bw / 2, cy - bh / 2
        else:
            if bw > width or bh > height:
                continue
            fx, fy = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        x0, y0 = round(fx - off[0]), round(fy - off[1])
        fx, fy = x0 + off[0], y0 + off[1]
        box = (fx, fy, fx + bw, fy + bh)
        vis = clip_face_box(box, width, height)
        if _area(vis) < 0.35 * bw * bh:
            continue
        rect = (x0, y0, x0 + pw, y0 + ph)
        ok = all(
            _intersection(_expand(box, 0.1), p.face) == 0
            and _intersection(rect, p.face) <= 0.1 * _area(p.face)
            for p in placed
        )
        if ok:
            return _Placed(src, rect, box, float(rng.uniform(2.0, 4.0)))
    return None


def _paste(loader: _Loader, canvas: np.ndarray, gt: np.ndarray, item: _Placed) -> None:
    import cv2

    image, mask, _, paste = loader.load(item.source)
    x0, y0, x1, y1 = item.paste
    pw, ph = x1 - x0, y1 - y0
    px1, py1, px2, py2 = (round(v) for v in paste)
    src = image[py1:py2, px1:px2]
    msrc = mask[py1:py2, px1:px2]
    interp = cv2.INTER_AREA if pw < src.shape[1] else cv2.INTER_CUBIC
    src = cv2.resize(src, (pw, ph), None, 0, 0, interp)
    msrc = cv2.resize(msrc, (pw, ph), None, 0, 0, cv2.INTER_LINEAR) >= 0.5
    alpha = soft_alpha(pw, ph, item.power)
    h, w = gt.shape
    cx1, cy1, cx2, cy2 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx2 <= cx1 or cy2 <= cy1:
        return
    sl = (slice(cy1 - y0, cy2 - y0), slice(cx1 - x0, cx2 - x0))
    a = alpha[sl][..., None]
    region = canvas[cy1:cy2, cx1:cx2]
    region[...] = region * (1 - a) + src[sl].astype(np.float32) * a
    on = alpha[sl] > 0.5
    gt[cy1:cy2, cx1:cx2][on] = msrc[sl][on]


# ------------------------------------------------------------------------------------ building
@dataclass(frozen=True)
class SceneParams:
    """Distribution of the scenes (see docs/faces.md)."""

    small_share: float = 0.35  # scenes with long side 200..320 (RMFD-like)
    long_side: tuple[int, int] = (320, 1280)
    aspect: tuple[float, float] = (0.6, 1.67)  # width / height
    empty_share: float = 0.08  # scenes with no face at all
    bare_only_share: float = 0.08  # scenes with bare faces only
    max_faces: int = 8
    bare_prob: float = 0.2  # a face in a mixed scene is bare with this probability
    min_face: float = 24.0  # face box height, pixels
    max_face_frac: float = 0.6  # of the scene's short side
    cut_prob: float = 0.15  # faces that may be cut by the border
    jpeg_quality: int = 92


def _scene_spec(rng: np.random.Generator, p: SceneParams) -> tuple[int, int, int, int]:
    """(width, height, masked faces, bare faces)."""
    if rng.random() < p.small_share:
        long = int(rng.integers(200, 321))
    else:
        long = round(math.exp(rng.uniform(math.log(p.long_side[0]), math.log(p.long_side[1]))))
    aspect = math.exp(rng.uniform(math.log(p.aspect[0]), math.log(p.aspect[1])))
    w, h = (long, round(long / aspect)) if aspect >= 1 else (round(long * aspect), long)
    u = rng.random()
    if u < p.empty_share:
        return w, h, 0, 0
    if u < p.empty_share + p.bare_only_share:
        return w, h, 0, int(rng.integers(1, 5))
    weights = np.array([0.25, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05, 0.05][: p.max_faces])
    n = int(rng.choice(np.arange(1, len(weights) + 1), p=weights / weights.sum()))
    bare = int((rng.random(n) < p.bare_prob).sum())
    if bare == n:
        bare = n - 1  # a mixed scene keeps at least one masked face
    return w, h, n - bare, bare


def build_scene(
    rng: np.random.Generator,
    masked: Sequence[FaceSource],
    bare: Sequence[FaceSource],
    backgrounds: BackgroundBank,
    params: SceneParams = SceneParams(),
    loader: _Loader | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One scene: (image RGB uint8, ground truth 0/1 uint8, record without a name)."""
    loader = loader or _Loader()
    w, h, n_masked, n_bare = _scene_spec(rng, params)
    if n_masked and not masked:
        n_bare, n_masked = n_bare + n_masked, 0
    if n_bare and not bare:
        n_bare = 0
    background, bg_name = backgrounds.sample(rng, w, h)
    canvas = background.astype(np.float32)
    gt = np.zeros((h, w), np.uint8)
    n = n_masked + n_bare
    hi = max(params.min_face, params.max_face_frac * min(w, h) / (1 + 0.25 * max(0, n - 1)))
    kinds = [True] * n_masked + [False] * n_bare
    rng.shuffle(kinds)
    placed: list[_Placed] = []
    for is_masked in kinds:
        pool = masked if is_masked else bare
        src = pool[int(rng.integers(len(pool)))]
        item = _place(rng, loader, src, w, h, placed, (params.min_face, hi), params.cut_prob)
        if item is not None:
            placed.append(item)
    for item in placed:
        _paste(loader, canvas, gt, item)
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    faces = []
    for item in placed:
        box = clip_face_box(item.face, w, h)
        faces.append(
            {
                "box": [round(v, 1) for v in box],
                "full_box": [round(v, 1) for v in item.face],
                "masked": item.source.masked,
                "cut": box != tuple(item.face),
                "source": item.source.name,
                "paste": list(item.paste),
                "alpha_power": round(item.power, 4),
            }
        )
    return image, gt, {"width": w, "height": h, "background": bg_name, "faces": faces}


def build_scenes(
    out_dir: str | os.PathLike[str],
    masked: Sequence[FaceSource],
    bare: Sequence[FaceSource],
    backgrounds: BackgroundBank,
    n: int = 200,
    seed: int = 0,
    params: SceneParams = SceneParams(),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``n`` scenes to ``out_dir``: ``images/<name>.jpg``, ``masks/<name>.png`` (0/255)
    and ``scenes.json``. Scene ``i`` depends only on ``(seed, i)`` and the sorted sources."""
    out = Path(out_dir)
    index = out / "scenes.json"
    if index.exists() and not overwrite:
        raise DataError(f"{index}: file exists (pass overwrite=True / --overwrite to replace it)")
    if not masked and not bare:
        raise DataError(f"{out}: no face sources to paste")
    loader = _Loader()
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image, gt, rec = build_scene(rng, masked, bare, backgrounds, params, loader)
        name = f"scene_{i:04d}"
        buf = io.BytesIO()
        from PIL import Image

        Image.fromarray(image).save(buf, format="JPEG", quality=params.jpeg_quality)
        write_bytes_atomic(out / "images" / f"{name}.jpg", buf.getvalue(), overwrite=overwrite)
        write_image_atomic(out / "masks" / f"{name}.png", gt * np.uint8(255), overwrite=overwrite)
        records.append({"name": name, **rec})
        if progress is not None:
            progress(i + 1, n)
    data = {
        "version": SCENES_VERSION,
        "seed": seed,
        "params": {k: v for k, v in vars(params).items()},
        "sources": {
            "masked": len(masked),
            "bare": len(bare),
            "backgrounds": len(backgrounds.entries),
        },
        "scenes": records,
    }
    text = json.dumps(data, indent=1) + "\n"
    write_bytes_atomic(index, text.encode(), overwrite=overwrite)
    return data


def load_scenes(scenes_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The scene records of a scene set (``scenes.json``), checked."""
    index = Path(scenes_dir) / "scenes.json"
    try:
        data = json.loads(index.read_text())
        scenes = data["scenes"]
        for s in scenes:
            s["name"], s["width"], s["height"]
            for f in s["faces"]:
                if len(f["box"]) != 4 or not isinstance(f["masked"], bool):
                    raise ValueError(f"scene {s['name']}: bad face record")
    except FileNotFoundError as exc:
        raise DataError(f"{index}: not found (build the scenes first)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{index}: not a scene index ({exc})") from exc
    return scenes


# ---------------------------------------------------------------------------------- evaluation
def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Per-image IoU; empty ground truth and empty prediction -> 1 (docs/metrics.md)."""
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else inter / union


def _box_mask(shape: tuple[int, int], boxes: Sequence[Sequence[float]]) -> np.ndarray:
    out = np.zeros(shape, bool)
    h, w = shape
    for b in boxes:
        x1, y1 = max(0, math.floor(b[0])), max(0, math.floor(b[1]))
        x2, y2 = min(w, math.ceil(b[2])), min(h, math.ceil(b[3]))
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = True
    return out


def _grow(b: Sequence[float], margin: float) -> Box:
    """``b`` grown by ``margin`` x its longer side on every side."""
    m = margin * max(b[2] - b[0], b[3] - b[1])
    return (b[0] - m, b[1] - m, b[2] + m, b[3] + m)


def score_scene(
    pred: np.ndarray,
    gt: np.ndarray,
    faces: Sequence[dict[str, Any]],
    detections: Sequence[Sequence[float]],
    scores: Sequence[float] | None = None,
    box_margin: float = 0.1,
    far_margin: float = 0.5,
    far_fraction: float = 0.002,
    painted_fraction: float = 0.01,
) -> dict[str, Any]:
    """Scores of one scene (definitions in the module docstring and docs/faces.md).

    ``faces`` are scene records (``box``, ``masked``); ``detections`` are face boxes.
    """
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise DataError(f"prediction is {pred.shape}, ground truth {gt.shape}")
    boxes = [tuple(map(float, f["box"])) for f in faces]
    match = match_detections(boxes, list(detections), scores, min_face_height=MIN_FACE_HEIGHT)
    counted = [i for i, b in enumerate(boxes) if b[3] - b[1] >= MIN_FACE_HEIGHT]
    hit_faces = {counted[k] for k in match.hits}
    masked_idx = [i for i in counted if faces[i]["masked"]]
    small = [i for i in masked_idx if boxes[i][3] - boxes[i][1] < SMALL_FACE]
    large = [i for i in masked_idx if boxes[i][3] - boxes[i][1] >= SMALL_FACE]
    painted = 0
    bare_idx = [i for i, f in enumerate(faces) if not f["masked"]]
    for i in bare_idx:
        area = max(1.0, _area(boxes[i]))
        if np.count_nonzero(pred & _box_mask(pred.shape, [boxes[i]])) > painted_fraction * area:
            painted += 1
    masked_zone = _box_mask(
        pred.shape, [_grow(boxes[i], box_margin) for i, f in enumerate(faces) if f["masked"]]
    )
    near = _box_mask(pred.shape, [_grow(b, far_margin) for b in boxes])
    pred_px = int(np.count_nonzero(pred))
    far_px = int(np.count_nonzero(pred & ~near))
    return {
        "iou": _iou(pred, gt),
        "gt_pixels": int(np.count_nonzero(gt)),
        "pred_pixels": pred_px,
        "faces_masked": len(masked_idx),
        "faces_bare": len(bare_idx),
        "detections": len(detections),
        "hits_masked": sum(i in hit_faces for i in masked_idx),
        "hits_masked_small": sum(i in hit_faces for i in small),
        "faces_masked_small": len(small),
        "hits_masked_large": sum(i in hit_faces for i in large),
        "faces_masked_large": len(large),
        "false_faces": match.fp,
        "bare_painted": painted,
        "outside_pixels": int(np.count_nonzero(pred & ~masked_zone)),
        "far_pixels": far_px,
        "far_background": far_px > far_fraction * pred.size,
        # per masked face that counts: (source set, hit), for recall by source set
        "masked_by_set": [(_source_set(faces[i]), i in hit_faces) for i in masked_idx],
    }


def _source_set(face: dict[str, Any]) -> str:
    """The source set of a face record: its ``source`` up to the ``images/`` folder."""
    src = str(face.get("source", ""))
    return src.split("/images/")[0] if "/images/" in src else src.split("/")[0]


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def summarize(rows: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Report dict from per-scene rows (see :func:`evaluate_scenes`)."""

    def total(key: str) -> float:
        return float(sum(r[key] for r in rows))

    n = len(rows)
    with_gt = [r["iou"] for r in rows if r["gt_pixels"] > 0]
    without = [r["iou"] for r in rows if r["gt_pixels"] == 0]
    return {
        "scenes": n,
        "iou": _ratio(sum(r["iou"] for r in rows), n),
        "iou_scenes_with_mask": _ratio(sum(with_gt), len(with_gt)),
        "clean_scenes_without_mask": _ratio(sum(without), len(without)),
        "scenes_without_mask": len(without),
        "masked_faces": int(total("faces_masked")),
        "masked_recall": _ratio(total("hits_masked"), total("faces_masked")),
        "masked_recall_small": _ratio(total("hits_masked_small"), total("faces_masked_small")),
        "masked_recall_large": _ratio(total("hits_masked_large"), total("faces_masked_large")),
        "masked_faces_small": int(total("faces_masked_small")),
        "masked_faces_large": int(total("faces_masked_large")),
        "false_faces_per_scene": _ratio(total("false_faces"), n),
        "bare_faces": int(total("faces_bare")),
        "bare_painted": _ratio(total("bare_painted"), total("faces_bare")),
        "outside_share": _ratio(total("outside_pixels"), total("pred_pixels")),
        "far_background_photos": int(sum(bool(r["far_background"]) for r in rows)),
        "whole_image_photos": int(sum(bool(r.get("whole_image")) for r in rows)),
        "masked_recall_by_set": _recall_by_set(rows),
        "seconds": seconds,
        "photos_per_s": _ratio(n, seconds),
    }


def _recall_by_set(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    found: dict[str, list[int]] = {}
    for r in rows:
        for name, hit in r.get("masked_by_set", []):
            found.setdefault(name, []).append(int(hit))
    return {k: {"faces": len(v), "recall": sum(v) / len(v)} for k, v in sorted(found.items())}


CSV_COLUMNS = [
    "name",
    "width",
    "height",
    "faces_masked",
    "faces_bare",
    "detections",
    "hits_masked",
    "false_faces",
    "bare_painted",
    "iou",
    "gt_pixels",
    "pred_pixels",
    "outside_pixels",
    "far_pixels",
    "far_background",
    "whole_image",
    "seconds",
]


def evaluate_scenes(
    segment: SegmentFn,
    scenes_dir: str | os.PathLike[str],
    csv_path: str | os.PathLike[str] | None = None,
    overlay_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **score_kwargs: Any,
) -> dict[str, Any]:
    """Run ``segment`` on every scene and score it: the report of :func:`summarize`.

    ``segment(image_rgb)`` returns a result with ``.mask`` (HxW 0/1) and ``.faces`` (each with
    ``.box`` and optionally ``.score``); ``photos_per_s`` counts only the ``segment`` calls.
    ``csv_path`` gets one row per scene; ``overlay_dir`` one overlay PNG per scene.
    """
    root = Path(scenes_dir)
    scenes = load_scenes(root)[:limit]
    rows: list[dict[str, Any]] = []
    seconds = 0.0
    for k, scene in enumerate(scenes):
        name = scene["name"]
        image = read_image(root / "images" / f"{name}.jpg")
        gt = read_mask(root / "masks" / f"{name}.png")
        if gt.shape != image.shape[:2]:
            raise DataError(f"{root / 'masks' / name}.png: mask size differs from its image")
        t0 = time.perf_counter()
        result = segment(image)
        dt = time.perf_counter() - t0
        seconds += dt
        # faces judged bare (``masked`` False) are not masked-face detections
        found = [f for f in result.faces if getattr(f, "masked", True)]
        dets = [tuple(map(float, f.box)) for f in found]
        scores = [float(getattr(f, "score", 0.0)) for f in found]
        mask = np.asarray(result.mask)
        if mask.shape != gt.shape:
            raise DataError(f"{name}: segment returned a {mask.shape} mask for a {gt.shape} image")
        row = {"name": name, "width": scene["width"], "height": scene["height"]}
        row.update(score_scene(mask, gt, scene["faces"], dets, scores, **score_kwargs))
        row["whole_image"] = bool(getattr(result, "whole_image", False))
        row["seconds"] = round(dt, 4)
        rows.append(row)
        if overlay_dir is not None:
            over = draw_overlay(image, gt, mask, scene["faces"], dets)
            write_image_atomic(Path(overlay_dir) / f"{name}.png", over, overwrite=overwrite)
        if progress is not None:
            progress(k + 1, len(scenes))
    if csv_path is not None:
        write_csv(csv_path, rows, overwrite)
    return summarize(rows, seconds)


def write_csv(
    path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], overwrite: bool
) -> None:
    """Per-scene rows as CSV (columns :data:`CSV_COLUMNS`), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    write_bytes_atomic(path, buf.getvalue().encode(), overwrite=overwrite)


def _judged_masked(result: Any) -> bool:
    """Whether the pipeline judged the image masked (its ``mask_score``; results without one:
    yes)."""
    from abanet.faces.pipeline import MIN_MASK_SCORE

    return bool(getattr(result, "mask_score", 1.0) >= MIN_MASK_SCORE)


def evaluate_crops(
    segment: SegmentFn,
    crops_dir: str | os.PathLike[str],
    limit: int | None = None,
    names: Collection[str] | None = None,
) -> dict[str, Any]:
    """Per-image IoU (mean over images, empty/empty = 1) of ``segment`` on labelled crops.

    Also how many crops went through the whole-image rule and how many faces were found.
    ``names``: only the crops with these file names (one fold's test crops).
    """
    pairs = [p for p in _pairs(Path(crops_dir)) if names is None or p[0].name in names][:limit]
    if not pairs:
        raise DataError(f"{crops_dir}: no image/mask pairs")
    ious, whole, faces, seconds, judged = [], 0, 0, 0.0, 0
    for img_path, mask_path in pairs:
        image, gt = read_image(img_path), read_mask(mask_path).astype(bool)
        t0 = time.perf_counter()
        result = segment(image)
        seconds += time.perf_counter() - t0
        ious.append(_iou(np.asarray(result.mask).astype(bool), gt))
        whole += bool(getattr(result, "whole_image", False))
        faces += len(result.faces)
        judged += _judged_masked(result)
    return {
        "crops": len(pairs),
        "iou": float(np.mean(ious)),
        "whole_image_photos": whole,
        "faces_found": faces,
        "judged_masked": judged,
        "photos_per_s": _ratio(len(pairs), seconds),
    }


def evaluate_bare(
    segment: SegmentFn,
    faces_dir: str | os.PathLike[str],
    limit: int | None = None,
    painted: float = 0.01,
) -> dict[str, Any]:
    """Bare face crops (no mask): how many get paint, and how much.

    A crop counts as painted when more than ``painted`` of its pixels are predicted mask; also
    the mean painted share and how many crops were judged masked (``PhotoResult.mask_score``).
    """
    root = Path(faces_dir)
    folder = root / "images" if (root / "images").is_dir() else root
    files = list_images(folder)[:limit]
    if not files:
        raise DataError(f"{faces_dir}: no images")
    shares, masked = [], 0
    for f in files:
        result = segment(read_image(f))
        shares.append(float(np.asarray(result.mask).astype(bool).mean()))
        masked += _judged_masked(result)
    arr = np.asarray(shares)
    return {
        "faces": len(files),
        "painted": float((arr > painted).mean()),
        "mean_painted_share": float(arr.mean()),
        "judged_masked": masked,
    }


# ------------------------------------------------------------------------------------ overlays
def draw_overlay(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    faces: Sequence[dict[str, Any]] = (),
    detections: Sequence[Sequence[float]] = (),
    max_side: int = 900,
) -> np.ndarray:
    """Prediction vs ground truth on the photo: green = both, red = predicted only (false
    positive), blue = missed; yellow boxes = masked faces, cyan = bare faces, magenta =
    detections. Scaled down to ``max_side``."""
    import cv2

    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    out = image.astype(np.float32)
    for sel, colour in (
        (gt & pred, (0, 220, 0)),
        (pred & ~gt, (255, 0, 0)),
        (gt & ~pred, (0, 80, 255)),
    ):
        out[sel] = 0.45 * out[sel] + 0.55 * np.array(colour, np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        out = cv2.resize(out, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out)
    t = max(1, round(2 * max(s, 0.5)))
    for f in faces:
        b = [round(v * s) for v in f["box"]]
        cv2.rectangle(out, b[:2], b[2:], (255, 230, 0) if f["masked"] else (0, 230, 230), t)
    for d in detections:
        b = [round(v * s) for v in d]
        cv2.rectangle(out, b[:2], b[2:], (255, 0, 255), t)
    return out
