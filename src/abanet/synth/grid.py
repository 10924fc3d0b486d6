"""A contact sheet of generated pairs: each image above the same image with its mask outlined."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from abanet.errors import DataError


def make_grid(
    pairs_dir: str | Path,
    dest: str | Path,
    count: int = 24,
    cols: int = 8,
    tile: int = 128,
    quality: int = 82,
    overwrite: bool = False,
) -> Path:
    """Write a JPEG grid of ``count`` pairs from ``pairs_dir/images`` + ``pairs_dir/masks``, taken
    evenly spaced over the sorted names. Returns ``dest``."""
    import cv2

    pairs_dir, dest = Path(pairs_dir), Path(dest)
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: already exists (pass overwrite to replace it)")
    names = sorted(p.stem for p in (pairs_dir / "images").glob("*.jpg"))
    names = [n for n in names if (pairs_dir / "masks" / f"{n}.png").is_file()]
    if not names:
        raise DataError(f"{pairs_dir}: no image/mask pairs (images/*.jpg + masks/*.png)")
    count = min(count, len(names))
    picks = [names[int(i)] for i in np.linspace(0, len(names) - 1, count).round()]
    tiles = []
    for name in picks:
        img = cv2.imread(str(pairs_dir / "images" / f"{name}.jpg"), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(pairs_dir / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        if img is None or mask is None:
            raise DataError(f"{pairs_dir}: cannot read pair {name}")
        img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        m = cv2.resize(mask, (tile, tile), interpolation=cv2.INTER_NEAREST) > 127
        over = img.copy()
        over[m] = (0.55 * over[m] + 0.45 * np.array([60, 200, 60])).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(over, contours, -1, (40, 255, 40), 1)
        tiles.append(np.vstack([img, over]))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    sheet = np.vstack(rows)
    ok, buf = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise DataError(f"{dest}: JPEG encoding failed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, dest)
    return dest
