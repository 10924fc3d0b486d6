"""Split the bare faces into training negatives and scene-benchmark distractors (no overlap).

``faces-unmasked`` holds copies (``x (copy).jpg``, byte-identical files), so faces are grouped by
file content and by name without the copy suffix; a group goes to ``bench`` when the CRC32 of
its key is divisible by 5 (about 20 %), else to ``train``. Writes two folders of symlinks:

    python scripts/default_model/split_unmasked.py ../shared/data/faces-unmasked \
        runs/faces-unmasked-split
"""

from __future__ import annotations

import argparse
import hashlib
import re
import zlib
from pathlib import Path

from abanet.data.io import IMAGE_EXTENSIONS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces", type=Path, help="faces-unmasked folder (images/ inside)")
    ap.add_argument("out", type=Path, help="writes OUT/train/images and OUT/bench/images")
    args = ap.parse_args(argv)
    files = sorted(
        p for p in (args.faces / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    key: dict[str, str] = {}  # content digest or base name -> group key (union of both)
    groups: dict[Path, str] = {}
    for f in files:
        digest = hashlib.md5(f.read_bytes()).hexdigest()
        base = re.sub(r" \((another )?copy\)$", "", f.stem)
        g = key.get(digest) or key.get(base) or base
        key[digest] = key[base] = g
        groups[f] = g
    counts = {"train": 0, "bench": 0}
    for f, g in groups.items():
        part = "bench" if zlib.crc32(g.encode()) % 5 == 0 else "train"
        dst = args.out / part / "images" / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(f.resolve())
        counts[part] += 1
    print(f"{len(files)} faces in {len(set(groups.values()))} groups: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
