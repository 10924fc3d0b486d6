"""Sweep ``run_benchmark`` over models x backends x sizes; write JSON lines and a markdown table.

Usage:
    python scripts/profile_backends.py --models abanet_lite --sizes 128,256 \
        --backends eager,channels_last,onnxruntime,auto --batch 8 --out /tmp/sweep.jsonl

Each cell is one ``run_benchmark`` call (the same code as ``abanet benchmark``). Cells already in
``--out`` are skipped, so an interrupted sweep resumes. ``--max-seconds-per-image`` skips the
remaining cells of a (model, backend) pair once one size has been slower than that.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from abanet.inference.benchmark import run_benchmark

KEYS = ("model", "backend", "size", "batch", "threads")


def _done(out: Path) -> dict[tuple, dict]:
    cells = {}
    if out.is_file():
        for line in out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                cells[(r["model"], r["backend"], r["size"], r["batch"], r["threads"])] = r
    return cells


def table(rows: list[dict], backends: list[str], sizes: list[int]) -> str:
    """Markdown: one row per (model, backend), one column per size: images/s (ms/image)."""
    head = "| model | backend | " + " | ".join(f"{s}x{s}" for s in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + len(sizes))]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        for backend in backends:
            cells = []
            for size in sizes:
                hit = [
                    r
                    for r in rows
                    if (r["model"], r["backend"], r["size"]) == (model, backend, size)
                ]
                if not hit:
                    cells.append("-")
                    continue
                r = hit[-1]
                if "error" in r:
                    cells.append(r["error"])
                    continue
                text = f"{r['images_per_s']:.2f} img/s ({r['ms_per_image']:.0f} ms)"
                if backend == "auto":
                    text += f" -> {r['backend_used']}"
                    if r.get("auto_selection", {}).get("max_batch"):
                        text += f" x{r['auto_selection']['max_batch']}"
                cells.append(text)
            lines.append(f"| {model} | {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="abanet_lite")
    ap.add_argument("--backends", default="eager,channels_last,bf16,onnxruntime,compile,auto")
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-seconds-per-image", type=float, default=60.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    from abanet.inference.backends import configure_threads

    threads = configure_threads(args.threads)
    done = _done(args.out)
    for model in args.models.split(","):
        for backend in backends:
            too_slow = False
            for size in sizes:
                key = (model, backend, size, args.batch, threads)
                if key in done:
                    continue
                if too_slow:
                    row = dict(zip(KEYS, key, strict=True))
                    row["error"] = "skipped (too slow)"
                else:
                    start = time.perf_counter()
                    try:
                        row = run_benchmark(
                            model,
                            size=size,
                            batch=args.batch,
                            backend=backend,
                            iters=args.iters,
                            warmup=args.warmup,
                            num_threads=threads,
                        )
                    except Exception as exc:  # noqa: BLE001 - record and go on
                        row = dict(zip(KEYS, key, strict=True))
                        row["error"] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
                    row["wall_s"] = time.perf_counter() - start
                    if row.get("ms_per_image", 0) > 1000 * args.max_seconds_per_image:
                        too_slow = True
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
                msg = row.get("error") or f"{row['images_per_s']:.2f} img/s"
                print(
                    f"{model} {backend} {size} b{args.batch}: {msg} (load {os.getloadavg()[0]:.1f})"
                )
    rows = [r for r in _done(args.out).values() if r["batch"] == args.batch]
    print(table(rows, backends, sizes))


if __name__ == "__main__":
    main()
