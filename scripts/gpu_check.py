"""The prepared GPU check (issue 15): inference speed of every backend and training speed, written
as one JSON and one markdown file. Run it through ``scripts/gpu_check.sh`` (which sets up the
environment and a hard time limit); ``--toy`` runs the same code at toy settings on CPU.

    python scripts/gpu_check.py --out DIR [--toy] [--budget 420] [--models ...] [--sizes ...]

Cells (model x size x batch x backend) are ``abanet benchmark`` runs
(:func:`abanet.inference.benchmark.run_benchmark`, in this one process so that each model is built
once, with the seeded random weights ``abanet benchmark`` gives a registry name). The headline
cells (``abanet_r34`` 256x256 batch 64, every backend) and the training measurement
(``abanet_r34`` with ``16-mixed``) run first, then the rest. A backend that cannot run on the
machine (no CUDA execution provider in onnxruntime, no TensorRT, no compiler) is recorded as
skipped with the reason; once the time budget is spent the remaining cells are recorded as
skipped too. Both files are rewritten after every cell, so a run stopped by the time limit still
leaves every finished cell.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from abanet.data.atomic import write_bytes_atomic
from abanet.errors import AbanetError
from abanet.inference.benchmark import run_benchmark
from abanet.models.hub import resolve_model

MODELS = ("abanet_r34", "basnet_r34", "abanet_lite")
SIZES = (256, 512)
BATCHES = (64, 8, 1)
BACKENDS = ("eager", "channels_last", "fp16", "bf16", "onnxruntime", "tensorrt", "compile")
HEADLINE = ("abanet_r34", 256, 64)
GOAL_IMAGES_PER_S = 1000.0  # abanet_r34 at 256x256 (the paper reports 75 FPS)
MFSD_TRAIN_IMAGES = 8500  # the paper's training split
EPOCHS = 100  # abanet train's default trainer.max_epochs
TOY = {
    "device": "cpu",
    "sizes": [64],
    "batches": [1],
    "backends": ["eager", "fp16", "tensorrt"],  # the CUDA-only two are reported as skipped
    "iters": 1,
    "warmup": 0,
    "train_size": 64,
    "train_batch": 2,
    "train_steps": 1,
    "train_setting": "fp32-cl",
}


def cells(args: argparse.Namespace) -> list[tuple[str, int, int, str]]:
    """Every (model, size, batch, backend), headline first; compile last (minutes per shape)."""
    grid = [
        (m, s, b, k)
        for k in args.backends
        for m in args.models
        for s in args.sizes
        for b in args.batches
    ]
    first = [c for c in grid if c[:3] == HEADLINE and c[3] != "compile"]
    rest = [c for c in grid if c not in first and c[3] != "compile"]
    return first + rest + [c for c in grid if c[3] == "compile"]


def skip_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here, checked before any model is built."""
    from abanet.inference.backends.registry import check_backend

    try:
        check_backend(backend, torch.device(device).type)
    except AbanetError as exc:
        return str(exc)
    if device.startswith("cuda") and backend in ("onnxruntime", "tensorrt"):
        import onnxruntime as ort

        provider = "TensorrtExecutionProvider" if backend == "tensorrt" else "CUDAExecutionProvider"
        if provider not in ort.get_available_providers():
            return (
                f"onnxruntime {ort.__version__} has no {provider} "
                f"(providers: {', '.join(ort.get_available_providers())})"
            )
    return None


_MODELS: dict[str, torch.nn.Module] = {}


def built(name: str, device: str) -> torch.nn.Module:
    """Model ``name`` with seeded random weights (as ``abanet benchmark`` builds it), built once."""
    if name not in _MODELS:
        _MODELS[name] = resolve_model(name, device, random_weights=True, seed=0).model
    return _MODELS[name]


def run_cell(model: str, size: int, batch: int, backend: str, args: argparse.Namespace) -> dict:
    row: dict[str, Any] = {"model": model, "size": size, "batch": batch, "backend": backend}
    reason = skip_reason(backend, args.device)
    if reason is not None:
        return {**row, "status": "skipped", "reason": reason}
    if backend == "compile" and (size, batch) not in args.compile_shapes:
        return {**row, "status": "skipped", "reason": "compile runs at --compile-shapes only"}
    start = time.perf_counter()
    try:
        result = run_benchmark(
            built(model, args.device),
            size=size,
            batch=batch,
            device=args.device,
            backend=backend,
            iters=args.iters,
            warmup=args.warmup,
        )
        row.update(status="ok", **{k: v for k, v in result.items() if k not in row})
        row["model_source"] = "registry, random weights"
    except torch.cuda.OutOfMemoryError as exc:
        row.update(status="failed", reason=f"out of memory: {str(exc).splitlines()[0]}")
    except Exception as exc:  # noqa: BLE001 - record and go on: one failure must not stop the check
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row.update(status="failed", reason=f"{type(exc).__name__}: {first}"[:300])
        row["traceback"] = traceback.format_exc(limit=3)
    row["wall_s"] = time.perf_counter() - start
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def run_training(args: argparse.Namespace) -> dict:
    """Training images/s of ``--train-model`` (``scripts/train_throughput.py``'s step)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import train_throughput as tt

    setting = next(s for s in tt.settings(args.train_batch) if s.key == args.train_setting)
    row: dict[str, Any] = {
        "model": args.train_model,
        "size": args.train_size,
        "batch": args.train_batch,
        "setting": setting.name,
        "steps": args.train_steps,
    }
    try:
        ips = tt.time_steps(
            args.train_model, setting, args.train_size, args.train_steps, 1, args.device
        )
    except Exception as exc:  # noqa: BLE001 - recorded
        return {**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    hours = MFSD_TRAIN_IMAGES * EPOCHS / ips / 3600
    return {**row, "status": "ok", "images_per_s": ips, "hours_for_mfsd_100_epochs": hours}


def markdown(report: dict) -> str:
    """The report as tables: one row per cell, then training and the goals."""
    env = report["environment"]
    lines = [
        "# GPU check",
        "",
        f"- device: {env['device']} ({env['hardware']}); torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']} (providers {', '.join(env['providers'])}); {report['mode']} mode",
        f"- started {report['started']}, {report['elapsed_s']:.0f} s so far; budget "
        f"{report['budget_s']:.0f} s",
        "",
        "| model | size | batch | backend | images/s | ms/image | peak MB | setup s | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["cells"]:
        if r["status"] == "ok":
            lines.append(
                f"| {r['model']} | {r['size']} | {r['batch']} | {r['backend']} | "
                f"{r['images_per_s']:.1f} | {r['ms_per_image']:.2f} | {r['peak_mem_mb']:.0f} | "
                f"{r['setup_s']:.1f} | ok |"
            )
        else:
            lines.append(
                f"| {r['model']} | {r['size']} | {r['batch']} | {r['backend']} | - | - | - | - | "
                f"{r['status']}: {r.get('reason', '')} |"
            )
    t = report.get("training")
    if t:
        lines += ["", "## Training", ""]
        if t["status"] == "ok":
            lines.append(
                f"{t['model']} {t['size']}x{t['size']}, {t['setting']}: "
                f"**{t['images_per_s']:.1f} images/s**; {MFSD_TRAIN_IMAGES} images x {EPOCHS} "
                f"epochs would take {t['hours_for_mfsd_100_epochs']:.2f} h (goal: < 1 h)"
            )
        else:
            lines.append(f"{t['model']}: {t['status']}: {t.get('reason', '')}")
    head = [
        r
        for r in report["cells"]
        if r["status"] == "ok" and (r["model"], r["size"]) == HEADLINE[:2]
    ]
    if head:
        best = max(head, key=lambda r: r["images_per_s"])
        met = "met" if best["images_per_s"] >= GOAL_IMAGES_PER_S else "NOT met"
        lines += [
            "",
            "## Goal",
            "",
            f"abanet_r34 at 256x256 >= {GOAL_IMAGES_PER_S:.0f} images/s: **{met}**, best "
            f"{best['images_per_s']:.0f} images/s ({best['backend']}, batch {best['batch']})",
        ]
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict[str, Any]:
    import onnxruntime as ort

    from abanet.inference.backends.devices import cpu_name

    hardware = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name()
    return {
        "device": device,
        "hardware": hardware,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json/.md")
    ap.add_argument(
        "--toy", action="store_true", help="CPU, 64x64, batch 1, eager (+ 2 skipped), one run"
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    ap.add_argument("--compile-shapes", nargs="+", default=["256x64"], help="SIZExBATCH")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; then cells are skipped")
    ap.add_argument("--train-model", default="abanet_r34")
    ap.add_argument("--train-size", type=int, default=256)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--train-setting", default="fp16-cl", help="train_throughput.py setting key")
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args(argv)
    if args.toy:
        for key, value in TOY.items():
            setattr(args, key, value)
    args.compile_shapes = {tuple(int(v) for v in s.split("x")) for s in args.compile_shapes}
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {
        "mode": "toy" if args.toy else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "budget_s": args.budget,
        "environment": environment(args.device),
        "cells": [],
        "training": None,
    }

    def save() -> None:
        report["elapsed_s"] = time.time() - started
        text = json.dumps(report, indent=2, default=str) + "\n"
        write_bytes_atomic(args.out / "gpu_check.json", text.encode(), overwrite=True)
        write_bytes_atomic(args.out / "gpu_check.md", markdown(report).encode(), overwrite=True)

    todo = cells(args)
    n_first = sum(1 for c in todo if c[:3] == HEADLINE and c[3] != "compile")
    for i, (model, size, batch, backend) in enumerate(todo):
        if i == n_first and not args.no_train:  # training right after the headline cells
            report["training"] = run_training(args)
            save()
        if time.time() - started > args.budget:
            row = {"model": model, "size": size, "batch": batch, "backend": backend}
            report["cells"].append({**row, "status": "skipped", "reason": "time budget spent"})
        else:
            report["cells"].append(run_cell(model, size, batch, backend, args))
            r = report["cells"][-1]
            speed = f"{r['images_per_s']:.1f} images/s" if r["status"] == "ok" else r["reason"]
            print(f"{model} {size} b{batch} {backend}: {r['status']} {speed}", flush=True)
        save()
    if report["training"] is None and not args.no_train:
        report["training"] = run_training(args)
    save()
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
