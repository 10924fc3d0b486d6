"""Background negatives for training: patches of real photos that contain no face.

The patches come from the hand-labelled RMFD photos (``scripts/rmfd_face_labels.json``): only
photos with an **odd** index in the sorted label list are used (the scene benchmark draws its
backgrounds from the even ones), and a patch never touches a labelled face or ignore region
(each box grown by half its size). Patches are squares of 20-100 % of the photo's short side,
resized so that the longer side is at most 256 px; they teach the model that a crop of
shoulders, clothes, walls or street has no mask (a false face box then gets an empty mask).

    python scripts/default_model/make_negatives.py ../shared/data/rmfd-real-masked runs/negatives-bg
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2

from abanet.data.atomic import write_bytes_atomic
from abanet.data.io import read_image

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "scripts" / "rmfd_face_labels.json"


def _grow(box: list[float], f: float = 0.5) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (x1 - f * w, y1 - f * h, x2 + f * w, y2 + f * h)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, help="rmfd-real-masked folder")
    ap.add_argument("out", type=Path, help="output folder (images/ is written inside)")
    ap.add_argument("--per-photo", type=int, default=4, help="patch attempts per photo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    labels = json.loads(LABELS.read_text())["images"]
    rng = random.Random(args.seed)
    out = args.out / "images"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for idx, rel in enumerate(sorted(labels)):
        if idx % 2 == 0:
            continue
        entry = labels[rel]
        image = read_image(args.photos / rel)
        h, w = image.shape[:2]
        blocked = [_grow(b) for b in entry["faces"] + entry["ignore"]]
        for k in range(args.per_photo):
            for _ in range(30):  # rejection sampling of a free square
                side = int(rng.uniform(0.2, 1.0) * min(h, w))
                if side < 32:
                    break
                x, y = rng.randint(0, w - side), rng.randint(0, h - side)
                if not any(_overlaps((x, y, x + side, y + side), b) for b in blocked):
                    patch = image[y : y + side, x : x + side]
                    if side > 256:
                        patch = cv2.resize(patch, (256, 256), interpolation=cv2.INTER_AREA)
                    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR))
                    name = f"{Path(rel).stem}_{k}.jpg"
                    write_bytes_atomic(out / name, buf.tobytes(), overwrite=True)
                    written += 1
                    break
    print(f"{written} background patches -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
