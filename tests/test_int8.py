"""The opt-in int8 backend (ONNX Runtime static quantization) and mask agreement with fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.errors import BackendError
from abanet.inference import backends as B
from abanet.inference.agreement import backend_agreement, compare_image, summarise
from abanet.inference.backends import int8, registry
from abanet.inference.backends.auto import compare_outputs
from tests.fixtures import ellipse_dataset, write_rgb
from tests.test_backends import TinyNet

pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")


@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture
def crops(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(6):
        write_rgb(folder / f"c{i}.png", (64, 64), seed=i)
    return folder


def test_int8_masks_agree_with_fp32_and_the_file_is_cached(tiny, crops):
    backend = B.create_backend(tiny, "onnxruntime_int8", "cpu", size=64, calibration=crops, count=4)
    assert backend.name == "onnxruntime_int8" and backend.reduced_precision
    assert [p.name for p in backend.calibration_files] == ["c0.png", "c2.png", "c3.png", "c5.png"]
    assert backend.onnx_path.name.endswith(".onnx") and "-int8-" in backend.onnx_path.name
    import onnx

    ops = {n.op_type for n in onnx.load(str(backend.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    probs = backend.run(x)
    with torch.no_grad():
        reference = torch.sigmoid(tiny(x))
    assert probs.shape == (2, 1, 64, 64) and probs.dtype == torch.float32
    agree, diff = compare_outputs(probs, reference)
    assert agree >= 0.9 and diff < 0.2  # loose: a random 3-layer net, 4 calibration images
    assert backend.run(torch.randn(1, 3, 32, 48)).shape == (1, 1, 32, 48)  # dynamic shapes

    stamp = backend.onnx_path.stat().st_mtime_ns
    again = B.create_backend(tiny, "onnxruntime_int8", "cpu", size=64, calibration=crops, count=4)
    assert again.onnx_path == backend.onnx_path
    assert again.onnx_path.stat().st_mtime_ns == stamp  # reused, not quantized again
    other = B.create_backend(
        tiny, "onnxruntime_int8", "cpu", size=64, calibration=crops, count=4, method="percentile"
    )
    assert other.onnx_path != backend.onnx_path  # other settings, other file


def test_int8_keeps_first_and_last_conv_in_float_when_asked(tiny, crops):
    backend = B.create_backend(
        tiny,
        "onnxruntime_int8",
        "cpu",
        size=64,
        calibration=[crops / "c1.png"],
        exclude=("first-conv", "last-conv"),
    )
    import onnx

    graph = onnx.load(str(backend.onnx_path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 4  # stem, two in the block, head
    float_inputs = [
        c.name
        for c in convs
        if producers.get(c.input[1]) is None  # weight not dequantized
    ]
    assert len(float_inputs) == 2 and "first-conv/last-conv in float" in backend.describe()


def test_int8_needs_calibration_images(tiny, monkeypatch, tmp_path):
    monkeypatch.delenv(int8.CALIBRATION_ENV, raising=False)
    with pytest.raises(BackendError, match="needs calibration images: pass --calibration"):
        B.create_backend(tiny, "onnxruntime_int8", "cpu", size=64)
    with pytest.raises(BackendError, match="nowhere: calibration folder not found"):
        B.create_backend(tiny, "onnxruntime_int8", "cpu", calibration=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="empty: no images to calibrate int8 on"):
        B.create_backend(tiny, "onnxruntime_int8", "cpu", calibration=tmp_path / "empty")
    with pytest.raises(BackendError, match="unknown calibration method 'median'"):
        B.create_backend(tiny, "onnxruntime_int8", "cpu", calibration="x", method="median")


def test_int8_is_opt_in_and_cpu_only(tiny):
    assert "onnxruntime_int8" not in registry.auto_candidates("cpu")
    with pytest.raises(BackendError, match="backend onnxruntime_int8 runs on cpu only, not cuda"):
        registry.check_backend("onnxruntime_int8", "cuda")
    with pytest.raises(BackendError, match="backend tensorrt runs on cuda only, not cpu"):
        B.create_backend(tiny, "tensorrt", "cpu")


def test_calibration_reads_the_images_folder_of_a_dataset_root(tmp_path, monkeypatch):
    root = ellipse_dataset(tmp_path / "data", n=5)
    monkeypatch.setenv(int8.CALIBRATION_ENV, str(root))
    files = int8.calibration_files(None, 3)
    assert [f.name for f in files] == ["img00.png", "img02.png", "img04.png"]
    assert int8.calibration_files(root, 10) == sorted((root / "images").iterdir())


def test_agreement_of_hand_made_masks():
    gt = np.array([[1, 1], [0, 0]], np.uint8)
    reference = np.array([[0.9, 0.8], [0.6, 0.1]], np.float32)  # mask 1 1 / 1 0: IoU 2/3
    probs = np.array([[0.9, 0.4], [0.7, 0.2]], np.float32)  # mask 1 0 / 1 0: IoU 1/3
    pair = compare_image("a", probs, reference, gt, 0.5)
    assert pair.agree == pytest.approx(0.75) and pair.pixels == 4
    assert pair.iou_reference == pytest.approx(2 / 3) and pair.iou_backend == pytest.approx(1 / 3)
    assert pair.max_diff == pytest.approx(0.4)
    same = compare_image("b", np.ones((4, 4), np.float32), np.ones((4, 4), np.float32),
                         np.ones((4, 4), np.uint8), 0.5)  # fmt: skip
    total = summarise([pair, same])
    assert total.pixel_agreement == pytest.approx((3 + 16) / 20)  # pooled over pixels
    assert total.min_image_agreement == pytest.approx(0.75) and total.worst_image == "a"
    assert total.iou_reference == pytest.approx((2 / 3 + 1) / 2)
    assert total.iou_change == pytest.approx(-1 / 6)
    assert not total.passes
    assert summarise([same]).passes


def test_backend_agreement_on_a_dataset_leaves_calibration_images_out(tiny, tmp_path):
    root = ellipse_dataset(tmp_path / "data", n=6)
    report = backend_agreement(tiny, root, "channels_last", batch_size=4)
    assert report.all.images == 6 and report.held_out is None
    assert report.all.pixel_agreement == 1.0 and report.all.iou_change == 0.0

    backend = B.create_backend(tiny, "onnxruntime_int8", "cpu", size=64, calibration=root, count=2)
    report = backend_agreement(tiny, root, backend, batch_size=4)
    assert report.backend == "onnxruntime_int8" and report.reference == "eager"
    assert report.all.images == 6 and report.held_out.images == 4
    assert report.notes == ["2 of 6 images calibrated it"]
    assert report.all.pixel_agreement > 0.9
    data = report.to_dict()
    assert data["all"]["passes"] == report.all.passes and "iou_change" in data["held_out"]


def test_cli_calibration_options_need_the_int8_backend():
    args = ["benchmark", "--model", "abanet_lite", "--size", "64", "--calibration", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "apply to --backend onnxruntime_int8 only" in result.output
