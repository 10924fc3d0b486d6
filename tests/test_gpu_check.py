"""scripts/gpu_check.sh: the toy run writes valid JSON and markdown; cell order; skips."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "ABANET_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        "bash", str(ROOT / "scripts" / "gpu_check.sh"), "--toy", "--out", str(out),
        "--models", "abanet_lite", "--train-model", "abanet_lite",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "toy" and report["environment"]["device"] == "cpu"
    cells = {c["backend"]: c for c in report["cells"]}
    assert list(cells) == ["eager", "fp16", "tensorrt"]
    eager = cells["eager"]
    assert eager["status"] == "ok" and (eager["model"], eager["size"], eager["batch"]) == (
        "abanet_lite", 64, 1,
    )  # fmt: skip
    assert eager["images_per_s"] > 0 and eager["device"] == "cpu"
    # CUDA-only backends are skipped with the reason, not a crash
    for name in ("fp16", "tensorrt"):
        assert cells[name]["status"] == "skipped"
        assert f"backend {name} runs on cuda only" in cells[name]["reason"]
    train = report["training"]
    assert train["status"] == "ok" and train["images_per_s"] > 0
    assert train["hours_for_mfsd_100_epochs"] > 0
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check")
    assert "| abanet_lite | 64 | 1 | eager |" in md
    assert "| abanet_lite | 64 | 1 | fp16 | - |" in md and "skipped: backend fp16 runs" in md
    assert "## Training" in md


def test_cells_put_the_headline_first_and_compile_last():
    gc = _script()
    args = gc.parse_args(["--out", "x"])
    todo = gc.cells(args)
    assert len(todo) == 3 * 2 * 3 * len(gc.BACKENDS)
    headline = [c for c in todo if c[:3] == gc.HEADLINE and c[3] != "compile"]
    assert todo[: len(headline)] == headline
    assert {c[3] for c in headline} == set(gc.BACKENDS) - {"compile"}
    assert all(c[3] == "compile" for c in todo[-18:])
    assert args.compile_shapes == {(256, 64)}


def test_unavailable_backends_have_a_reason(monkeypatch):
    gc = _script()
    assert gc.skip_reason("eager", "cpu") is None
    assert "runs on cpu only" in gc.skip_reason("winograd", "cuda")
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    reason = gc.skip_reason("onnxruntime", "cuda")
    assert "has no CUDAExecutionProvider" in reason and "CPUExecutionProvider" in reason
    assert "has no TensorrtExecutionProvider" in gc.skip_reason("tensorrt", "cuda")


def test_markdown_states_the_goal():
    gc = _script()
    row = {
        "model": "abanet_r34", "size": 256, "batch": 64, "status": "ok", "images_per_s": 1234.0,
        "ms_per_image": 0.81, "peak_mem_mb": 900.0, "setup_s": 1.0,
    }  # fmt: skip
    report = {
        "environment": {
            "device": "cuda", "hardware": "GPU", "torch": "x", "onnxruntime": "y",
            "providers": ["CPUExecutionProvider"],
        },
        "mode": "full", "started": "now", "elapsed_s": 1.0, "budget_s": 420.0,
        "cells": [{**row, "backend": "fp16"}, {**row, "backend": "eager", "images_per_s": 500.0}],
        "training": {
            "model": "abanet_r34", "size": 256, "batch": 32, "setting": "16-mixed b32",
            "status": "ok", "images_per_s": 472.2, "hours_for_mfsd_100_epochs": 0.5,
        },
    }  # fmt: skip
    md = gc.markdown(report)
    assert "**met**, best 1234 images/s (fp16, batch 64)" in md
    assert "**472.2 images/s**" in md and "0.50 h" in md
