"""Render one synthetic masked face: place a template by facial landmarks, restyle it, frame and
degrade the crop like an MFSD face crop, and derive the exact ground truth from the warped alpha."""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from abanet.errors import AbanetError, PlacementError
from abanet.synth.landmarks import AnchorParams, check_landmarks, face_frame, mask_anchors
from abanet.synth.templates import MaskTemplate

OCCLUDER_LABELS = ("mfsd", "exclude")


@dataclass(frozen=True)
class SynthOptions:
    """Knobs of :func:`synthesize`. Probabilities are per generated pair."""

    size: int = 256
    p_keep_colour: float = 0.2  # template's own colours (gas masks always keep theirs)
    p_texture: float = 0.14  # a fabric texture from textures/
    p_camo: float = 0.05  # procedural camouflage / blotch pattern
    p_hand: float = 0.07  # a skin-coloured hand-like blob over the mask
    p_hair: float = 0.10  # dark hair strands across the mask's upper side edge
    p_loose: float = 0.12  # loose framing: the whole head, a smaller mask
    p_lowres: float = 0.25  # render small and upscale (blurry crops)
    max_rotation: float = 12.0  # degrees, head roll added to the whole image
    anchor_jitter: float = 0.03  # per-anchor noise, in inter-ocular distances
    occluder_label: str = "mfsd"  # "mfsd": a hand over the mask is mask; "exclude": it is not
    min_mask_fraction: float = 0.06
    max_mask_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.occluder_label not in OCCLUDER_LABELS:
            raise AbanetError(
                f"occluder_label must be one of {OCCLUDER_LABELS}, got {self.occluder_label!r}"
            )
        if self.size < 32:
            raise AbanetError(f"size must be at least 32 px, got {self.size}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise AbanetError(f"{f.name} is a probability in [0, 1], got {value}")


def options_from_settings(settings: Sequence[str], **base: Any) -> SynthOptions:
    """``SynthOptions`` from ``["p_texture=0", "max_rotation=5"]`` plus keyword defaults."""
    fields = {f.name: f.type for f in dataclasses.fields(SynthOptions)}
    values: dict[str, Any] = dict(base)
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise AbanetError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}"
            )
        if key == "occluder_label":
            values[key] = text.strip()
            continue
        try:
            number = float(text)
        except ValueError:
            raise AbanetError(f"--set {item!r}: {text!r} is not a number") from None
        values[key] = int(number) if key == "size" else number
    return SynthOptions(**values)


# ----------------------------------------------------------------------------- small helpers


def _h3(m2x3: np.ndarray) -> np.ndarray:
    return np.vstack([m2x3, [0.0, 0.0, 1.0]])


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    q = np.c_[pts, np.ones(len(pts))] @ h.T
    return q[:, :2] / q[:, 2:3]


def _local_scale(h: np.ndarray, p: np.ndarray) -> float:
    """Linear scale factor of the map ``h`` around ``p`` (sqrt of the Jacobian determinant)."""
    q = _apply_h(h, np.array([p, p + [1.0, 0.0], p + [0.0, 1.0]]))
    det = (q[1] - q[0])[0] * (q[2] - q[0])[1] - (q[1] - q[0])[1] * (q[2] - q[0])[0]
    return math.sqrt(abs(det))


def _warp(img: np.ndarray, h: np.ndarray, dsize: tuple[int, int], at: np.ndarray, border: int):
    """``cv2.warpPerspective`` that first shrinks the source with INTER_AREA when the map
    downsamples (so fine template detail does not alias)."""
    import cv2

    k = _local_scale(h, at)
    if k < 0.7:
        f = min(1.0, 1.4 * k)
        src_h, src_w = img.shape[:2]
        size = (max(2, round(src_w * f)), max(2, round(src_h * f)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        fx, fy = size[0] / src_w, size[1] / src_h
        h = h @ np.diag([1 / fx, 1 / fy, 1.0])
    return cv2.warpPerspective(img, h, dsize, flags=cv2.INTER_LINEAR, borderMode=border)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


# ----------------------------------------------------------------------------- mask appearance

# (name, weight): real masks are mostly black, grey, white and surgical blue.
_COLOUR_GROUPS = (
    ("black", 0.24),
    ("charcoal", 0.08),
    ("grey", 0.10),
    ("white", 0.14),
    ("surgical_blue", 0.16),
    ("surgical_green", 0.05),
    ("pastel", 0.09),
    ("colour", 0.14),
)


def pick_colour(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A mask colour (RGB float 0-1) and its group name."""
    names = [n for n, _ in _COLOUR_GROUPS]
    w = np.array([w for _, w in _COLOUR_GROUPS])
    name = names[rng.choice(len(names), p=w / w.sum())]
    tint = rng.normal(0.0, 0.012, 3)
    if name == "black":
        c = np.full(3, rng.uniform(0.05, 0.15)) + tint
    elif name == "charcoal":
        c = np.full(3, rng.uniform(0.17, 0.3)) + tint
    elif name == "grey":
        c = np.full(3, rng.uniform(0.35, 0.68)) + tint
    elif name == "white":
        c = np.full(3, rng.uniform(0.82, 0.97)) + tint
    elif name == "surgical_blue":
        c = _hsv(rng.uniform(0.53, 0.57), rng.uniform(0.22, 0.5), rng.uniform(0.72, 0.93))
    elif name == "surgical_green":
        c = _hsv(rng.uniform(0.44, 0.5), rng.uniform(0.18, 0.4), rng.uniform(0.68, 0.88))
    elif name == "pastel":
        c = _hsv(rng.uniform(), rng.uniform(0.12, 0.4), rng.uniform(0.75, 0.96))
    else:
        c = _hsv(rng.uniform(), rng.uniform(0.35, 0.9), rng.uniform(0.22, 0.85))
    return np.clip(c, 0.0, 1.0).astype(np.float32), name


def _tile(tex: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Tile a texture over an h x w canvas at a random scale, offset and quarter turn."""
    import cv2

    tex = np.rot90(tex, int(rng.integers(4))) if rng.uniform() < 0.5 else tex
    tw = max(8, round(w * rng.uniform(0.25, 0.75)))
    th = max(8, round(tex.shape[0] * tw / tex.shape[1]))
    tile = cv2.resize(np.ascontiguousarray(tex), (tw, th), interpolation=cv2.INTER_AREA)
    reps = (h // th + 2, w // tw + 2, 1)
    big = np.tile(tile, reps)
    oy, ox = int(rng.integers(th)), int(rng.integers(tw))
    return big[oy : oy + h, ox : ox + w]


def _blotches(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A camouflage-like pattern: smooth noise quantised into 3-4 colours (RGB float)."""
    import cv2

    levels = int(rng.integers(3, 5))
    grid = rng.normal(size=(int(rng.integers(5, 12)), int(rng.integers(5, 12)))).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    edges = np.quantile(field, np.linspace(0, 1, levels + 1)[1:-1])
    idx = np.digitize(field, edges)
    if rng.uniform() < 0.6:  # military greens and browns
        base = rng.uniform(0.08, 0.2)
        hues = rng.uniform(0.08, 0.3, levels)
        palette = np.stack(
            [_hsv(hh, rng.uniform(0.2, 0.6), base + 0.12 * i) for i, hh in enumerate(hues)]
        )
    else:
        palette = np.stack([pick_colour(rng)[0] for _ in range(levels)])
    return palette[idx]


def style_template(
    t: MaskTemplate,
    rng: np.random.Generator,
    textures: Sequence[np.ndarray] = (),
    options: SynthOptions | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Restyle a template: returns RGB (float 0-1), alpha (float 0-1) in template pixels, and a
    description such as ``colour:black`` or ``texture:3``."""
    o = options or SynthOptions()
    rgb0 = t.rgba[..., :3].astype(np.float32) / 255.0
    alpha = t.rgba[..., 3].astype(np.float32) / 255.0
    lum = _gray(rgb0)
    inside = alpha > 0.5
    ref = float(np.percentile(lum[inside], 90)) if inside.any() else 1.0
    shade = np.clip(lum / max(ref, 1e-3), 0.0, 1.3)  # pleats, seams and folds, ~1 on the cloth
    u = rng.uniform()
    keep = o.p_keep_colour if t.family != "gas" else 1.0
    if u < keep:
        gain = rng.uniform(0.85, 1.08) * (1 + rng.normal(0, 0.03, 3))
        return np.clip(rgb0 * gain.astype(np.float32), 0, 1), alpha, "template"
    import cv2

    contrast = rng.uniform(0.5, 1.0)
    h, w = alpha.shape
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    s = (1.0 + contrast * (shade - 1.0) + rng.uniform(0.01, 0.04) * grain)[..., None]
    if u < keep + o.p_texture and len(textures):
        k = int(rng.integers(len(textures)))
        tex = _tile(textures[k], h, w, rng).astype(np.float32) / 255.0
        if rng.uniform() < 0.3:  # tinted print
            tex = tex * (0.6 + 0.4 * pick_colour(rng)[0])
        return np.clip(tex * s, 0, 1), alpha, f"texture:{k}"
    if u < keep + o.p_texture + o.p_camo:
        return np.clip(_blotches(h, w, rng) * s, 0, 1), alpha, "camo"
    colour, name = pick_colour(rng)
    out = colour * s
    if colour.mean() < 0.3:  # dark cloth: seams and folds still show, as faint highlights
        out = out + rng.uniform(0.06, 0.14) * (s - 1.0)
    return np.clip(out, 0, 1).astype(np.float32), alpha, f"colour:{name}"


def restyle_mask(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    textures: Sequence[np.ndarray] = (),
    options: SynthOptions | None = None,
) -> tuple[np.ndarray, str]:
    """Repaint the labelled mask of a photo (uint8 HxWx3; ``mask`` HxW, nonzero = mask) with a
    new colour, fabric texture or pattern, keeping its shading (pleats, folds) and shape, so the
    label stays valid. Returns the new image and a description (as :func:`style_template`).

    Meant for sets whose masks all look alike (``maskedface-net-seg500``: one light-blue
    template on portraits with neck, hair and clothes): the framing is worth having, the colour
    is not. ``options.p_keep_colour`` still applies (0 forces a new look).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise AbanetError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise AbanetError(f"mask size {mask.shape} does not match image size {image.shape[:2]}")
    ys, xs = np.nonzero(mask)
    if not len(ys):
        raise PlacementError("the mask is empty: nothing to restyle")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = image[y0:y1, x0:x1]
    alpha = (mask[y0:y1, x0:x1] > 0).astype(np.uint8) * 255
    region = MaskTemplate("photo", "photo", "front", np.dstack([crop, alpha]), np.zeros((6, 2)))
    rgb, a, desc = style_template(region, rng, textures, options)
    out = image.astype(np.float32) / 255.0
    a3 = a[..., None]
    out[y0:y1, x0:x1] = rgb * a3 + out[y0:y1, x0:x1] * (1.0 - a3)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), desc


# ----------------------------------------------------------------------------- geometry


def _check_warp(h: np.ndarray, t: MaskTemplate) -> str | None:
    """None if the template maps onto the face without folding or crossing the horizon."""
    if h is None or not np.isfinite(h).all():
        return "no homography"
    th, tw = t.rgba.shape[:2]
    pts = np.vstack([[[0, 0], [tw, 0], [0, th], [tw, th]], t.anchors])
    w = np.c_[pts, np.ones(len(pts))] @ h[2]
    if not ((w > 0).all() or (w < 0).all()):
        return "warp crosses the horizon"
    for p in t.anchors:
        q = _apply_h(h, np.array([p, p + [1.0, 0.0], p + [0.0, 1.0]]))
        d1, d2 = q[1] - q[0], q[2] - q[0]
        if d1[0] * d2[1] - d1[1] * d2[0] <= 0:
            return "warp folds the template"
    return None


def _crop_box(lm: np.ndarray, rng: np.random.Generator, loose: bool) -> np.ndarray:
    """An MFSD-like face box (x0, y0, w, h) in the (rotated) image: brows/eyes to the chin,
    nearly square; ``loose`` widens it to most of the head."""
    xs = lm[0:17, 0]
    jaw_w = xs.max() - xs.min()
    cx = 0.5 * (xs.max() + xs.min()) + rng.uniform(-0.04, 0.04) * jaw_w
    brow, chin = lm[17:27, 1].min(), lm[8, 1]
    fh = chin - brow
    top = brow - rng.uniform(-0.06, 0.3) * fh
    bottom = chin + rng.uniform(-0.06, 0.12) * fh
    h = bottom - top
    w = max(h * rng.uniform(0.88, 1.12), jaw_w * rng.uniform(0.9, 1.05))
    cy = 0.5 * (top + bottom)
    if loose:
        k = rng.uniform(1.25, 1.7)
        cy -= (k - 1) * h * rng.uniform(0.1, 0.35)
        w, h = w * k, h * k
    return np.array([cx - w / 2, cy - h / 2, w, h])


def _fit_box(box: np.ndarray, rot: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Shift (and if needed shrink, to at most 0.7x) a box given in rotated coordinates so that it
    stays inside the source image; what still sticks out is filled by reflection."""
    hh, ww = shape[:2]
    inv = np.linalg.inv(rot)
    x0, y0, w, h = (float(v) for v in box)
    w0 = w
    for _ in range(30):
        c = np.array([[x0, y0], [x0 + w, y0], [x0, y0 + h], [x0 + w, y0 + h]])
        o = _apply_h(inv, c)
        left, right = max(0.0, -o[:, 0].min()), max(0.0, o[:, 0].max() - ww)
        up, down = max(0.0, -o[:, 1].min()), max(0.0, o[:, 1].max() - hh)
        if max(left, right, up, down) <= 0.01 * w:
            break
        if ((left > 0 and right > 0) or (up > 0 and down > 0)) and w > 0.7 * w0:
            f = 0.96
            x0, y0 = x0 + w * (1 - f) / 2, y0 + h * (1 - f) / 2
            w, h = w * f, h * f
            continue
        shift = rot[:2, :2] @ np.array([left - right, up - down])
        x0, y0 = x0 + 0.7 * shift[0], y0 + 0.7 * shift[1]
    return np.array([x0, y0, w, h])


# ----------------------------------------------------------------------------- occluders


def _skin_colour(face: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median skin colour (RGB float) of the nose and the cheeks under the eyes."""
    import cv2

    m = np.zeros(face.shape[:2], np.uint8)
    for idx in ([39, 42, 35, 31], [36, 39, 31, 2], [42, 45, 14, 35]):
        cv2.fillPoly(m, [lm[idx].round().astype(np.int32)], 1)
    px = face[m > 0]
    if len(px) < 4:
        return np.array([0.75, 0.58, 0.48], np.float32)
    return (np.median(px, axis=0) / 255.0 * 0.93).astype(np.float32)


def _hand(
    size: int, anchors: np.ndarray, skin: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A hand-like blob (palm + four fingers + thumb) over the mask: (alpha, rgb) float maps."""
    import cv2

    a, b, c, _d, e, _f = anchors
    mw = float(np.linalg.norm(c - a))
    centre = b + rng.uniform(0.45, 0.95) * (e - b) + rng.uniform(-0.35, 0.35) * (c - a)
    ang = math.radians(-90 + rng.uniform(-55, 55))
    fwd = np.array([math.cos(ang), math.sin(ang)])
    side = np.array([-fwd[1], fwd[0]])
    ss = 4  # supersampling for smooth edges
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    parts: list[np.ndarray] = []

    def ellipse(ctr: np.ndarray, ax: tuple[float, float], a_rad: float) -> None:
        m = np.zeros_like(canvas)
        cv2.ellipse(
            m,
            (round(ctr[0] * ss), round(ctr[1] * ss)),
            (max(1, round(ax[0] * ss)), max(1, round(ax[1] * ss))),
            math.degrees(a_rad),
            0,
            360,
            255,
            -1,
        )
        parts.append(m)

    palm_l, palm_w = mw * rng.uniform(0.2, 0.28), mw * rng.uniform(0.17, 0.23)
    palm_c = centre - fwd * palm_l * 0.9
    ellipse(palm_c, (palm_l, palm_w), ang)
    fw = palm_w * 2 / 4.2
    lengths = np.array([0.85, 1.0, 0.95, 0.75]) * mw * rng.uniform(0.2, 0.3)
    spread = rng.uniform(0.0, 0.12)
    for k in range(4):
        off = (k - 1.5) * fw * 1.02
        fa = ang + (k - 1.5) * spread
        fdir = np.array([math.cos(fa), math.sin(fa)])
        base = palm_c + fwd * palm_l * 0.6 + side * off
        ellipse(base + fdir * lengths[k] / 2, (lengths[k] / 2 + fw * 0.3, fw / 2), fa)
    if rng.uniform() < 0.7:
        sgn = rng.choice([-1.0, 1.0])
        ta = ang + sgn * math.radians(rng.uniform(40, 70))
        tdir = np.array([math.cos(ta), math.sin(ta)])
        tl = mw * rng.uniform(0.14, 0.2)
        ellipse(
            palm_c + side * sgn * palm_w * 0.7 + tdir * tl / 2, (tl / 2 + fw * 0.3, fw * 0.55), ta
        )

    # shading: each part rounded (dark towards its own edge), so finger boundaries show
    shade = np.zeros(canvas.shape, np.float32)
    for m in parts:
        dist = cv2.distanceTransform(m, cv2.DIST_L2, 3)
        mx = float(dist.max()) or 1.0
        shade = np.maximum(shade, np.sqrt(dist / mx))
    union = np.max(np.stack(parts), axis=0)
    alpha = cv2.resize(union.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    shade = cv2.resize(shade, (size, size), interpolation=cv2.INTER_AREA)
    tone = skin * rng.uniform(0.85, 1.1)
    rgb = tone[None, None, :] * (0.62 + 0.38 * shade[..., None])
    grad = 1 + 0.15 * np.linspace(-1, 1, size, dtype=np.float32)[None, :, None] * rng.choice(
        [-1, 1]
    )
    return alpha, np.clip(rgb * grad, 0, 1).astype(np.float32)


def _hair(
    size: int, anchors: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A lock of dark hair strands falling across the mask's upper side edge: (alpha, rgb)."""
    import cv2

    a, b, c, d, _e, f = anchors
    mw = float(np.linalg.norm(c - a))
    ss = 4
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    top, bot = (a, d) if rng.uniform() < 0.5 else (c, f)
    inward = (b - top) / max(float(np.linalg.norm(b - top)), 1e-6)
    root = top + np.array([0.0, -mw * rng.uniform(0.3, 0.7)]) + inward * mw * rng.uniform(0.0, 0.25)
    bend = rng.normal(0, 0.06)
    for _ in range(int(rng.integers(5, 16))):
        start = root + rng.normal(0, 0.05 * mw, 2)
        end = top + (bot - top) * rng.uniform(0.1, 0.7) + inward * mw * rng.uniform(-0.05, 0.2)
        ctrl = (start + end) / 2 + inward * mw * (bend + rng.normal(0, 0.02))
        t = np.linspace(0, 1, 32)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end
        thick = max(1, round(rng.uniform(0.6, 1.4) * ss * size / 256))
        cv2.polylines(
            canvas, [(curve * ss).round().astype(np.int32)], False, 255, thick, cv2.LINE_AA
        )
    alpha = cv2.resize(canvas.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)
    alpha *= rng.uniform(0.55, 0.9)
    colour = _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.04, 0.22))
    rgb = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    return alpha.astype(np.float32), rgb


# ----------------------------------------------------------------------------- main entry


def synthesize(
    face_rgb: np.ndarray,
    landmarks: np.ndarray,
    template: MaskTemplate,
    rng: np.random.Generator,
    *,
    textures: Sequence[np.ndarray] = (),
    options: SynthOptions | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Put ``template`` on the face and return ``(image, mask)``: an MFSD-style crop (RGB uint8,
    size x size) and its ground truth (uint8 0/255, from the warped template alpha >= 0.5).

    ``landmarks``: 68x2 points (dlib layout) in ``face_rgb`` pixels. Everything random comes from
    ``rng``. Raises :class:`PlacementError` when the template cannot be placed sensibly. ``info``,
    if given, receives a description of the choices made.
    """
    import cv2

    o = options or SynthOptions()
    face = np.asarray(face_rgb)
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise PlacementError(
            f"face must be an HxWx3 uint8 RGB array, got {face.shape} {face.dtype}",
            "bad face array",
        )
    lm = np.asarray(landmarks, dtype=np.float64)
    why = check_landmarks(lm, face.shape)
    if why is not None:
        raise PlacementError(f"landmarks rejected: {why}", "landmarks rejected")
    size = o.size
    fr = face_frame(lm)

    # 1. template -> face homography from jittered anchors
    params = AnchorParams(
        bridge=rng.uniform(0.35, 0.7),
        top=rng.uniform(0.12, 0.28),
        bottom=rng.uniform(0.6, 0.78),
        chin_drop=rng.uniform(-0.02, 0.06),
        widen=rng.uniform(-0.03, 0.06),
    )
    dst = mask_anchors(lm, params) + rng.normal(0, o.anchor_jitter * fr.iod, (6, 2))
    h_tf, _ = cv2.findHomography(template.anchors.astype(np.float32), dst.astype(np.float32), 0)
    why = _check_warp(h_tf, template)
    if why is not None:
        raise PlacementError(f"template {template.name}: {why}", "degenerate warp")

    # 2. head roll and MFSD-like framing
    theta = float(np.clip(rng.normal(0, o.max_rotation / 2), -o.max_rotation, o.max_rotation))
    centre = lm.mean(axis=0)
    rot = _h3(cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), theta, 1.0))
    lm_r = _apply_h(rot, lm)
    loose = rng.uniform() < o.p_loose
    box = _fit_box(_crop_box(lm_r, rng, loose), rot, face.shape)
    x0, y0, bw, bh = box
    to_out = np.diag([size / bw, size / bh, 1.0]) @ np.array(
        [[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]
    )
    m_out = to_out @ rot  # face px -> output px

    # 3. render at a resolution near the source's own (real crops are often upscaled and blurry)
    lowres = rng.uniform() < o.p_lowres
    res = size * rng.uniform(0.3, 0.6) if lowres else bw * rng.uniform(0.8, 1.4)
    res = int(np.clip(round(res), max(24, int(0.25 * size)), size))
    m_r = np.diag([res / size, res / size, 1.0]) @ m_out
    face_r = _warp(face, m_r, (res, res), centre, cv2.BORDER_REFLECT_101).astype(np.float32) / 255

    mask_rgb, t_alpha, style = style_template(template, rng, textures, o)
    h_r = m_r @ h_tf
    t_centre = template.anchors.mean(axis=0)
    rgb_r = _warp(mask_rgb, h_r, (res, res), t_centre, cv2.BORDER_CONSTANT)
    alpha_r = np.clip(_warp(t_alpha, h_r, (res, res), t_centre, cv2.BORDER_CONSTANT), 0, 1)
    anchors_r = _apply_h(h_r, template.anchors)

    # 4. lighting: follow the face's own light, darken towards the mask edge, add a gradient
    inside = alpha_r > 0.5
    if inside.sum() < 16:
        raise PlacementError(
            f"template {template.name}: mask falls outside the crop", "mask off crop"
        )
    lum = cv2.GaussianBlur(_gray(face_r), (0, 0), max(1.0, res / 10))
    ring = cv2.dilate(
        inside.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=max(1, res // 40)
    )
    ref = float(lum[ring > 0].mean()) or 1.0
    shade = np.clip(lum / ref, 0.4, 1.6) ** rng.uniform(0.3, 0.9)
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    width = max(1.0, math.sqrt(inside.sum()) * rng.uniform(0.1, 0.25))
    shade *= 1 - rng.uniform(0.08, 0.35) * (1 - np.clip(dist / width, 0, 1)) ** 2
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / res - 0.5
    phi = rng.uniform(0, 2 * math.pi)
    shade *= 1 + rng.uniform(0, 0.35) * (xx * math.cos(phi) + yy * math.sin(phi))
    rgb_r = rgb_r * shade[..., None]
    if rng.uniform() < 0.35:  # soft highlight on the nose ridge
        bx, by = anchors_r[1]
        sig = max(2.0, 0.12 * float(np.linalg.norm(anchors_r[2] - anchors_r[0])))
        blob = np.exp(
            -(((xx + 0.5) * res - bx) ** 2 + ((yy + 0.5) * res - by - sig) ** 2) / (2 * sig**2)
        )
        rgb_r = rgb_r + rng.uniform(0.03, 0.12) * blob[..., None]

    # 5. soft edges and compositing
    feather = rng.uniform(0.35, 1.1) * res / 256 + 0.25
    alpha_soft = cv2.GaussianBlur(alpha_r, (0, 0), feather)
    img = face_r * (1 - alpha_soft[..., None]) + np.clip(rgb_r, 0, 1) * alpha_soft[..., None]

    # 6. occluders
    occ_alpha = np.zeros((res, res), np.float32)
    occluders: list[str] = []
    if rng.uniform() < o.p_hand:
        skin = _skin_colour(face, lm)
        ha, hc = _hand(res, anchors_r, skin, rng)
        hc = hc * (np.clip(lum / ref, 0.5, 1.5) ** 0.6)[..., None]  # lit like the face
        img = img * (1 - ha[..., None]) + hc * ha[..., None]
        occ_alpha = np.maximum(occ_alpha, ha)
        occluders.append("hand")
    hand_alpha = occ_alpha.copy()
    if rng.uniform() < o.p_hair:
        ha, hc = _hair(res, anchors_r, rng)
        img = img * (1 - ha[..., None]) + hc * ha[..., None]
        occ_alpha = np.maximum(occ_alpha, ha)
        occluders.append("hair")

    # 7. to output size, then camera effects
    interp = cv2.INTER_CUBIC if res < size else cv2.INTER_AREA
    img = cv2.resize(img, (size, size), interpolation=interp)
    if rng.uniform() < 0.6:
        img = (img - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.06, 0.06)
    if rng.uniform() < 0.4:
        img = img * (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
    if rng.uniform() < 0.3:
        img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    if rng.uniform() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.4) * size / 256)
    elif rng.uniform() < 0.08:
        n = int(rng.integers(3, 8))
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0 / n
        rot_k = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot_k, (n, n))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    if rng.uniform() < 0.45:
        img = img + rng.normal(0, rng.uniform(0.004, 0.025), img.shape).astype(np.float32)
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)

    # 8. exact ground truth from the template alpha, warped straight to output pixels
    t_alpha_full = template.rgba[..., 3].astype(np.float32) / 255.0
    gt = _warp(t_alpha_full, m_out @ h_tf, (size, size), t_centre, cv2.BORDER_CONSTANT) >= 0.5
    if occluders:
        if o.occluder_label == "mfsd":
            hand_o = cv2.resize(hand_alpha, (size, size), interpolation=cv2.INTER_LINEAR)
            gt |= hand_o >= 0.5
        else:
            occ_o = cv2.resize(occ_alpha, (size, size), interpolation=cv2.INTER_LINEAR)
            gt &= occ_o < 0.5
    frac = float(gt.mean())
    if not (o.min_mask_fraction <= frac <= o.max_mask_fraction):
        raise PlacementError(
            f"template {template.name}: mask covers {frac:.0%} of the crop "
            f"(allowed {o.min_mask_fraction:.0%}-{o.max_mask_fraction:.0%})",
            "mask too small" if frac < o.min_mask_fraction else "mask too large",
        )
    eye_y = _apply_h(m_out, lm[36:48]).mean(axis=0)[1]
    if np.nonzero(gt)[0].mean() <= eye_y:
        raise PlacementError(
            f"template {template.name}: mask centroid above the eyes", "mask above eyes"
        )
    mask = gt.astype(np.uint8) * 255
    if info is not None:
        info.update(
            template=template.name,
            style=style,
            rotation=round(theta, 2),
            loose=bool(loose),
            render_size=res,
            occluders=occluders,
            mask_fraction=round(frac, 4),
            face_to_crop=m_out.tolist(),
        )
    return image, mask
