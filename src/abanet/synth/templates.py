"""Mask templates (RGBA images + six anchor points, MaskTheFace's ``masks.cfg``) and textures."""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abanet.errors import DataError

#: Anchor names in ``masks.cfg`` order: a top-left, b top-centre (nose bridge), c top-right,
#: d bottom-left, e bottom-centre (chin), f bottom-right.
ANCHOR_NAMES = ("a", "b", "c", "d", "e", "f")
VIEWS = ("front", "left", "right")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: Relative sampling weight of each mask family (the section name without ``_left``/``_right``).
#: Families not listed weigh 1.0. Real crops are mostly surgical and black/grey cloth; gas masks
#: are rare.
DEFAULT_FAMILY_WEIGHTS: dict[str, float] = {
    "surgical": 1.6,
    "surgical_blue": 1.0,
    "surgical_green": 0.5,
    "cloth": 2.2,
    "KN95": 1.3,
    "N95": 0.8,
    "gas": 0.15,
}


@dataclass
class MaskTemplate:
    """One template: RGBA pixels (uint8, HxWx4) and six anchor points (6x2 float, template px)."""

    name: str
    family: str
    view: str
    rgba: np.ndarray
    anchors: np.ndarray
    path: Path | None = None

    @property
    def yaw_ratio(self) -> float:
        """Where the nose-bridge anchor sits between the top corners (0 = at a, 1 = at c)."""
        a, b, c = self.anchors[0], self.anchors[1], self.anchors[2]
        return float((b[0] - a[0]) / max(c[0] - a[0], 1e-6))


@dataclass
class TemplateSet:
    """All templates of a folder grouped by family, plus the fabric textures (RGB uint8)."""

    root: Path
    templates: list[MaskTemplate]
    textures: list[np.ndarray] = field(default_factory=list)
    texture_names: list[str] = field(default_factory=list)

    def families(self) -> dict[str, dict[str, MaskTemplate]]:
        out: dict[str, dict[str, MaskTemplate]] = {}
        for t in self.templates:
            out.setdefault(t.family, {})[t.view] = t
        return out


def _split_view(section: str) -> tuple[str, str]:
    for view in ("left", "right"):
        if section.endswith("_" + view):
            return section[: -len(view) - 1], view
    return section, "front"


def _parse_point(text: str, where: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise DataError(f"{where}: expected 'x, y', got {text!r}")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise DataError(f"{where}: expected two numbers, got {text!r}") from exc


def _resolve_image(root: Path, ref: str, where: str) -> Path:
    """``masks.cfg`` names files like ``masks/templates/x.png``: look beside the cfg, then in
    templates/."""
    ref_path = Path(ref.strip())
    candidates = [root / ref_path, root / "templates" / ref_path.name, root / ref_path.name]
    for cand in candidates:
        if cand.is_file():
            return cand
    raise DataError(f"{where}: template image {ref!r} not found under {root}")


def _read_rgba(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot decode image")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) / np.iinfo(img.dtype).max * 255).round().astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def _shrink(img: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    import cv2

    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, 1.0
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), s


def parse_masks_cfg(cfg_path: Path) -> dict[str, dict[str, object]]:
    """Parse ``masks.cfg``: ``{section: {"template": str, "anchors": 6x2 array}}``.

    Sections without a ``template`` key (``[empty]``, ``[inpaint]``) are left out. Lines starting
    with ``;`` or ``#`` are comments.
    """
    cp = configparser.ConfigParser(comment_prefixes=(";", "#"), strict=False, interpolation=None)
    cp.optionxform = str  # keep key case
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{cfg_path}: cannot read ({exc.strerror})") from exc
    try:
        cp.read_string(text, source=str(cfg_path))
    except configparser.Error as exc:
        raise DataError(f"{cfg_path}: not a valid masks.cfg ({exc.__class__.__name__})") from exc
    out: dict[str, dict[str, object]] = {}
    for section in cp.sections():
        items = {k.lower(): v for k, v in cp.items(section)}
        if "template" not in items:
            continue
        pts = []
        for n in ANCHOR_NAMES:
            key = f"mask_{n}"
            if key not in items:
                raise DataError(f"{cfg_path}: section [{section}] has no {key}")
            pts.append(_parse_point(items[key], f"{cfg_path} [{section}] {key}"))
        out[section] = {"template": items["template"], "anchors": np.array(pts, dtype=np.float64)}
    return out


def load_templates(
    root: str | Path, *, max_side: int | None = 512, texture_side: int | None = 384
) -> TemplateSet:
    """Load ``root/masks.cfg``, its template images and ``root/textures/**`` (if present).

    Templates are shrunk so that their longer side is at most ``max_side`` (anchors scaled to
    match); outputs are at most a few hundred pixels wide, so nothing is lost.
    """
    root = Path(root)
    cfg = root / "masks.cfg"
    if not root.is_dir():
        raise DataError(f"{root}: mask-templates folder not found")
    if not cfg.is_file():
        raise DataError(f"{cfg}: not found (a mask-templates folder needs masks.cfg)")
    templates: list[MaskTemplate] = []
    for section, entry in parse_masks_cfg(cfg).items():
        path = _resolve_image(root, str(entry["template"]), f"{cfg} [{section}]")
        rgba = _read_rgba(path)
        rgba, s = _shrink(rgba, max_side)
        family, view = _split_view(section)
        anchors = np.asarray(entry["anchors"], dtype=np.float64) * s
        templates.append(MaskTemplate(section, family, view, rgba, anchors, path))
    if not templates:
        raise DataError(f"{cfg}: no template sections with a 'template' key")

    textures: list[np.ndarray] = []
    names: list[str] = []
    tex_root = root / "textures"
    if tex_root.is_dir():
        for p in sorted(tex_root.rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
                continue
            rgba, _ = _shrink(_read_rgba(p), texture_side)
            rgb = rgba[..., :3].astype(np.float32)
            a = rgba[..., 3:].astype(np.float32) / 255.0
            rgb = rgb * a + 255.0 * (1 - a)  # transparent texture pixels become white cloth
            textures.append(rgb.round().astype(np.uint8))
            names.append(str(p.relative_to(tex_root)))
    return TemplateSet(root, templates, textures, names)


def default_templates_dir(cwd: str | Path | None = None) -> Path:
    """``../shared/data/mask-templates`` relative to ``cwd``; a clear error if it is missing."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    path = (base / ".." / "shared" / "data" / "mask-templates").resolve()
    if not (path / "masks.cfg").is_file():
        raise DataError(
            f"{path}: default mask-templates folder not found; pass --templates DIR "
            "(a folder with masks.cfg, templates/ and textures/)"
        )
    return path
