"""Precision and recall of ``abanet data filter`` on a hand-labelled sample of photos.

    python scripts/eval_data_filter.py --data ../shared/data \\
        --labels scripts/filter_sample_labels.json --thresholds 0.3,0.5,0.7

The labels file maps photo paths (relative to ``--data``) to whether the photo shows at least one
visible masked face. Each photo goes through the same pipeline as the filter once (the shipped
model, the default detector); its verdict is then taken at each ``--min-mask-score`` threshold.
Prints a markdown table, then the photos the filter gets wrong at each threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from abanet.data.photo_filter import KEPT, UNREADABLE, decide, face_scores
from abanet.errors import ImageReadError
from abanet.inference.segmenter import Segmenter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--labels", type=Path, default=Path("scripts/filter_sample_labels.json"))
    ap.add_argument("--thresholds", default="0.3,0.5,0.7")
    ap.add_argument("--model", default="default")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--json", type=Path, default=None, help="Also write every photo's scores.")
    args = ap.parse_args()

    labels: dict[str, bool] = json.loads(args.labels.read_text())["masked"]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    segmenter = Segmenter(args.model, detector=args.detector)
    scores: dict[str, tuple[float, ...] | None] = {}
    started = time.perf_counter()
    for name in labels:
        try:
            scores[name] = face_scores(segmenter, args.data / name)
        except ImageReadError:
            scores[name] = None
    seconds = time.perf_counter() - started
    positives = sum(labels.values())
    print(
        f"{len(labels)} photos ({positives} with a masked face, {len(labels) - positives} "
        f"without), {seconds:.0f} s ({len(labels) / seconds:.1f} photos/s)\n"
    )
    print("| min mask score | kept | true pos. | false pos. | false neg. | precision | recall |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    wrong: dict[float, list[str]] = {}
    for t in thresholds:
        c: Counter[str] = Counter()
        wrong[t] = []
        for name, masked in labels.items():
            s = scores[name]
            reason = UNREADABLE if s is None else decide(s, t)
            kept = reason == KEPT
            c["tp" if kept and masked else "fp" if kept else "fn" if masked else "tn"] += 1
            if kept != masked:
                shown = " ".join(f"{x:.3f}" for x in s or ())
                wrong[t].append(f"{name}: labelled {masked}, {reason}, scores [{shown}]")
        precision = c["tp"] / max(1, c["tp"] + c["fp"])
        recall = c["tp"] / max(1, positives)
        print(
            f"| {t:g} | {c['tp'] + c['fp']} | {c['tp']} | {c['fp']} | {c['fn']} | "
            f"{precision:.3f} | {recall:.3f} |"
        )
    for t, lines in wrong.items():
        print(f"\nwrong at {t:g}: {len(lines)}")
        for line in lines:
            print(f"  {line}")
    faces = Counter(len(s) if s else 0 for s in scores.values())
    print(f"\nfaces found per photo: {dict(sorted(faces.items()))}")
    if args.json is not None:
        args.json.write_text(json.dumps({k: v for k, v in scores.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
