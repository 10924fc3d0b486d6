"""The model card's worst-crop figure: the first rows of several ``abanet evaluate --grid`` files
(made with ``--grid-worst N``, so the rows are the worst crops), stacked under one header.

python scripts/default_model/worst_figure.py runs/cv-eval/fold*.png docs/images/worst_crops.jpg \
    --rows 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from abanet.plots.grid import GRID_HEADER


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grids", type=Path, nargs="+", help="grid PNGs of abanet evaluate")
    ap.add_argument("dest", type=Path, help="output JPEG")
    ap.add_argument("--rows", type=int, default=2, help="rows taken from each grid")
    ap.add_argument("--tile", type=int, default=160, help="tile size the grids were drawn with")
    args = ap.parse_args()
    grids = [Image.open(g).convert("RGB") for g in args.grids]
    width = grids[0].width
    parts = [grids[0].crop((0, 0, width, GRID_HEADER))]
    for g in grids:
        rows = min(args.rows, (g.height - GRID_HEADER) // args.tile)
        parts.append(g.crop((0, GRID_HEADER, width, GRID_HEADER + rows * args.tile)))
    sheet = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    sheet.save(args.dest, quality=85)
    print(f"wrote {args.dest} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
