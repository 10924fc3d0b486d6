"""The README figure: the shipped model's overlays on the shipped samples, side by side.

abanet predict --samples -o abanet-out --overlay
python scripts/default_model/sample_figure.py abanet-out docs/images/samples_predicted.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overlays", type=Path, help="folder with <stem>_overlay.jpg files")
    ap.add_argument("dest", type=Path, help="output JPEG")
    ap.add_argument("--height", type=int, default=256, help="row height in pixels")
    args = ap.parse_args()
    files = sorted(args.overlays.glob("*_overlay.jpg"))
    if not files:
        raise SystemExit(f"{args.overlays}: no *_overlay.jpg files (run abanet predict --overlay)")
    tiles = []
    for f in files:
        im = Image.open(f).convert("RGB")
        tiles.append(im.resize((round(im.width * args.height / im.height), args.height)))
    sheet = Image.new(
        "RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), args.height), "white"
    )
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 8
    sheet.save(args.dest, quality=88)
    print(f"wrote {args.dest} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
