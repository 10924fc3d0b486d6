"""How far masks reach past their first crop on full photos (docs/faces.md, "Speed on real photos").

For every face the pipeline segments again in a larger crop (``FaceResult.extended``), prints how
far its mask goes below the first crop and past its left/right edges, in first-crop sides::

    .venv/bin/python scripts/second_crop_reach.py runs/rmfd300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from abanet.data.io import IMAGE_EXTENSIONS, read_image
from abanet.inference.segmenter import Segmenter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, help="folder of photos")
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="onnxruntime")
    args = ap.parse_args(argv)
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    seg = Segmenter(args.model, backend=args.backend)
    plans = [seg.plan(read_image(f)) for f in files]
    faces = 0
    below, sides = [], []
    for done in seg.batcher().drain([(None, p) for p in plans]):
        faces += len(done.plan.faces) if done.plan.boxes is not None else 0
        for i, (box, prob) in done.extensions.items():
            x1, _, x2, y2 = done.plan.boxes[i]
            side = x2 - x1
            rows = np.flatnonzero((prob >= seg.threshold).any(1)) + box[1]
            cols = np.flatnonzero((prob >= seg.threshold).any(0)) + box[0]
            if rows.size:
                below.append((rows.max() + 1 - y2) / side)
                sides.append(max(x1 - cols.min(), cols.max() + 1 - x2, 0) / side)
    q = [0.5, 0.75, 0.9]
    print(f"{len(files)} photos, {faces} cropped faces, {len(below)} segmented again")
    print("below the first crop (sides), quantiles", q, np.quantile(below, q).round(3))
    print("past its left/right edge (sides), quantiles", q, np.quantile(sides, q).round(3))
    print(f"held by a first crop 1.25x taller: {np.mean(np.array(below) <= 0.25):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
