"""Measure face detectors on hand-checked real masked photos (rmfd-real-masked sample).

Reproduces the table in docs/faces.md::

    .venv/bin/python scripts/eval_face_detectors.py                  # all detectors installed here
    .venv/bin/python scripts/eval_face_detectors.py --detectors ssd mtcnn --sweep
    # MediaPipe pins numpy<2, so it runs in its own environment (python with mediapipe==0.10.21):
    .venv/bin/python scripts/eval_face_detectors.py --detectors mediapipe-short mediapipe-full \
        --mediapipe-python /tmp/mpvenv/bin/python

Labels: scripts/rmfd_face_labels.json (boxes per image, relative paths; no image data).
Matching rule: abanet.faces.evaluation (IoU >= 0.3 or detection centre inside the face box; faces
shorter than 16 px are ignored). Recall is reported for all counted faces and for faces at least
48 px tall (big enough to segment well); FP/img counts false positives per image; ms/img is the
mean wall time of one ``detect`` call on this machine (first image excluded as warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rmfd-real-masked"
DEFAULT_LABELS = REPO / "scripts" / "rmfd_face_labels.json"

# name -> (registry detector, constructor kwargs)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "haar": ("haar", {}),
    "haar-alt2": ("haar", {"cascade": "alt2"}),
    "ssd": ("ssd", {}),
    "ssd-long640": ("ssd", {"input_size": 640, "square": False}),
    "mtcnn": ("mtcnn", {}),
    "ssd+mtcnn": ("ssd+mtcnn", {}),
    "dlib-hog": ("dlib-hog", {}),
    "dlib-cnn": ("dlib-cnn", {}),
    "mediapipe-short": ("mediapipe", {"model_selection": 0}),
    "mediapipe-full": ("mediapipe", {"model_selection": 1}),
    "blazeface": ("blazeface", {}),
    "blazeface-whole": ("blazeface", {"tiles": False}),
    "blazeface-2+3": ("blazeface", {"tiles": [(2, 0.6), (3, 0.4)], "min_view": 0}),
    "blazeface-3": ("blazeface", {"tiles": [(3, 0.45)], "min_view": 0}),
    "blazeface-2+3+4": ("blazeface", {"tiles": [(2, 0.6), (3, 0.4), (4, 0.3)], "min_view": 0}),
    "blazeface-2+4": ("blazeface", {"tiles": [(2, 0.6), (4, 0.3)], "min_view": 0}),
    "blazeface-3+4": ("blazeface", {"tiles": [(3, 0.4), (4, 0.3)], "min_view": 0}),
}
SWEEP = {
    "ssd": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "ssd-long640": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "mtcnn": [0.7, 0.8, 0.9, 0.95, 0.98],
    "dlib-hog": [-0.5, -0.25, 0.0, 0.25],
    "dlib-cnn": [-0.5, 0.0, 0.5],
    "mediapipe-short": [0.3, 0.5, 0.7],
    "mediapipe-full": [0.3, 0.5, 0.7],
    "blazeface": [0.3, 0.4, 0.5, 0.6, 0.7],
    "blazeface-whole": [0.3, 0.5, 0.7],
    "blazeface-2+3": [0.4, 0.5, 0.6, 0.7],
    "blazeface-3": [0.4, 0.5, 0.6, 0.7],
    "blazeface-2+3+4": [0.4, 0.5, 0.6, 0.7],
    "blazeface-2+4": [0.4, 0.5, 0.6, 0.7],
    "blazeface-3+4": [0.4, 0.5, 0.6, 0.7],
}

#: detectors whose boxes above a threshold depend on the boxes below it (their merge sees them)
FLOOR_DEPENDENT = {"blazeface"}

# Runs under another interpreter (mediapipe needs numpy<2): prints one JSON line per image.
_MEDIAPIPE_WORKER = r"""
import json, sys, time
import numpy as np
from PIL import Image
from mediapipe.python.solutions import face_detection
root, model, floor = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fd = face_detection.FaceDetection(model_selection=model, min_detection_confidence=floor)
for rel in sys.stdin.read().split("\n"):
    if not rel:
        continue
    img = np.asarray(Image.open(root + "/" + rel).convert("RGB"))
    h, w = img.shape[:2]
    t, c = time.perf_counter(), time.process_time()
    res = fd.process(img)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    dets = []
    for d in res.detections or []:
        b = d.location_data.relative_bounding_box
        dets.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h,
                     float(d.score[0])])
    print(json.dumps({"image": rel, "seconds": dt, "cpu": dc, "detections": dets}), flush=True)
"""


def load_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def run_in_process(
    config: str, root: Path, images: list[str], floor: float | None
) -> tuple[dict[str, list[list[float]]], list[float], list[float]]:
    from abanet.faces import create_detector

    name, kwargs = CONFIGS[config]
    kwargs = dict(kwargs)
    if floor is not None:
        kwargs["threshold"] = floor
    detector = create_detector(name, **kwargs)
    detections: dict[str, list[list[float]]] = {}
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    for rel in images:
        image = load_image(root / rel)
        t, c = time.perf_counter(), time.process_time()
        faces = detector.detect(image)
        seconds.append(time.perf_counter() - t)
        cpu_seconds.append(time.process_time() - c)
        detections[rel] = [[*f.box, f.score] for f in faces]
    return detections, seconds, cpu_seconds


def run_mediapipe(
    config: str, root: Path, images: list[str], floor: float | None, python: str
) -> tuple[dict[str, list[list[float]]], list[float], list[float]]:
    model = CONFIGS[config][1]["model_selection"]
    proc = subprocess.run(
        [python, "-c", _MEDIAPIPE_WORKER, str(root), str(model), str(floor if floor else 0.5)],
        input="\n".join(images),
        capture_output=True,
        text=True,
        check=True,
    )
    detections, seconds, cpu_seconds = {}, [], []
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        detections[row["image"]] = row["detections"]
        seconds.append(row["seconds"])
        cpu_seconds.append(row["cpu"])
    return detections, seconds, cpu_seconds


def score(
    labels: dict[str, Any],
    detections: dict[str, list[list[float]]],
    threshold: float | None,
    big: float,
) -> dict[str, float]:
    from abanet.faces.evaluation import match_detections, split_faces

    faces = hits = big_faces = big_hits = fps = 0
    for rel, lab in labels.items():
        dets = [d for d in detections[rel] if threshold is None or d[4] >= threshold]
        res = match_detections(
            lab["faces"], [d[:4] for d in dets], [d[4] for d in dets], lab["ignore"]
        )
        counted, _ = split_faces(lab["faces"], lab["ignore"], 16.0)
        faces += res.n_faces
        hits += res.tp
        fps += res.fp
        for i, f in enumerate(counted):
            if f[3] - f[1] >= big:
                big_faces += 1
                big_hits += i in res.matched_detection
    return {
        "faces": faces,
        "recall": hits / max(faces, 1),
        "big_faces": big_faces,
        "recall_big": big_hits / max(big_faces, 1),
        "fp_per_image": fps / max(len(labels), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="rmfd-real-masked folder")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--detectors", nargs="+", choices=list(CONFIGS), default=None)
    parser.add_argument("--sweep", action="store_true", help="also report other score thresholds")
    parser.add_argument("--mediapipe-python", default=None, help="python that has mediapipe")
    parser.add_argument("--big", type=float, default=48.0, help="'big face' height in px")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    parser.add_argument("--save-detections", type=Path, default=None, help="folder for raw boxes")
    args = parser.parse_args(argv)

    labels = json.loads(args.labels.read_text())["images"]
    images = sorted(labels)
    missing = [r for r in images if not (args.data / r).is_file()]
    if missing:
        print(f"error: {args.data}: {len(missing)} labelled images missing, e.g. {missing[0]}")
        return 2

    from abanet.faces.detectors import list_detectors

    installed = list_detectors(available_only=True)
    configs = args.detectors or [
        c
        for c, (name, _) in CONFIGS.items()
        if (name == "mediapipe" and args.mediapipe_python)
        or (name != "mediapipe" and name in installed)
    ]
    rows = []
    header = (
        "| detector | threshold | recall (faces >= 16 px) | recall (>= 48 px) | FP / image "
        "| ms / image (mean) | ms / image (median) | CPU ms / image |"
    )
    print(f"{len(images)} images, labels {args.labels.name}\n")
    print(header)
    print("|" + "---|" * 8)
    for config in configs:
        name, kwargs = CONFIGS[config]
        sweep = SWEEP.get(config) if args.sweep else None
        if name == "mediapipe" and not args.mediapipe_python:
            print(f"| {config} | skipped: pass --mediapipe-python |")
            continue
        default_thr = kwargs.get("threshold", _default_threshold(name))
        thresholds = sorted(set([*(sweep or []), default_thr])) if sweep else [None]
        # BlazeFace's merge (weighted NMS, parts of heads) sees every box above its threshold, so
        # its boxes at 0.5 differ from its boxes at 0.3 kept above 0.5: one run per threshold
        runs = [[t] for t in thresholds] if name in FLOOR_DEPENDENT and sweep else [thresholds]
        for run in runs:
            floor = min(run) if sweep else None
            if name == "mediapipe":
                dets, secs, cpus = run_mediapipe(
                    config, args.data, images, floor, args.mediapipe_python
                )
            else:
                dets, secs, cpus = run_in_process(config, args.data, images, floor)
            timed = secs[1:] if len(secs) > 1 else secs
            ms_mean, ms_median = 1000 * statistics.fmean(timed), 1000 * statistics.median(timed)
            cpu_ms = 1000 * statistics.fmean(cpus[1:] if len(cpus) > 1 else cpus)
            if args.save_detections:
                args.save_detections.mkdir(parents=True, exist_ok=True)
                suffix = f"-{floor:g}" if len(runs) > 1 else ""
                (args.save_detections / f"{config}{suffix}.json").write_text(json.dumps(dets))
            for thr in run:
                s = score(labels, dets, thr, args.big)
                shown = default_thr if thr is None else thr
                mark = "" if thr is None or thr == default_thr else " (sweep)"
                shown_text = "default" if shown != shown else f"{shown:g}"  # NaN: no threshold
                print(
                    f"| {config} | {shown_text}{mark} | {s['recall']:.3f} | "
                    f"{s['recall_big']:.3f} | {s['fp_per_image']:.3f} | {ms_mean:.1f} | "
                    f"{ms_median:.1f} | {cpu_ms:.1f} |",
                    flush=True,
                )
                rows.append(
                    {
                        "detector": config,
                        "threshold": shown,
                        **s,
                        "ms_mean": ms_mean,
                        "ms_median": ms_median,
                        "cpu_ms": cpu_ms,
                    }
                )
    if rows:
        print(
            f"\nfaces counted: {rows[0]['faces']} "
            f"(of which >= {args.big:g} px: {rows[0]['big_faces']})"
        )
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, args.json)
    return 0


def _default_threshold(name: str) -> float:
    from abanet.faces.detectors import create_detector

    return float(getattr(create_detector(name), "threshold", float("nan")))


if __name__ == "__main__":
    sys.exit(main())
