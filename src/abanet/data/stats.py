"""Dataset statistics of a labelled folder (the paper's section 3.3, Figures 3 and 4).

Per image (every image with a mask):

- **size** (width x height).
- **faces** (photos only): ``abanet.faces.pipeline.plan_photo`` with the project's face detector
  decides per image whether it is a face crop (one face filling the frame) or a photo and finds
  its faces. When most images with a face are crops, the dataset is a set of crops and faces per
  image are not counted. A face of a photo is *masked* when the ground truth covers its mouth
  or its chin: :func:`abanet.faces.pipeline.face_mask_score` of the ground truth in the face's
  crop is at least ``MIN_MASK_SCORE`` (0.5). An MFSD release counts its
  ``dataset.csv`` boxes per photo instead (``with_mask`` says which are masked).
- **mask area**: the share of the image the mask covers.
- **mask position**: every mask resized to ``HEAT_SIZE`` x ``HEAT_SIZE`` (area averaging, so
  images of any shape are stretched to a square) and averaged: the heat map is the share of
  images whose mask covers each point. Also the mask's centroid and top / bottom rows.
- **mask colour**: the dominant colour of the mask's pixels (eroded by one pixel to keep the
  boundary out): k-means (k = 3, OpenCV, seeded) in CIELAB on up to ``COLOUR_SAMPLES`` pixels,
  the largest cluster's centre, named after the nearest of :data:`COLOUR_NAMES` in CIELAB.
- **mask type**: from a CSV (``image,type``) when given; else from file-name prefixes with a
  known meaning (``cwm_``/``iwm_`` of MaskedFace-Net: correctly / incorrectly worn); else not
  known.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.errors import DataError, OutputExistsError

HEAT_SIZE = 64
COLOUR_SAMPLES = 5000
#: basic colour terms and a reference RGB each; a mask colour takes the nearest in CIELAB
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "grey": (150, 150, 150),
    "black": (30, 30, 30),
    "light blue": (160, 200, 230),
    "blue": (40, 80, 170),
    "green": (60, 140, 70),
    "red": (190, 30, 40),
    "pink": (235, 150, 180),
    "purple": (110, 60, 140),
    "yellow": (230, 210, 60),
    "orange": (230, 130, 40),
    "brown": (120, 80, 50),
    "beige": (210, 190, 160),
}
#: file-name prefixes with a known meaning
KNOWN_PREFIXES = {"cwm": "correctly worn", "iwm": "incorrectly worn"}
#: the dataset counts as face crops when at least this share of images with a face are crops
CROP_SHARE = 0.5


@dataclass
class ImageStat:
    """The numbers of one labelled image (module doc)."""

    name: str
    width: int
    height: int
    mask_fraction: float
    centroid: tuple[float, float] | None = None  # (x, y) as fractions of width, height
    extent: tuple[float, float] | None = None  # top and bottom row as fractions of height
    colour: str | None = None
    rgb: tuple[int, int, int] | None = None
    mask_type: str | None = None
    faces: int | None = None
    masked_faces: int | None = None
    crop: bool | None = None


@dataclass
class DatasetStats:
    """Per-image numbers, the mean mask (heat map) and notes on what could not be counted."""

    root: str
    kind: str
    images: list[ImageStat]
    heat: np.ndarray
    #: photo -> (faces, masked faces), when faces were counted
    photo_faces: dict[str, tuple[int, int]] = field(default_factory=dict)
    faces_source: str = ""
    faces_note: str = ""  # why faces were not counted
    type_source: str = ""
    notes: list[str] = field(default_factory=list)

    def counts(self, key: str) -> Counter[Any]:
        """How many images have each value of ``key`` (``None`` values left out)."""
        return Counter(v for s in self.images if (v := getattr(s, key)) is not None)


# ----------------------------------------------------------------------------------- colour
def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0..100) of ``N x 3`` uint8 RGB."""
    import cv2

    arr = (np.asarray(rgb, np.float32).reshape(-1, 1, 3)) / 255.0
    return cv2.cvtColor(arr, cv2.COLOR_RGB2Lab).reshape(-1, 3)


_NAMES = list(COLOUR_NAMES)
_NAME_LAB = _lab(np.array(list(COLOUR_NAMES.values()), np.uint8))


def colour_name(rgb: Sequence[int]) -> str:
    """The name in :data:`COLOUR_NAMES` nearest to ``rgb`` in CIELAB (CIE76 distance)."""
    d = np.linalg.norm(_NAME_LAB - _lab(np.array([rgb], np.uint8))[0], axis=1)
    return _NAMES[int(np.argmin(d))]


def dominant_colour(image: np.ndarray, mask: np.ndarray, k: int = 3) -> tuple[int, int, int] | None:
    """The centre (RGB) of the largest of ``k`` CIELAB k-means clusters of the mask's pixels;
    None for an empty mask."""
    import cv2

    m = mask.astype(np.uint8)
    inner = cv2.erode(m, np.ones((3, 3), np.uint8))
    if inner.sum() * 2 >= m.sum():  # keep the boundary out unless the mask is thin
        m = inner
    pixels = image[m.astype(bool)]
    if not len(pixels):
        return None
    step = max(1, len(pixels) // COLOUR_SAMPLES)
    pixels = pixels[::step]
    lab = _lab(pixels).astype(np.float32)
    k = min(k, len(np.unique(pixels, axis=0)))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(lab, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    biggest = int(np.bincount(labels.ravel(), minlength=k).argmax())
    # the members' mean RGB (the Lab centre converted back may fall outside the gamut)
    rgb = pixels[labels.ravel() == biggest].mean(axis=0)
    return (int(round(rgb[0])), int(round(rgb[1])), int(round(rgb[2])))


# ------------------------------------------------------------------------------------ types
def read_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """``image -> type`` from a CSV with columns ``image,type``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read mask types ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not {"image", "type"} <= set(reader.fieldnames or []):
        raise DataError(f"{p}: mask types file needs columns image,type")
    return {r["image"].strip(): r["type"].strip() for r in reader if r.get("image")}


def prefix_types(names: Sequence[str]) -> dict[str, str]:
    """``name -> type`` when every file name starts with a known prefix (:data:`KNOWN_PREFIXES`,
    before the first ``_``, any case); else ``{}``."""
    found = {}
    for n in names:
        prefix = Path(n).stem.split("_", 1)[0].lower()
        if prefix not in KNOWN_PREFIXES:
            return {}
        found[n] = KNOWN_PREFIXES[prefix]
    return found


def _types_for(
    names: Sequence[str], types: str | os.PathLike[str] | None
) -> tuple[dict[str, str], str]:
    if types is not None:
        table = read_types(types)
        by_key = {}
        for k, v in table.items():
            by_key[k] = v
            by_key.setdefault(Path(k).name, v)
            by_key.setdefault(Path(k).stem, v)
        found = {
            n: by_key.get(n, by_key.get(Path(n).name, by_key.get(Path(n).stem))) for n in names
        }
        return {n: t for n, t in found.items() if t}, f"`{types}`"
    found = prefix_types(names)
    return found, "file-name prefixes (MaskedFace-Net: cwm_ / iwm_)" if found else ""


# ------------------------------------------------------------------------------------ faces
def count_faces(image: np.ndarray, gt: np.ndarray, detector: Any) -> tuple[bool, int, int]:
    """``(is a face crop, faces, masked faces)`` of one image (module doc)."""
    from abanet.faces.pipeline import (
        MIN_MASK_SCORE,
        extract_crop,
        face_mask_score,
        plan_photo,
    )

    plan = plan_photo(image, detector)
    if plan.whole_image:
        return True, 1, int(gt.any())
    if plan.boxes is None:  # no face
        return False, 0, 0
    masked = 0
    for face, box in zip(plan.faces, plan.boxes, strict=True):
        crop = extract_crop(gt.astype(np.float32), box)
        masked += face_mask_score(crop, face, box) >= MIN_MASK_SCORE
    return False, len(plan.faces), masked


def _mfsd_faces(root: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """``photo -> (faces, masked faces)`` from an MFSD release's dataset.csv."""
    from abanet.data.readers import read_mfsd_boxes

    boxes, problems = read_mfsd_boxes(root)
    counts = {k: (len(v), sum(bool(b.with_mask) for b in v)) for k, v in boxes.items()}
    return counts, [str(p) for p in problems[:3]]


# ------------------------------------------------------------------------------------ stats
def _mask_geometry(mask: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    h, w = mask.shape
    centroid = (float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h))
    return centroid, (float(ys.min() / h), float((ys.max() + 1) / h))


def dataset_stats(
    path: str | os.PathLike[str],
    kind: str = "auto",
    faces: bool = True,
    detector: Any = "default",
    types: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetStats:
    """The statistics of the labelled images of dataset folder ``path`` (module doc).

    ``faces=False`` skips face detection; ``detector`` is a detector name or a
    :class:`abanet.faces.FaceDetector`; ``types`` a CSV of mask types (``image,type``);
    ``progress(done, total)`` is called after each image.
    """
    import cv2

    from abanet.data.readers import detect_kind, load_image, open_dataset, paired
    from abanet.engine.evaluation import load_scored_mask

    k = detect_kind(path) if kind == "auto" else kind
    samples, _ = open_dataset(path, k)
    pairs = paired(samples)
    if not pairs:
        raise DataError(f"{path}: no image/mask pairs to describe")
    notes: list[str] = []
    if len(pairs) < len(samples):
        notes.append(f"{len(samples) - len(pairs)} images without a mask are left out")
    type_of, type_source = _types_for([s.name for s in pairs], types)
    mfsd_faces: dict[str, tuple[int, int]] = {}
    if faces and k == "mfsd":
        mfsd_faces, problems = _mfsd_faces(str(path))
        notes += problems
    elif faces and isinstance(detector, str):
        from abanet.faces import create_detector

        detector = create_detector(detector)
    heat = np.zeros((HEAT_SIZE, HEAT_SIZE), np.float64)
    rows: list[ImageStat] = []
    for i, s in enumerate(pairs):
        image = load_image(s)
        gt = load_scored_mask(s)
        if image.shape[:2] != gt.shape:
            raise DataError(
                f"{s.mask_path}: mask is {gt.shape[1]}x{gt.shape[0]} but image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        h, w = gt.shape
        geometry = _mask_geometry(gt)
        rgb = dominant_colour(image, gt)
        row = ImageStat(
            s.name,
            w,
            h,
            float(gt.mean()),
            geometry[0] if geometry else None,
            geometry[1] if geometry else None,
            colour_name(rgb) if rgb else None,
            rgb,
            type_of.get(s.name),
        )
        if faces and k != "mfsd":
            row.crop, row.faces, row.masked_faces = count_faces(image, gt, detector)
        heat += cv2.resize(
            gt.astype(np.float32), (HEAT_SIZE, HEAT_SIZE), interpolation=cv2.INTER_AREA
        )
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(pairs))
    stats = DatasetStats(str(path), k, rows, heat / len(rows), notes=notes, type_source=type_source)
    if mfsd_faces:
        stats.photo_faces, stats.faces_source = mfsd_faces, "MSFD/1/dataset.csv face boxes"
    elif faces:
        _decide_crops(stats, getattr(detector, "name", "detector"))
    else:
        stats.faces_note = "not asked for (--no-faces)"
    if not type_of:
        stats.notes.append(
            "mask types unknown (no type table given and no known file-name prefix): "
            "pass --types CSV (image,type)"
        )
    return stats


def _decide_crops(stats: DatasetStats, detector: str) -> None:
    with_face = [s for s in stats.images if s.faces]
    crops = sum(bool(s.crop) for s in with_face)
    if with_face and crops >= CROP_SHARE * len(with_face):
        stats.faces_note = (
            f"the images are face crops ({crops} of {len(stats.images)} show one face filling "
            f"the frame to the {detector} detector)"
        )
        return
    stats.photo_faces = {s.name: (s.faces or 0, s.masked_faces or 0) for s in stats.images}
    stats.faces_source = f"{detector} face detector (abanet.faces.pipeline.plan_photo)"


# --------------------------------------------------------------------------------- writing
def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "-"


def _count_table(title: str, counts: Counter[Any], total: int) -> list[str]:
    lines = [f"| {title} | images | share |", "|---|---:|---:|"]
    for key, n in counts.most_common():
        lines.append(f"| {key} | {n} | {_pct(n, total)} |")
    return lines


def stats_markdown(stats: DatasetStats, figures: Sequence[str] = ()) -> str:
    """The numbers of :func:`dataset_stats` as Markdown (``figures``: PNG names to show)."""
    imgs = stats.images
    n = len(imgs)
    w = np.array([s.width for s in imgs])
    h = np.array([s.height for s in imgs])
    area = np.array([100 * s.mask_fraction for s in imgs])
    sizes = Counter(f"{s.width}x{s.height}" for s in imgs)
    out = [
        f"# Dataset statistics: `{stats.root}`",
        "",
        f"- layout: {stats.kind}; labelled images: {n}",
        *(f"- note: {note}" for note in stats.notes),
        "",
        "## Image sizes",
        "",
        f"Mean {w.mean():.0f} x {h.mean():.0f} px (width x height); width {w.min()}..{w.max()}, "
        f"height {h.min()}..{h.max()}; {len(sizes)} distinct sizes; "
        f"{int(((w < 100) | (h < 100)).sum())} images under 100 x 100 (the paper removed those).",
        "",
        *_count_table("size", Counter(dict(sizes.most_common(10))), n),
        "",
        "## Faces per image",
        "",
    ]
    if stats.photo_faces:
        faces = np.array([f for f, _ in stats.photo_faces.values()])
        masked = np.array([m for _, m in stats.photo_faces.values()])
        photos = len(faces)
        out += [
            f"Counted from: {stats.faces_source}. {photos} photos, {faces.sum()} faces "
            f"({masked.sum()} masked); mean {faces.mean():.2f} faces per photo.",
            "",
            "| faces in the photo | photos | photos with this many masked faces |",
            "|---:|---:|---:|",
        ]
        for k in range(int(max(faces.max(), masked.max())) + 1):
            out.append(f"| {k} | {int((faces == k).sum())} | {int((masked == k).sum())} |")
    else:
        out.append(f"Not counted: {stats.faces_note}.")
    cents = np.array([s.centroid for s in imgs if s.centroid] or [[np.nan, np.nan]])
    ext = np.array([s.extent for s in imgs if s.extent] or [[np.nan, np.nan]])
    centre = stats.heat[stats.heat.shape[0] // 2, stats.heat.shape[1] // 2]
    out += [
        "",
        "## Mask area",
        "",
        f"Share of the image covered by the mask: mean {area.mean():.1f} %, median "
        f"{np.median(area):.1f} %, 10th-90th percentile {np.percentile(area, 10):.1f}-"
        f"{np.percentile(area, 90):.1f} %, min {area.min():.1f} %, max {area.max():.1f} %; "
        f"{int((area == 0).sum())} empty masks.",
        "",
        "## Mask position",
        "",
        f"Mean centroid at x {np.nanmean(cents[:, 0]):.3f}, y {np.nanmean(cents[:, 1]):.3f} "
        f"(fractions of width and height from the top left); the mask spans rows "
        f"{np.nanmean(ext[:, 0]):.3f} to {np.nanmean(ext[:, 1]):.3f} of the height on average. "
        f"The image centre is covered in {100 * centre:.1f} % of the images.",
        "",
        "## Mask colours",
        "",
        "Dominant colour of each mask's pixels, named after the nearest basic colour:",
        "",
        *_count_table("colour", stats.counts("colour"), n),
        "",
        "## Mask types",
        "",
    ]
    types = stats.counts("mask_type")
    if types:
        out += [f"From {stats.type_source}:", "", *_count_table("type", types, n)]
    else:
        out.append(
            "Unknown: no type table given (`--types CSV`: image,type) and the file names carry "
            "no known type prefix."
        )
    if figures:
        out += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(out) + "\n"


def per_image_csv(stats: DatasetStats) -> str:
    """One line per image: name, size, mask share, centroid, extent, colour, type, faces."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "image", "width", "height", "mask_fraction", "centroid_x", "centroid_y", "top",
            "bottom", "colour", "r", "g", "b", "type", "crop", "faces", "masked_faces",
        ]
    )  # fmt: skip

    def f(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    for s in stats.images:
        c, e, rgb = s.centroid or (None, None), s.extent or (None, None), s.rgb or ("", "", "")
        crop = "" if s.crop is None else int(s.crop)
        w.writerow(
            [s.name, s.width, s.height, f(s.mask_fraction), f(c[0]), f(c[1]), f(e[0]), f(e[1])]
            + [s.colour or "", *rgb, s.mask_type or "", crop, s.faces, s.masked_faces]
        )
    return buf.getvalue()


def check_stats_out(folder: Path, overwrite: bool) -> None:
    """Refuse a folder that holds statistics already (``stats.md``) unless ``overwrite``."""
    if (folder / "stats.md").exists() and not overwrite:
        raise OutputExistsError(f"{folder}: holds statistics already (stats.md); pass --overwrite")


def write_stats(
    stats: DatasetStats, out: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Path]:
    """Write ``stats.md``, ``per_image.csv`` and the figures (PNG) into folder ``out``.

    An existing ``stats.md`` there is only replaced with ``overwrite``; it is written last.
    """
    from abanet.data.atomic import write_bytes_atomic
    from abanet.plots.base import save_png
    from abanet.plots.dataset import stats_figures

    folder = Path(out)
    check_stats_out(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, fig in stats_figures(stats).items():
        files[name] = save_png(fig, folder / f"{name}.png", overwrite=True)
    files["per_image"] = write_bytes_atomic(
        folder / "per_image.csv", per_image_csv(stats).encode(), overwrite=True
    )
    shown = [p.name for k, p in files.items() if p.suffix == ".png" and k != "overview"]
    files["stats"] = write_bytes_atomic(
        folder / "stats.md", stats_markdown(stats, shown).encode(), overwrite=True
    )
    return files
