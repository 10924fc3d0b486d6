"""Make the sample images shipped in ``src/abanet/assets/samples``.

The face is NASA's public-domain portrait of astronaut Eileen Collins (``astronaut.png``, shipped in
scikit-image's data folder); the masks are MaskTheFace's MIT-licensed templates placed by
``abanet.synth``. Neither needs a licence beyond attribution, so the results may ship.

    pip download --no-deps scikit-image -d /tmp/sk
    unzip -o /tmp/sk/*.whl 'skimage/data/astronaut.png' -d /tmp/sk
    python scripts/make_samples.py /tmp/sk/skimage/data/astronaut.png \
        ../shared/data/mask-templates src/abanet/assets/samples
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from abanet.data.io import read_image, write_image_atomic
from abanet.synth import DlibLandmarker, SynthOptions, item_rng, load_templates, synthesize

# (file name, template family, seed): a black cloth mask, a surgical mask, an N95
CHOICES = [
    ("sample_cloth", "cloth", 3),
    ("sample_surgical", "surgical_blue", 5),
    ("sample_n95", "KN95", 7),
]


def main(face_path: str, templates_dir: str, out_dir: str) -> None:
    face = read_image(face_path)
    landmarks, how = DlibLandmarker()(face)
    if landmarks is None:
        raise SystemExit(f"{face_path}: no landmarks ({how})")
    tset = load_templates(templates_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    families = sorted({t.family for t in tset.templates})
    for name, family, seed in CHOICES:
        pool = [t for t in tset.templates if t.family == family and t.view == "front"]
        if not pool:
            raise SystemExit(f"no front template of family {family!r} (have {families})")
        rng = item_rng(seed, 0)
        image, _mask = synthesize(
            face,
            landmarks,
            pool[0],
            rng,
            textures=tset.textures,
            options=SynthOptions(size=320, p_hand=0.0, p_hair=0.0, p_loose=0.0, p_lowres=0.0),
        )
        write_image_atomic(
            out / f"{name}.jpg", np.ascontiguousarray(image), overwrite=True, quality=92
        )
        print(out / f"{name}.jpg")
    # a stand-in for a full photo: two loosely framed heads on a drawn background
    heads = []
    for i, family in enumerate(("cloth", "KN95")):
        pool = [t for t in tset.templates if t.family == family and t.view == "front"]
        image, _ = synthesize(
            face,
            landmarks,
            pool[0],
            item_rng(11 + i, 0),
            textures=tset.textures,
            options=SynthOptions(
                size=300, p_hand=0.0, p_hair=0.0, p_loose=1.0, p_lowres=0.0, max_rotation=0.0
            ),
        )
        heads.append(image)
    h, w = 540, 960
    yy, xx = np.mgrid[0:h, 0:w]
    canvas = np.dstack([160 - 50 * xx / w, 140 + 40 * yy / h, 120 + 60 * xx / w]).astype(np.uint8)
    for head, (x, y) in zip(heads, [(120, 130), (560, 100)], strict=True):
        canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
    write_image_atomic(out / "sample_two_faces.jpg", canvas, overwrite=True, quality=90)
    print(out / "sample_two_faces.jpg")


if __name__ == "__main__":
    main(*sys.argv[1:4])
