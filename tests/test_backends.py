"""Inference backends: every backend runs and agrees with eager; auto rejects unfaithful ones."""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

import abanet
from abanet.errors import AbanetError, ModelError
from abanet.inference import backends as B
from abanet.inference.backends import auto, devices, registry, runtimes
from abanet.inference.backends.registry import BackendSpec
from abanet.models.base import SegmentationModel
from abanet.models.blocks import ConvBNReLU
from abanet.models.config import ModelConfig


class TinyNet(SegmentationModel):
    """Conv-BN-ReLU, a ResNet basic block and a 1x1 head; ``delay`` slows forward down."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(ModelConfig(name="tiny_test", input_size=64, size_divisor=8))
        self.stem = ConvBNReLU(3, 8, stride=2)
        self.block = BasicBlock(8, 8)
        self.head = nn.Conv2d(8, 1, 1)
        self.delay = delay
        for m in self.modules():  # non-trivial BatchNorm statistics, so folding is exercised
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.delay:
            time.sleep(self.delay)
        h = self.block(self.stem(x))
        logits = self.head(h)
        return [nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear")]


pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")


@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


_REAL_AVAILABLE_CORES = devices.available_cores
# every registered backend that runs on CPU, but compile (slow: a test of its own), auto and int8
# (calibrated: tests/test_int8.py)
ON_CPU = [
    n for n in registry.list_backends("cpu") if n not in ("compile", "auto", "onnxruntime_int8")
]


def test_registry_lists_every_backend_once():
    assert registry.list_backends() == [
        "eager", "eager_fused", "channels_last", "winograd", "bf16", "fp16", "onnxruntime",
        "tensorrt", "onnxruntime_int8", "compile", "auto",
    ]  # fmt: skip
    assert "fp16" not in ON_CPU and "winograd" not in registry.list_backends("cuda")
    for name in registry.list_backends():
        spec = registry.get_backend_spec(name)
        assert set(spec.auto_rank) <= set(spec.devices), name  # auto only tries where it runs
        assert callable(spec.load()), name


def test_auto_candidates_come_from_the_registry_in_rank_order():
    cpu = ["eager", "channels_last", "eager_fused", "winograd", "onnxruntime", "bf16"]
    assert registry.auto_candidates("cpu") == cpu
    assert registry.auto_candidates("cuda") == [
        "eager",
        "channels_last",
        "fp16",
        "bf16",
        "onnxruntime",
    ]


def test_auto_only_tries_the_backends_the_registry_marks(tiny, monkeypatch):
    class Marked(runtimes.EagerBackend):
        pass

    specs = {
        "eager": registry.get_backend_spec("eager"),
        "marked": BackendSpec("marked", Marked, "a candidate", auto_rank={"cpu": 1}),
        "unmarked": BackendSpec("unmarked", Marked, "not a candidate"),
        "cuda_only": BackendSpec("cuda_only", Marked, "x", ("cuda",), auto_rank={"cuda": 1}),
    }
    monkeypatch.setattr(registry, "_REGISTRY", specs)
    _, selection = B.select_backend(tiny, "cpu", size=32, batch=1, use_cache=False)
    assert [c.name for c in selection.candidates] == ["eager", "marked"]
    assert selection.chosen in ("eager", "marked")


def test_a_backend_on_a_device_it_does_not_run_on_is_refused(tiny):
    with pytest.raises(B.BackendError, match="backend winograd runs on cpu only, not cuda"):
        registry.check_backend("winograd", "cuda")
    assert registry.check_backend("winograd", "cpu").needs_shape


@pytest.mark.parametrize("name", ON_CPU)
def test_backend_shape_range_and_agreement(name, tiny, batch):
    reference = torch.sigmoid(tiny(batch))
    backend = B.create_backend(tiny, name, "cpu")
    assert backend.name == name
    probs = backend.run(batch)
    assert probs.shape == (2, 1, 64, 64)
    assert probs.dtype == torch.float32
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    tol = 5e-2 if name == "bf16" else 1e-5
    assert torch.allclose(probs, reference, atol=tol)
    # a different batch and size also works (dynamic shapes)
    other = backend.run(torch.randn(3, 3, 32, 48))
    assert other.shape == (3, 1, 32, 48)


def test_backends_leave_the_callers_model_alone(tiny, batch):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    for name in ("eager_fused", "channels_last"):
        B.create_backend(tiny, name, "cpu").run(batch)
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert tiny.stem[0].weight.is_contiguous()
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny.modules())


def test_onnxruntime_backend_caches_the_export(tiny, batch, tmp_path):
    first = B.create_backend(tiny, "onnxruntime", "cpu")
    assert first.onnx_path.is_file()
    assert first.onnx_path.parent == tmp_path / "cache" / "onnx"
    stamp = first.onnx_path.stat().st_mtime_ns
    second = B.create_backend(tiny, "onnxruntime", "cpu")
    assert second.onnx_path == first.onnx_path
    assert second.onnx_path.stat().st_mtime_ns == stamp  # reused, not re-exported
    # idle threads sleep: the face detector shares the cores in `abanet predict`
    options = second.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    changed = copy.deepcopy(tiny)
    changed.head.bias.data += 1.0
    assert B.cached_onnx_path(changed) != first.onnx_path  # other weights, other file


def test_nnpack_conv_matches_conv():
    if not torch.backends.nnpack.is_available():
        pytest.skip("no NNPACK in this build")
    conv = nn.Conv2d(5, 7, 3, padding=1).eval()
    x = torch.randn(2, 5, 20, 24)
    assert runtimes.nnpack_eligible(conv)
    assert not runtimes.nnpack_eligible(nn.Conv2d(5, 7, 3, stride=2))
    assert not runtimes.nnpack_eligible(nn.Conv2d(5, 5, 3, groups=5))
    assert not runtimes.nnpack_eligible(nn.Conv2d(5, 7, 3, dilation=2))
    assert torch.allclose(runtimes.NnpackConv2d(conv)(x), conv(x), atol=1e-4)


def test_winograd_swaps_the_faster_layers(tiny, batch, monkeypatch):
    if not torch.backends.nnpack.is_available():
        pytest.skip("no NNPACK in this build")
    monkeypatch.setattr(runtimes, "nnpack_is_faster", lambda conv, shape: True)
    backend = B.create_backend(tiny, "winograd", size=64, batch=2)
    assert (backend.swapped, backend.eligible) == (2, 2)  # the basic block's two 3x3 convs
    assert "2 of 2 3x3 convs on NNPACK" in backend.describe()
    assert isinstance(backend.model.block.conv1, runtimes.NnpackConv2d)
    assert torch.allclose(backend.run(batch), torch.sigmoid(tiny(batch)), atol=1e-5)
    monkeypatch.setattr(runtimes, "nnpack_is_faster", lambda conv, shape: False)
    assert B.create_backend(tiny, "winograd", size=64).swapped == 0


@pytest.mark.slow
def test_compile_backend_runs(tiny, batch):
    backend = B.create_backend(tiny, "compile", "cpu")
    probs = backend.run(batch)
    assert probs.shape == (2, 1, 64, 64)
    assert torch.allclose(probs, torch.sigmoid(tiny(batch)), atol=1e-4)
    assert (2, 3, 64, 64) in backend.compile_seconds


def test_fp16_needs_cuda(tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(B.BackendError, match="backend fp16 runs on cuda only, not cpu"):
        B.create_backend(tiny, "fp16", "cpu")


def test_cuda_request_without_cuda_is_a_clear_error(tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(AbanetError, match="CUDA is not available"):
        B.create_backend(tiny, "eager", "cuda")


def test_unknown_backend_and_device(tiny):
    every = ", ".join(registry.list_backends())
    with pytest.raises(B.BackendError, match=f"unknown backend 'openvino'; choose one of {every}$"):
        B.create_backend(tiny, "openvino")
    with pytest.raises(B.BackendError, match="unknown device 'tpu'"):
        B.create_backend(tiny, "eager", "tpu")


def test_run_checks_the_input(tiny):
    backend = B.create_backend(tiny, "eager")
    with pytest.raises(AbanetError, match=r"\(B, 3, H, W\)"):
        backend.run(torch.zeros(3, 64, 64))
    with pytest.raises(ModelError, match="not a multiple of 8"):
        backend.run(torch.zeros(1, 3, 60, 64))


def test_threads_use_every_core(tiny, monkeypatch):
    monkeypatch.setattr(devices, "available_cores", _REAL_AVAILABLE_CORES)
    B.create_backend(tiny, "eager")
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    B.create_backend(tiny, "eager", num_threads=1)
    assert torch.get_num_threads() == 1


# -- BatchNorm folding --------------------------------------------------------------------------


def test_fold_batchnorm_keeps_outputs(tiny, batch):
    fused = copy.deepcopy(tiny)
    assert B.fold_batchnorm(fused) == 3  # stem + block.bn1 + block.bn2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(fused(batch), tiny(batch), atol=1e-5)


def test_fold_batchnorm_on_abanet_lite():
    model = abanet.create_model("abanet_lite").eval()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fused = copy.deepcopy(model)
    assert B.fold_batchnorm(fused) == n_bn
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(fused(x), model(x), atol=1e-4)


def test_fold_batchnorm_skips_training_mode():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    assert B.fold_batchnorm(seq) == 0


# -- faithfulness and auto ----------------------------------------------------------------------


def test_compare_outputs_hand_computed():
    ref = torch.tensor([[[[0.2, 0.6], [0.9, 0.4]]]])
    probs = torch.tensor([[[[0.2, 0.4], [0.905, 0.4]]]])
    agree, diff = auto.compare_outputs(probs, ref, threshold=0.5)
    assert agree == pytest.approx(0.75)
    assert diff == pytest.approx(0.2)
    assert not auto.is_faithful(agree, diff)
    assert auto.is_faithful(0.996, 0.01)
    assert not auto.is_faithful(0.994, 0.0)


def test_calibration_batch_mixes_random_and_structured():
    x = auto.calibration_batch(3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    img = x * 0.25 + 0.5
    assert float(img.min()) >= -1e-6 and float(img.max()) <= 1 + 1e-6
    # the structured image is smooth: neighbouring pixels differ far less than in noise
    rough = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    assert rough[1] < rough[0] / 3 and rough[1] < rough[2] / 3


class _Unfaithful(B.Backend):
    """Fast but wrong: flips every probability."""

    def __init__(self, model, device):
        fast = copy.deepcopy(model)
        fast.delay = 0.0
        super().__init__(fast, device)

    def logits(self, x):
        return -self.model(x)


class _SlightlyOff(_Unfaithful):
    """Fast and faithful: probabilities moved 0.002 away from the threshold (same mask)."""

    def run(self, batch):
        probs = super().run(batch)
        return (probs + 0.002 * torch.sign(probs - 0.5)).clamp(0, 1)

    def logits(self, x):
        return self.model(x)


@pytest.fixture
def liars(monkeypatch):
    """``unfaithful`` and ``slightly_off`` in the registry (for this test only)."""
    for name, factory in (("unfaithful", _Unfaithful), ("slightly_off", _SlightlyOff)):
        monkeypatch.setitem(registry._REGISTRY, name, BackendSpec(name, factory, "a test backend"))


class _Steady(_Unfaithful):
    """Faithful, with a fixed cost per call (``delay`` seconds) that dwarfs the tiny net's."""

    delay = 0.0

    def logits(self, x):
        time.sleep(self.delay)
        return self.model(x)


def test_auto_prefers_a_nearly_as_fast_backend_when_asked(monkeypatch):
    for name, delay in (("steady_20ms", 0.020), ("steady_22ms", 0.022), ("steady_60ms", 0.060)):
        factory = type(name, (_Steady,), {"delay": delay})
        monkeypatch.setitem(registry._REGISTRY, name, BackendSpec(name, factory, "a test backend"))
    model = TinyNet(delay=0.1).eval()  # eager: far slower than all three
    kwargs = dict(
        size=32, batch=1, candidates=["eager", "steady_20ms", "steady_22ms", "steady_60ms"]
    )
    kwargs["disk_cache"] = False
    # 1.1x the fastest is within the margin; 3x is not
    assert auto.PREFER_MARGIN == 1.25
    _, sel = B.select_backend(model, "cpu", prefer=("steady_22ms",), **kwargs)
    assert sel.chosen == "steady_22ms"
    _, sel = B.select_backend(model, "cpu", prefer=("steady_60ms",), **kwargs)
    assert sel.chosen in ("steady_20ms", "steady_22ms") and sel.from_cache is None


@pytest.mark.usefixtures("liars")
def test_auto_rejects_an_unfaithful_backend():
    model = TinyNet(delay=0.05).eval()  # eager is slow, the liar is fast
    backend, selection = B.select_backend(
        model,
        "cpu",
        size=64,
        batch=2,
        candidates=["eager", "unfaithful"],
        use_cache=False,
    )
    assert selection.chosen == "eager"
    assert backend.name == "eager"
    liar = {c.name: c for c in selection.candidates}["unfaithful"]
    assert not liar.faithful
    assert liar.pixel_agreement < 0.995 or liar.max_prob_diff > 0.01
    assert "not faithful" in liar.skipped
    assert "unfaithful: skipped" in selection.summary()


@pytest.mark.usefixtures("liars")
def test_auto_picks_the_fastest_faithful_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "loadavg", lambda: 0.0)  # a quiet machine: decisions go to disk
    model = TinyNet(delay=0.05).eval()
    kwargs = dict(
        size=64,
        batch=2,
        candidates=["eager", "unfaithful", "slightly_off"],
    )
    backend, selection = B.select_backend(model, "cpu", **kwargs)
    assert selection.chosen == "slightly_off"
    assert isinstance(backend, _SlightlyOff)
    assert backend.selection is selection
    results = {c.name: c for c in selection.candidates}
    assert results["slightly_off"].faithful
    assert results["slightly_off"].max_prob_diff == pytest.approx(0.002, abs=1e-6)
    assert results["eager"].seconds_per_image > results["slightly_off"].seconds_per_image
    assert "over 1.5x slower" in results["eager"].skipped  # 50 ms sleep vs a tiny net
    assert results["slightly_off"].seconds_per_image_chunk1 is not None
    assert selection.max_batch in (None, 1) and backend.max_batch == selection.max_batch

    again, cached = B.select_backend(model, "cpu", **kwargs)
    assert cached.from_cache == "memory" and again.name == "slightly_off"

    B.clear_auto_cache()
    assert (tmp_path / "cache" / "auto_backend.json").is_file()
    from_disk, cached = B.select_backend(model, "cpu", **kwargs)
    assert cached.from_cache == "disk" and from_disk.name == "slightly_off"

    # another calibration size is another decision
    _, fresh = B.select_backend(model, "cpu", **{**kwargs, "size": 32})
    assert fresh.from_cache is None


def test_auto_measures_again_when_a_loaded_decision_meets_a_quiet_machine(tmp_path, monkeypatch):
    # the rule by hand: half the cores busy then, quieter by half a core now
    assert auto.measured_under_load(1.9, 1.3, 2) and auto.measured_under_load(1.0, 0.5, 2)
    assert not auto.measured_under_load(1.9, 1.5, 2)  # about as loaded: keep it
    assert not auto.measured_under_load(0.6, 0.0, 2)  # timed on a quiet machine: keep it
    assert not auto.measured_under_load(None, 0.0, 2)  # older cache entries carry no load
    monkeypatch.setattr(auto, "available_cores", lambda: 2)
    load = {"now": 1.9}
    monkeypatch.setattr(auto, "loadavg", lambda: load["now"])
    tiny = TinyNet().eval()
    kwargs = dict(size=32, batch=1, candidates=["eager", "slightly_off"])
    B.select_backend(tiny, "cpu", **kwargs)  # timed at 1.9 (not busy enough to stay off disk)
    B.clear_auto_cache()
    load["now"] = 1.5
    assert B.select_backend(tiny, "cpu", **kwargs)[1].from_cache == "disk"
    B.clear_auto_cache()
    load["now"] = 0.3
    _, fresh = B.select_backend(tiny, "cpu", **kwargs)
    assert fresh.from_cache is None and fresh.loadavg == 0.3


def test_auto_keeps_busy_machine_decisions_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "loadavg", lambda: 50.0)
    tiny = TinyNet().eval()
    B.select_backend(tiny, "cpu", size=32, batch=1, candidates=["eager"])
    assert not (tmp_path / "cache" / "auto_backend.json").exists()
    _, again = B.select_backend(tiny, "cpu", size=32, batch=1, candidates=["eager"])
    assert again.from_cache == "memory"


def test_chunked_run_matches_whole_batch(tiny):
    backend = B.create_backend(tiny, "eager")
    x = torch.randn(5, 3, 32, 32)
    whole = backend.run(x)
    backend.max_batch = 2
    assert torch.allclose(backend.run(x), whole, atol=1e-6)
    assert "chunks of 2" in backend.describe()


def test_create_backend_auto_returns_a_faithful_real_backend(tiny, batch):
    backend = B.create_backend(
        tiny, "auto", "cpu", size=64, batch=2, candidates=["eager", "channels_last"]
    )
    assert backend.name in ("eager", "channels_last")
    assert backend.selection is not None and backend.selection.chosen == backend.name
    assert torch.allclose(backend.run(batch), torch.sigmoid(tiny(batch)), atol=1e-5)


def test_auto_default_candidates_on_cpu(tiny, monkeypatch):
    monkeypatch.setattr(auto, "_bf16_probe", lambda device: (False, "probe says slow"))
    _, selection = B.select_backend(tiny, "cpu", size=64, batch=1, use_cache=False)
    names = [c.name for c in selection.candidates]
    assert names == registry.auto_candidates("cpu")
    by_name = {c.name: c for c in selection.candidates}
    assert by_name["bf16"].skipped == "probe says slow"
    fp32 = ("eager", "channels_last", "eager_fused", "winograd", "onnxruntime")
    assert all(by_name[n].faithful for n in fp32)
    assert selection.chosen in fp32
