"""Repaint the masks of a labelled set with new colours, textures and patterns (same shapes, same
labels): ``maskedface-net-seg500`` has portraits with neck, hair and clothes in frame, but every
mask is one light-blue template, so a model trained on it learns the colour, not the mask.

    python scripts/restyle_labelled.py ../shared/data/maskedface-net-seg500/train \
        runs/seg500-restyled \
        [--templates ../shared/data/mask-templates] [--copies 1] [--seed 0] [--set p_keep_colour=0]

Writes ``OUT/images/<stem>_r<k>.jpg`` and ``OUT/masks/<stem>_r<k>.png`` (the unchanged label,
0/255). Existing outputs are kept (a rerun finishes an interrupted one); ``--set`` takes the
appearance options of ``abanet synth`` (``p_keep_colour``, ``p_texture``, ``p_camo``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from abanet.data.io import write_image_atomic
from abanet.data.readers import load_image, load_mask, open_dataset, paired
from abanet.synth.factory import item_rng
from abanet.synth.render import options_from_settings, restyle_mask
from abanet.synth.templates import load_templates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a labelled set (any layout abanet reads)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--templates", type=Path, default=Path("../shared/data/mask-templates"))
    ap.add_argument("--copies", type=int, default=1, help="restyled versions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="settings", action="append", default=["p_keep_colour=0"])
    args = ap.parse_args()
    options = options_from_settings(args.settings)
    textures = load_templates(args.templates).textures
    samples = paired(open_dataset(args.data)[0])
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    looks: Counter[str] = Counter()
    written = 0
    for i, sample in enumerate(samples):
        stem = Path(sample.name).stem
        for k in range(args.copies):
            image_out = args.out / "images" / f"{stem}_r{k}.jpg"
            mask_out = args.out / "masks" / f"{stem}_r{k}.png"
            if image_out.exists() and mask_out.exists():
                continue
            mask = load_mask(sample)
            rng = item_rng(args.seed, i * args.copies + k)
            image, desc = restyle_mask(load_image(sample), mask, rng, textures, options)
            looks[desc.split(":")[0]] += 1
            write_image_atomic(mask_out, mask.astype(np.uint8) * 255, overwrite=True)
            write_image_atomic(image_out, image, overwrite=True, quality=92)
            written += 1
    print(f"{written} restyled pairs in {args.out} ({len(samples)} sources); looks: {dict(looks)}")


if __name__ == "__main__":
    main()
