"""Detector and mask scores of every face the pipeline reports on a scene set, and what the
masked-face recall, false faces and bare faces judged masked would be under other mask-score
rules (docs/faces.md, "Where masked recall is lost")::

    .venv/bin/python scripts/scene_face_scores.py runs/scenes/v2 --detector-threshold 0.5
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from scene_benchmark import add_detector_option, detector_options

from abanet.data.io import read_image
from abanet.faces import create_detector
from abanet.faces.evaluation import match_detections
from abanet.faces.scenes import MIN_FACE_HEIGHT, SMALL_FACE, load_scenes
from abanet.inference.segmenter import Segmenter


def collect(seg: Segmenter, root: Path, limit: int | None) -> tuple[list[dict], int, int, int]:
    """Per reported face: detector score, mask score, kind (masked/bare/false/ignored), height."""
    faces, masked, small = [], 0, 0
    scenes = load_scenes(root)[:limit]
    for s in scenes:
        res = seg.segment(read_image(root / "images" / f"{s['name']}.jpg"))
        boxes = [tuple(map(float, f["box"])) for f in s["faces"]]
        dets, scores = [f.box for f in res.faces], [f.score for f in res.faces]
        m = match_detections(boxes, dets, scores, min_face_height=MIN_FACE_HEIGHT)
        counted = [i for i, b in enumerate(boxes) if b[3] - b[1] >= MIN_FACE_HEIGHT]
        truth = {d: counted[k] for k, d in m.matched_detection.items()}
        for d, f in enumerate(res.faces):
            g = truth.get(d)
            kind = "false" if g is None else ("masked" if s["faces"][g]["masked"] else "bare")
            kind = "ignored" if d in m.ignored else kind
            h = boxes[g][3] - boxes[g][1] if g is not None else f.box[3] - f.box[1]
            faces.append({"score": f.score, "mask_score": f.mask_score, "kind": kind, "h": h})
        masked_idx = [i for i in counted if s["faces"][i]["masked"]]
        masked += len(masked_idx)
        small += sum(boxes[i][3] - boxes[i][1] < SMALL_FACE for i in masked_idx)
    return faces, masked, small, len(scenes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenes", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--detector-threshold", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=None)
    add_detector_option(ap)
    args = ap.parse_args(argv)
    options = detector_options(args)
    seg = Segmenter(args.model, backend=args.backend, detector=None)
    seg.detector_name = "blazeface"
    seg._detector = create_detector("blazeface", threshold=args.detector_threshold, **options)
    faces, masked, small, n = collect(seg, args.scenes, args.limit)
    print(f"{n} scenes, {masked} masked faces ({small} < {SMALL_FACE} px); reported faces by kind:")
    print(dict(Counter(f["kind"] for f in faces)))
    print("| judged masked when | masked recall | < 64 px | false faces / scene | bare masked |")
    print("|---|---|---|---|---|")
    rules = {f"mask score >= {m}": (m, m) for m in (0.5, 0.45, 0.4, 0.35, 0.3)}
    rules |= {f"mask score >= {m} if detector >= 0.7, else 0.5": (m, 0.5) for m in (0.4, 0.3)}
    for name, (high, low) in rules.items():
        judged = [f for f in faces if f["mask_score"] >= (high if f["score"] >= 0.7 else low)]
        hits = [f for f in judged if f["kind"] == "masked"]
        print(
            f"| {name} | {len(hits) / max(masked, 1):.3f} | "
            f"{sum(f['h'] < SMALL_FACE for f in hits) / max(small, 1):.3f} | "
            f"{sum(f['kind'] == 'false' for f in judged) / max(n, 1):.3f} | "
            f"{sum(f['kind'] == 'bare' for f in judged)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
