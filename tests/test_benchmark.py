"""``run_benchmark`` and ``abanet benchmark``: result keys, naive reference, memory, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import abanet
from abanet.cli.main import app
from abanet.inference.backends import auto, registry
from abanet.inference.benchmark import PeakMemory, run_benchmark
from abanet.models.hub import resolve_model

REQUIRED = {
    "model",
    "size",
    "batch",
    "device",
    "backend",
    "images_per_s",
    "ms_per_image",
    "peak_mem_mb",
}
NAIVE = {"naive_images_per_s", "speedup_vs_naive"}


pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")


def test_run_benchmark_keys_and_consistency():
    model = abanet.create_model("abanet_lite")
    result = run_benchmark(
        model, size=64, batch=2, backend="channels_last", iters=2, warmup=1, vs_naive=True
    )
    assert set(result) >= REQUIRED | NAIVE
    assert result["model"] == "abanet_lite"
    assert (result["size"], result["batch"], result["device"]) == (64, 2, "cpu")
    assert result["backend"] == result["backend_used"] == "channels_last"
    assert result["images_per_s"] > 0 and result["naive_images_per_s"] > 0
    assert result["ms_per_image"] == pytest.approx(1000.0 / result["images_per_s"])
    assert result["speedup_vs_naive"] == pytest.approx(
        result["images_per_s"] / result["naive_images_per_s"]
    )
    assert result["peak_mem_mb"] >= 0.0
    json.dumps(result)  # serialisable as is


def test_run_benchmark_without_naive_has_no_naive_keys():
    result = run_benchmark("abanet_lite", size=64, batch=1, iters=1, warmup=0)
    assert set(result) >= REQUIRED
    assert not NAIVE & set(result)
    assert result["model_source"] == "registry, random weights"


def test_run_benchmark_auto_says_what_it_chose(monkeypatch):
    monkeypatch.setattr(auto, "auto_candidates", lambda device: ["eager", "channels_last"])
    result = run_benchmark("abanet_lite", size=64, batch=1, backend="auto", iters=1, warmup=1)
    assert result["backend"] == "auto"
    chosen = result["auto_selection"]["chosen"]
    assert result["backend_used"] == chosen
    assert chosen in registry.list_backends()


def test_run_benchmark_refuses_an_invalid_size():
    with pytest.raises(abanet.ModelError, match="not a multiple of 64"):
        run_benchmark("abanet_lite", size=96, iters=1)


def test_resolve_model_from_a_weights_folder(tmp_path):
    model = abanet.create_model("abanet_lite")
    model.save_pretrained(tmp_path / "w")
    loaded, device, source = resolve_model(str(tmp_path / "w"), "cpu")
    assert loaded.config.name == "abanet_lite" and str(device) == "cpu"
    assert "weights" in source and not loaded.training
    # a registry name is random weights only where asked for (benchmark), drawn from the seed
    a, _, source = resolve_model("abanet_lite", "cpu", random_weights=True, seed=3)
    b, _, _ = resolve_model("abanet_lite", "cpu", random_weights=True, seed=3)
    assert source == "registry, random weights"
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(abanet.ModelError, match="no trained weights ship"):
        resolve_model("abanet_lite", "cpu")
    with pytest.raises(abanet.ModelError, match="SegmentationModel"):
        resolve_model(torch.nn.Conv2d(3, 1, 1), "cpu")


def test_peak_memory_sees_an_allocation():
    meter = PeakMemory(torch.device("cpu"))
    meter.start()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
    peak = meter.peak_mb()
    del block
    if meter.method.startswith("VmHWM"):
        assert 56 <= peak <= 400
    else:  # ru_maxrss cannot be reset: only a lower bound
        assert peak >= 0


def test_cli_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["benchmark", "--model", "abanet_lite", "--size", "64", "--batch", "2"]
    args += ["--iters", "1", "--warmup", "1", "--vs-naive", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output and "speed-up" in result.output
    data = json.loads(out.read_text())
    assert set(data) >= REQUIRED | NAIVE
    assert data["batch"] == 2 and data["backend"] == "eager"

    again = CliRunner().invoke(app, args)  # never overwrite without --overwrite
    assert again.exit_code == 2
    assert "file exists" in again.output


def test_cli_benchmark_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    args = ["benchmark", "--model", "abanet_lite", "--size", "64", "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "CUDA is not available" in result.output


def test_cli_benchmark_unknown_backend():
    args = ["benchmark", "--model", "abanet_lite", "--size", "64", "--backend", "nope"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--backend 'nope': choose one of eager" in result.output
