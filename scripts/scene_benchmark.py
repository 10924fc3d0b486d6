"""Scene benchmark: build synthetic scenes with exact masks, run the full-photo pipeline on them.

    # build the v1 scene set (200 scenes, seed 0) from ../shared/data
    .venv/bin/python scripts/scene_benchmark.py build --out runs/scenes/v1
    # run the shipped pipeline on it (and on the 136 mfsd-dev crops, through detection and whole)
    .venv/bin/python scripts/scene_benchmark.py run --scenes runs/scenes/v1 --model default \
        --detector default --tag baseline

``run`` prints a markdown table row and writes ``<scenes>/results/<tag>.json`` and
``<tag>.csv`` (one row per scene); ``--overlays`` writes overlay PNGs to ``<tag>_overlays/``.
Metric definitions: docs/faces.md ("Scene benchmark") and ``abanet.faces.scenes``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

HEADER = (
    "| tag | detector | thr | scene IoU | IoU (scenes with mask) | clean empty scenes "
    "| masked recall | < 64 px | >= 64 px | false faces / scene | bare painted "
    "| mask outside faces | far-background photos | photos/s "
    "| crops IoU (detect) | crops IoU (whole) |"
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _progress(label: str):
    start = time.perf_counter()

    def show(i: int, n: int) -> None:
        if i == n or i % 20 == 0:
            dt = time.perf_counter() - start
            print(f"  {label} {i}/{n} ({dt:.0f} s)", file=sys.stderr, flush=True)

    return show


def cmd_build(args: argparse.Namespace) -> int:
    from abanet.faces.scenes import BackgroundBank, SceneParams, build_scenes, collect_sources

    names = None
    if args.crops_split:
        split = json.loads(Path(args.crops_split).read_text())
        names = {Path(n).name for n in split[args.crops_subset]}
    masked, bare = collect_sources(args.crops, args.portraits, args.unmasked, names)
    bank = BackgroundBank(args.backgrounds, args.labels)
    print(
        f"sources: {len(masked)} masked, {len(bare)} bare; {len(bank.entries)} background photos",
        file=sys.stderr,
    )
    data = build_scenes(
        args.out,
        masked,
        bare,
        bank,
        n=args.n,
        seed=args.seed,
        params=SceneParams(),
        overwrite=args.overwrite,
        progress=_progress("scene"),
    )
    scenes = data["scenes"]
    faces = [f for s in scenes for f in s["faces"]]
    textured = sum(s["background"] == "texture" for s in scenes)
    print(
        f"{args.out}: {len(scenes)} scenes, {sum(f['masked'] for f in faces)} masked faces, "
        f"{sum(not f['masked'] for f in faces)} bare faces, "
        f"{sum(not s['faces'] for s in scenes)} scenes without faces, "
        f"{textured} texture backgrounds"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from abanet.data.atomic import write_bytes_atomic
    from abanet.errors import DataError
    from abanet.faces.scenes import evaluate_crops, evaluate_scenes
    from abanet.inference.segmenter import Segmenter

    torch.set_num_threads(args.threads)
    scenes = Path(args.scenes)
    out_dir = Path(args.out) if args.out else scenes / "results"
    json_path, csv_path = out_dir / f"{args.tag}.json", out_dir / f"{args.tag}.csv"
    if json_path.exists() and not args.overwrite:
        raise DataError(f"{json_path}: file exists (pass --overwrite to replace it)")
    seg = Segmenter(
        model=args.model, device=args.device, threshold=args.threshold, detector=args.detector
    )
    options = detector_options(args)
    if args.detector_threshold is not None:
        options["threshold"] = args.detector_threshold
    if options:
        from abanet.faces import create_detector

        seg._detector = create_detector(args.detector, **options)
    detector = seg.detector
    report: dict[str, Any] = {
        "tag": args.tag,
        "model": args.model,
        "detector": args.detector,
        "detector_class": type(detector).__name__ if detector is not None else None,
        "detector_threshold": getattr(detector, "threshold", None),
        "detector_options": options,
        "threshold": seg.threshold,
        "scenes_dir": str(scenes),
    }
    seg.segment(np.zeros((64, 64, 3), np.uint8))  # warm-up: backend build, first call
    report["scenes"] = evaluate_scenes(
        seg.segment,
        scenes,
        csv_path=csv_path,
        overlay_dir=out_dir / f"{args.tag}_overlays" if args.overlays else None,
        limit=args.limit,
        overwrite=args.overwrite,
        progress=_progress("scene"),
    )
    crops: dict[str, Any] = {}
    names = None
    if args.crops_split:
        names = {Path(n).name for n in json.loads(Path(args.crops_split).read_text())["test"]}
    if args.crops:
        crops["detect"] = evaluate_crops(seg.segment, args.crops, args.limit, names)
        if args.whole_image_crops:
            crops["whole"] = evaluate_crops(
                lambda im: seg.segment(im, whole_image=True), args.crops, args.limit, names
            )
    report["crops"] = crops
    if args.bare:
        from abanet.faces.scenes import evaluate_bare

        report["bare"] = {
            "detect": evaluate_bare(seg.segment, args.bare, args.limit),
            "whole": evaluate_bare(
                lambda im: seg.segment(im, whole_image=True), args.bare, args.limit
            ),
        }
    write_bytes_atomic(
        json_path, (json.dumps(report, indent=1) + "\n").encode(), overwrite=args.overwrite
    )
    r = report["scenes"]
    row = [
        args.tag,
        args.detector,
        _fmt(seg.threshold, 2),
        _fmt(r["iou"]),
        _fmt(r["iou_scenes_with_mask"]),
        f"{_fmt(r['clean_scenes_without_mask'])} of {r['scenes_without_mask']}",
        _fmt(r["masked_recall"]),
        _fmt(r["masked_recall_small"]),
        _fmt(r["masked_recall_large"]),
        _fmt(r["false_faces_per_scene"], 2),
        _fmt(r["bare_painted"]),
        _fmt(r["outside_share"]),
        f"{r['far_background_photos']} of {r['scenes']}",
        _fmt(r["photos_per_s"], 1),
        _fmt(crops.get("detect", {}).get("iou")),
        _fmt(crops.get("whole", {}).get("iou")),
    ]
    print(HEADER)
    print("|" + "---|" * len(row))
    print("| " + " | ".join(row) + " |")
    print(f"wrote {json_path} and {csv_path}", file=sys.stderr)
    return 0


def add_detector_option(parser: argparse.ArgumentParser) -> None:
    """``--detector-option KEY=JSON`` (repeatable): a detector constructor argument."""
    parser.add_argument(
        "--detector-option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="detector constructor option, e.g. 'tiles=[[2, 0.6]]' or min_view=0 (repeatable)",
    )


def detector_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--detector-option`` values as constructor keyword arguments."""
    return {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.detector_option)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write a scene set")
    b.add_argument("--out", default=str(REPO / "runs" / "scenes" / "v1"))
    b.add_argument("--n", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--crops",
        nargs="*",
        default=[str(DATA / "mfsd-dev")],
        help="labelled masked-face crop folders (MFSD-like framing; add a synthetic pairs folder)",
    )
    b.add_argument(
        "--portraits",
        nargs="*",
        default=[str(DATA / "maskedface-net-seg500" / "test")],
        help="labelled FFHQ-aligned portrait folders (maskedface-net-seg500)",
    )
    b.add_argument(
        "--crops-split",
        default=str(REPO / "configs" / "splits" / "mfsd-dev-cv4" / "fold0.json"),
        help="split file: use only its --crops-subset crops ('' for all crops)",
    )
    b.add_argument("--crops-subset", default="test")
    b.add_argument(
        "--unmasked",
        default=str(REPO / "runs" / "faces-unmasked-split" / "bench"),
        help="bare faces never trained on (scripts/default_model/split_unmasked.py)",
    )
    b.add_argument("--backgrounds", default=str(DATA / "rmfd-real-masked"))
    b.add_argument("--labels", default=str(REPO / "scripts" / "rmfd_face_labels.json"))
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="run the full-photo pipeline on a scene set")
    r.add_argument("--scenes", default=str(REPO / "runs" / "scenes" / "v1"))
    r.add_argument("--model", default="default")
    r.add_argument("--detector", default="default")
    r.add_argument("--detector-threshold", type=float, default=None)
    add_detector_option(r)
    r.add_argument("--threshold", type=float, default=None, help="mask threshold (model's)")
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tag", default="run")
    r.add_argument("--out", default=None, help="results folder (default: <scenes>/results)")
    r.add_argument("--crops", default=str(DATA / "mfsd-dev"), help="'' to skip the crops")
    r.add_argument(
        "--bare",
        default=str(REPO / "runs" / "faces-unmasked-split" / "bench"),
        help="bare face crops never trained on: share painted ('' to skip)",
    )
    r.add_argument(
        "--crops-split", default="", help="score only this split file's 'test' crops (one CV fold)"
    )
    r.add_argument(
        "--whole-image-crops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the crops in whole-image mode",
    )
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--overlays", action="store_true")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=cmd_run)
    args = p.parse_args(argv)
    from abanet.errors import AbanetError

    try:
        return args.func(args)
    except AbanetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
