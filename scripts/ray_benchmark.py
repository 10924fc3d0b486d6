"""Photos/s of ``abanet predict`` on the local engine and on ``--engine ray`` with 1 and 2 actors.

Runs, in one process and interleaved round by round, on the first ``--images`` photos of a
folder (default: ``../shared/data/rmfd-real-masked/images``: full photos, face detection on):
``local`` (one process, every core), ``local-1t`` (one torch thread), ``ray-1`` and ``ray-2``
(``--workers 1/2``, one CPU each, on an embedded local Ray started once with ``num_cpus`` =
cores). Each kind runs twice per round into fresh folders: on the first ``--small`` photos, then
on all of them. Reported: how many of the full run's masks are byte-equal to the first kind's
(``local``), the wall time and photos/s of the full run (end to end, with Ray's actor
start: process, imports, model load), and the marginal photos/s ``(images - small) / (wall -
wall_small)``, which cancels the fixed start-up cost. ``ray.init`` is timed apart. Prints a
markdown table, and JSON with ``--json``.

    python scripts/ray_benchmark.py --images 200 --rounds 2 --json ray.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from abanet.inference.backends.devices import available_cores, cpu_name, loadavg
from abanet.inference.predict import PredictJob, PredictSummary, predict_jobs
from abanet.inference.ray_engine import RayOptions, predict_ray
from abanet.inference.segmenter import Segmenter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmfd-real-masked" / "images"


def print_nothing(line: str) -> None:
    """The runs' per-file lines (none expected) are not printed."""


def same_pngs(reference: Path, other: Path) -> str:
    """How many of ``reference``'s PNGs ``other`` has byte for byte: ``"k/n"``."""
    names = sorted(p.relative_to(reference) for p in reference.rglob("*.png"))
    same = sum(
        (other / n).is_file() and (other / n).read_bytes() == (reference / n).read_bytes()
        for n in names
    )
    return f"{same}/{len(names)}"


def run_kind(
    name: str, jobs: list[PredictJob], out: Path, session: dict, local: dict
) -> PredictSummary:
    """One run of ``name`` (local, local-1t, ray-N) over ``jobs`` into ``out``."""
    if name.startswith("local"):
        return predict_jobs(local[name], jobs, out, report=print_nothing)
    workers = RayOptions(workers=int(name.split("-")[1]))
    return predict_ray(session, jobs, out, ray_options=workers, report=print_nothing)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DATA)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--small", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--runs", nargs="+", default=["local", "local-1t", "ray-1", "ray-2"])
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()
    files = sorted(p for p in args.source.iterdir() if p.is_file())[: args.images]
    jobs = [PredictJob(p, Path(p.stem)) for p in files]
    session = {"model": args.model, "backend": args.backend}
    local = {"local": Segmenter(**session), "local-1t": Segmenter(**session, num_threads=1)}
    cores = available_cores()
    report: dict[str, Any] = {"cpu": cpu_name(), "cores": cores, "load_start": loadavg()}
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    report["ray_init_s"] = round(time.perf_counter() - start, 2)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in args.runs:
                walls, load = [], loadavg()
                for part in (jobs[: args.small], jobs):
                    start = time.perf_counter()
                    out = Path(tmp) / f"{name}-{r}-{len(part)}"
                    summary = run_kind(name, part, out, session, local)
                    walls.append(time.perf_counter() - start)
                    assert len(summary.written) == len(part), summary.failed
                row = {
                    "run": name,
                    "round": r,
                    "images": len(jobs),
                    "faces": summary.faces,
                    "wall_small_s": round(walls[0], 2),
                    "wall_s": round(walls[1], 2),
                    "photos_per_s": round(len(jobs) / walls[1], 2),
                    "marginal_photos_per_s": round(
                        (len(jobs) - args.small) / max(walls[1] - walls[0], 1e-9), 2
                    ),
                    "load_before": load,
                    "masks_equal_to_first_run": same_pngs(
                        Path(tmp) / f"{args.runs[0]}-{r}-{len(jobs)}", out
                    ),
                }
                print(json.dumps(row), flush=True)
                runs.append(row)
    ray.shutdown()
    report |= {"runs": runs, "load_end": loadavg()}
    print(
        f"\n{cpu_name()}, {cores} cores; ray.init {report['ray_init_s']} s; "
        f"load {report['load_start']} -> {report['load_end']}\n"
    )
    print(
        f"| run | round | wall {args.small} s | wall s | photos/s | marginal photos/s | load |"
        " masks = local |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in runs:
        print(
            f"| {row['run']} | {row['round']} | {row['wall_small_s']} | {row['wall_s']} | "
            f"{row['photos_per_s']} | {row['marginal_photos_per_s']} | {row['load_before']} | "
            f"{row['masks_equal_to_first_run']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)
    raise SystemExit(main())
