"""Image and mask IO used across abanet: decode anything PIL reads into uint8 RGB, binarise masks,
encode and write images (atomically, through :mod:`abanet.data.atomic`).

Conventions (see docs/data.md):

- Images come back as ``uint8`` arrays of shape ``HxWx3`` in RGB order, EXIF orientation applied.
- Transparent images (RGBA, LA, palette with transparency) are composited on **white**.
- 16-bit images are scaled to 8 bits (``value / 257``, so 65535 -> 255).
- Masks come back as ``uint8`` ``HxW`` arrays with values {0, 1}: foreground is ``raw > threshold``
  (127 by default) on the grayscale version of the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from abanet.data.atomic import write_bytes_atomic  # also importable from here (faces.scenes)
from abanet.errors import DataError, ImageReadError, ImageTooLargeError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Pixels in this range count as "neither black nor white" in a mask (see ``mask_value_problems``).
AMBIGUOUS_LOW = 32
AMBIGUOUS_HIGH = 223
# A mask is flagged as not binary when more than this fraction of its pixels is ambiguous.
AMBIGUOUS_MAX_FRACTION = 0.01

_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file or unknown format"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if "truncated" in reason.lower():
        return "file is truncated"
    return reason


def _open_decoded(
    source: str | os.PathLike[str] | bytes, name: str, max_pixels: int | None = None
) -> Image.Image:
    """Open and fully decode an image; every failure becomes an ImageReadError naming ``name``.
    An image of more than ``max_pixels`` pixels (by its header) is refused before decoding."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageReadError(f"{name}: cannot read image (empty data)")
        fp: object = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ImageReadError(f"{name}: cannot read image (file not found)")
        if path.is_dir():
            raise ImageReadError(f"{name}: cannot read image (is a directory)")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{name}: cannot read image (empty file)")
        fp = path
    try:
        with warnings.catch_warnings():  # a large size is refused below, not merely warned about
            if max_pixels is not None:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)  # type: ignore[arg-type]
        if max_pixels is not None and im.width * im.height > max_pixels:
            raise ImageTooLargeError(
                f"{name}: image of {im.width}x{im.height} pixels is over the limit of"
                f" {max_pixels} pixels"
            )
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: cannot read image (too many pixels)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{name}: cannot read image ({_describe(exc)})") from exc
    return im


def _exif_transpose(im: Image.Image, name: str) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(im)
    except Exception as exc:  # malformed EXIF blocks raise assorted errors inside PIL
        raise ImageReadError(
            f"{name}: cannot read image (bad EXIF data: {_describe(exc)})"
        ) from exc
    return out if out is not None else im


def _scale_high_depth(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map 16-bit / 32-bit integer or float grayscale data to uint8."""
    if mode == "F":
        a = arr.astype(np.float64)
        finite = a[np.isfinite(a)]
        peak = float(finite.max()) if finite.size else 0.0
        if peak <= 1.0:  # float images in [0, 1]
            a = a * 255.0
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a = arr.astype(np.int64)
    if mode == "I" and a.size and a.max() <= 255 and a.min() >= 0:
        return a.astype(np.uint8)  # 32-bit container holding 8-bit values
    a = np.clip(a, 0, 65535)
    return np.rint(a / 257.0).astype(np.uint8)


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image as uint8 RGB HxWx3 (the conventions above); ``name`` for errors."""
    mode = im.mode
    try:
        if mode == "RGB":
            out = im
        elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            mode == "P" and "transparency" in im.info
        ):
            out = _composite_on_white(im)
        elif mode.startswith("I") or mode == "F":
            gray = _scale_high_depth(np.asarray(im), "F" if mode == "F" else "I")
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        else:  # L, 1, P, CMYK, YCbCr, HSV, LAB, RGBX ...
            out = im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageReadError(f"{name}: cannot read image (unsupported mode {mode})") from exc
    arr = np.asarray(out, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"{name}: cannot read image (unexpected shape {arr.shape})")
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``uint8`` HxWx3 RGB (EXIF-rotated, alpha on white, 16-bit scaled)."""
    name = str(path)
    im = _exif_transpose(_open_decoded(path, name), name)
    return to_rgb(im, name)


def read_image_bytes(
    data: bytes, name: str = "<bytes>", max_pixels: int | None = None
) -> np.ndarray:
    """Like :func:`read_image` for encoded bytes (an upload); ``name`` is used in error messages.
    More than ``max_pixels`` pixels: :class:`ImageTooLargeError` from the header, not decoded."""
    im = _exif_transpose(_open_decoded(data, name, max_pixels), name)
    return to_rgb(im, name)


def image_mode(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int]]:
    """PIL mode and ``(width, height)`` after EXIF orientation, reading only the header."""
    name = str(path)
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{name}: cannot read image ({_describe(exc)})") from exc
    if orientation in (5, 6, 7, 8):
        size = (size[1], size[0])
    return mode, size


def _mask_gray(im: Image.Image, name: str) -> np.ndarray:
    """Grayscale uint8 version of a mask file (before thresholding)."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        return _scale_high_depth(np.asarray(im), "F" if mode == "F" else "I")
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        color = np.asarray(Image.fromarray(rgba[:, :, :3]).convert("L"), dtype=np.uint8)
        alpha = rgba[:, :, 3]
        # A uniform colour with a varying alpha is an alpha-matte mask: use the alpha.
        if color.size and color.min() == color.max() and alpha.min() != alpha.max():
            return np.ascontiguousarray(alpha)
        return color
    try:
        return np.asarray(im.convert("L"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageReadError(f"{name}: cannot read mask (unsupported mode {mode})") from exc


def read_mask_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask file as grayscale ``uint8`` ``HxW`` (0..255), EXIF-rotated, not thresholded."""
    name = str(path)
    im = _exif_transpose(_open_decoded(path, name), name)
    return _mask_gray(im, name)


def read_mask_bytes_raw(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Like :func:`read_mask_raw` for encoded bytes."""
    im = _exif_transpose(_open_decoded(data, name), name)
    return _mask_gray(im, name)


def binarize_mask(raw: np.ndarray, threshold: int = 127) -> np.ndarray:
    """``uint8`` {0, 1} mask: 1 where ``raw > threshold``. Colour input is reduced to luminance."""
    a = np.asarray(raw)
    if a.ndim == 3:
        a = np.asarray(Image.fromarray(a[:, :, :3].astype(np.uint8)).convert("L"))
    if a.dtype == bool:
        return a.astype(np.uint8)
    return (a > threshold).astype(np.uint8)


def read_mask(path: str | os.PathLike[str], threshold: int = 127) -> np.ndarray:
    """Read a mask as ``uint8`` HxW with values {0, 1}: foreground where grayscale > threshold."""
    return binarize_mask(read_mask_raw(path), threshold)


def mask_value_problems(
    raw: np.ndarray,
    threshold: int = 127,
    max_ambiguous_fraction: float = AMBIGUOUS_MAX_FRACTION,
) -> list[str]:
    """Reasons a raw grayscale mask is not a clean binary 0/255 mask (empty list when it is fine).

    Rules (documented in docs/data.md):

    - *not binary*: more than ``max_ambiguous_fraction`` (1%) of the pixels lie in 32..223.
      JPEG masks carry compression noise near the edges; that stays well under 1%.
    - *label-index mask*: the largest value is between 1 and 15 and at least 1% of the pixels are
      non-zero, i.e. a 0/1 (or class-index) mask that thresholding at 127 would turn empty.
    """
    a = np.asarray(raw)
    if a.ndim == 3:
        a = np.asarray(Image.fromarray(a[:, :, :3].astype(np.uint8)).convert("L"))
    if a.dtype == bool:
        return []
    if a.size == 0:
        return ["mask is empty (0 pixels)"]
    problems: list[str] = []
    peak = int(a.max())
    nonzero = float(np.count_nonzero(a)) / a.size
    if 1 <= peak <= 15 and nonzero >= 0.01:
        problems.append(
            f"values look like class indices (max {peak}, {nonzero:.1%} non-zero); foreground must"
            f" be > {threshold} (save masks as 0/255)"
        )
        return problems
    ambiguous = float(np.count_nonzero((a >= AMBIGUOUS_LOW) & (a <= AMBIGUOUS_HIGH))) / a.size
    if ambiguous > max_ambiguous_fraction:
        problems.append(
            f"mask is not binary: {ambiguous:.1%} of pixels are between {AMBIGUOUS_LOW} and"
            f" {AMBIGUOUS_HIGH} (limit {max_ambiguous_fraction:.0%})"
        )
    return problems


def _as_savable(array: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise DataError(f"{path}: cannot write image (dtype {a.dtype}, expected uint8 or bool)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise DataError(f"{path}: cannot write image (shape {a.shape}, expected HxW, HxWx3, HxWx4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{path}: cannot write image (empty array {a.shape})")
    return np.ascontiguousarray(a)


def encode_image(array: np.ndarray, suffix: str, quality: int = 95, name: str = "") -> bytes:
    """``array`` (uint8 HxW / HxWx3 RGB / HxWx4 RGBA, or bool mask -> 0/255) encoded in the
    format of the file ending ``suffix`` (.png, .jpg/.jpeg, .bmp, .tif/.tiff, .webp). JPEG cannot
    hold alpha, so RGBA is composited on white for JPEG."""
    where = Path(name or f"<image{suffix}>")
    fmt = _SAVE_FORMATS.get(suffix.lower())
    if fmt is None:
        raise DataError(
            f"{where}: cannot write image (unknown extension {suffix!r};"
            f" use one of {', '.join(sorted(_SAVE_FORMATS))})"
        )
    im = Image.fromarray(_as_savable(array, where))
    if fmt == "JPEG" and im.mode == "RGBA":
        im = _composite_on_white(im)
    buf = io.BytesIO()
    kwargs: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_image_atomic(
    path: str | os.PathLike[str],
    array: np.ndarray,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Save ``array`` atomically in the format its extension names (see :func:`encode_image`).

    Raises OutputExistsError if the file exists and ``overwrite`` is False.
    """
    target = Path(path)
    data = encode_image(array, target.suffix, quality, str(target))
    return write_bytes_atomic(target, data, overwrite=overwrite)


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files (by extension) in ``folder``, sorted; hidden files are skipped."""
    root = Path(folder)
    candidates = root.rglob("*") if recursive else root.iterdir()
    out = [
        p
        for p in candidates
        if p.is_file()
        and is_image_file(p)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(out)
