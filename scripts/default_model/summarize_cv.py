"""Aggregate per-fold ``abanet evaluate`` outputs into a cross-validation summary.

    python scripts/default_model/summarize_cv.py runs/cv-eval/fold1 runs/cv-eval/fold2 ...

Prints, for IoU, F1 and accuracy: the mean and standard deviation over folds of each fold's
per-image mean, and the per-image mean over every test image of all folds (the paper's protocol);
with ``--baselines FILE`` also each baseline's per-image mean on exactly the same images, the
mean of the best baseline per image (an oracle) and how many images any baseline gets to
``--target``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

METRICS = ("iou", "f1", "accuracy", "precision", "recall")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folds", nargs="+", type=Path, help="evaluate --out folders, one per fold")
    ap.add_argument("--baselines", type=Path, help="per-image baselines CSV")
    ap.add_argument("--json", type=Path, help="also write the summary as JSON")
    ap.add_argument("--target", type=float, default=0.94, help="IoU target to count images at")
    args = ap.parse_args()
    per_fold: dict[str, list[float]] = defaultdict(list)
    rows: list[dict[str, str]] = []
    for folder in args.folds:
        fold_rows = read_rows(folder / "per_image.csv")
        rows += fold_rows
        for m in METRICS:
            per_fold[m].append(statistics.fmean(float(r[m]) for r in fold_rows))
    summary: dict[str, object] = {"folds": len(args.folds), "images": len(rows)}
    print(f"{len(args.folds)} folds, {len(rows)} test images")
    print("| metric | mean over folds | std over folds | per-image mean (all test images) |")
    print("|---|---:|---:|---:|")
    for m in METRICS:
        vals = per_fold[m]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        pooled = statistics.fmean(float(r[m]) for r in rows)
        summary[m] = {
            "fold_mean": statistics.fmean(vals),
            "fold_std": sd,
            "per_image": pooled,
            "per_fold": vals,
        }
        print(f"| {m} | {statistics.fmean(vals):.4f} | {sd:.4f} | {pooled:.4f} |")
    if args.baselines:
        names = {r["image"] for r in rows}
        scores: dict[str, list[float]] = defaultdict(list)
        # best of all baselines on each image: an oracle (no model can pick per image)
        best: dict[str, float] = defaultdict(float)
        for r in read_rows(args.baselines):
            if r["image"] in names:
                scores[f"{r['model']} ({r['encoder']})"].append(float(r["iou"]))
                best[r["image"]] = max(best[r["image"]], float(r["iou"]))
        print("\n| baseline (paper, trained on 8,500 MFSD images) | images | per-image mean IoU |")
        print("|---|---:|---:|")
        for name, vals in sorted(scores.items(), key=lambda kv: -statistics.fmean(kv[1])):
            print(f"| {name} | {len(vals)} | {statistics.fmean(vals):.4f} |")
        summary["baselines_iou"] = {k: statistics.fmean(v) for k, v in scores.items()}
        oracle = statistics.fmean(best.values())
        reached = sum(v >= args.target for v in best.values())
        print(
            f"\nbest baseline per image (an oracle over all {len(scores)}): {oracle:.4f}; "
            f"images where any baseline reaches IoU {args.target}: {reached} of {len(best)}"
        )
        summary["baselines_oracle_iou"] = oracle
        summary[f"baselines_images_at_{args.target}"] = reached
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
