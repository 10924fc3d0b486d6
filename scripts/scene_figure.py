"""Two rows of scene-benchmark overlays as one figure (the model card's scenes picture).

    python scripts/scene_figure.py runs/scenes/v2/results/croprule_overlays \
        docs/images/scenes_shipped.jpg --top scene_0057 scene_0089 scene_0177 \
        --bottom scene_0052 scene_0122 scene_0028 scene_0018 --overwrite
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from abanet.data.io import read_image, write_image_atomic


def row(folder: Path, names: list[str], height: int) -> np.ndarray:
    """The named overlays side by side, each scaled to ``height`` pixels."""
    tiles = []
    for name in names:
        image = read_image(folder / f"{name}.png")
        width = round(image.shape[1] * height / image.shape[0])
        tiles.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return np.hstack(tiles)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overlays", type=Path, help="scene_benchmark.py run --overlays folder")
    ap.add_argument("out", type=Path)
    ap.add_argument("--top", nargs="+", required=True, help="scenes of the first row")
    ap.add_argument("--bottom", nargs="+", required=True, help="scenes of the second row")
    ap.add_argument("--height", type=int, default=260)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = ap.parse_args(argv)
    rows = [row(args.overlays, names, args.height) for names in (args.top, args.bottom)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_image_atomic(args.out, np.vstack(rows)[:-6], overwrite=args.overwrite)
    print(f"wrote {args.out} ({width}x{sum(r.shape[0] for r in rows) - 6})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
