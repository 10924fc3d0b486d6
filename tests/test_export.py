"""ONNX export: round trip against PyTorch at two shapes, dynamic axes, no silent overwrite."""

from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

import abanet
from abanet.cli.main import app
from abanet.inference.export import (
    ExportError,
    check_shapes,
    export_onnx,
    read_onnx_config,
    verify_onnx,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _round_trip(name: str, size: int, tmp_path) -> None:
    model = abanet.create_model(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", size=size)
    shapes = check_shapes(size, model.config.size_divisor)
    assert len({s[0] for s in shapes}) == 2 and len({s[1:] for s in shapes}) == 2
    checks = verify_onnx(model, path, shapes)
    assert [(c.batch, c.height, c.width) for c in checks] == shapes
    for check in checks:
        assert check.ok, check.line()
        assert check.max_prob_diff <= 1e-4
        assert check.max_logit_diff <= 1e-4 * max(1.0, check.max_abs_logit)


def test_round_trip_abanet_lite(tmp_path):
    _round_trip("abanet_lite", 64, tmp_path)
    # the same file also has dynamic axes and carries the config
    proto = onnx.load(str(tmp_path / "abanet_lite.onnx"))
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert _dims(inp) == ["batch", 3, "height", "width"]
    assert _dims(out) == ["batch", 1, "height", "width"]
    config = read_onnx_config(tmp_path / "abanet_lite.onnx")
    assert config["name"] == "abanet_lite" and config["size_divisor"] == 64


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.slow
def test_round_trip_abanet_r34(tmp_path):
    _round_trip("abanet_r34", 64, tmp_path)


def test_export_refuses_to_overwrite(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"precious")
    model = abanet.create_model("abanet_lite")
    with pytest.raises(ExportError, match="file exists; pass --overwrite"):
        export_onnx(model, target, size=64)
    assert target.read_bytes() == b"precious"


def test_export_refuses_a_bad_size(tmp_path):
    with pytest.raises(ExportError, match="not a multiple of 64"):
        export_onnx(abanet.create_model("abanet_lite"), tmp_path / "m.onnx", size=96)


def test_cli_export_checks_and_refuses_overwrite(tmp_path):
    target = tmp_path / "lite.onnx"
    args = ["export", "abanet_lite", "--format", "onnx", "-o", str(target), "--size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("-> ok") == 2
    assert "batch 1, 64x64" in result.output and "batch 2, 128x64" in result.output
    assert target.is_file()
    onnx.checker.check_model(str(target))
    before = target.read_bytes()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "file exists; pass --overwrite" in again.output
    assert target.read_bytes() == before

    forced = CliRunner().invoke(app, [*args, "--overwrite", "--no-verify"])
    assert forced.exit_code == 0, forced.output
    assert "-> ok" not in forced.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_export_unknown_format(tmp_path):
    args = ["export", "abanet_lite", "--format", "tflite", "-o", str(tmp_path / "m.tflite")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "unsupported format 'tflite'" in result.output


def test_a_model_the_exporter_refuses_gives_one_line(tmp_path) -> None:
    # smp PSPNet pools to a fixed size from a dynamic input: torch's ONNX exporter refuses it
    model = abanet.create_model("pspnet", encoder_name="resnet18")
    with pytest.raises(ExportError) as err:
        export_onnx(model, tmp_path / "psp.onnx", size=64)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    assert message.startswith("pspnet: cannot be exported to ONNX (")
    assert "adaptive_avg_pool2d" in message and "eager" in message
    assert not (tmp_path / "psp.onnx").exists()


def test_a_classical_method_runs_on_eager_only() -> None:
    import torch

    from abanet.errors import BackendError
    from abanet.inference.backends import create_backend

    model = abanet.create_model("grabcut")
    with pytest.raises(BackendError, match=r"^grabcut: a classical method .* use --backend eager$"):
        create_backend(model, "onnxruntime", torch.device("cpu"), size=64, batch=1)
    assert create_backend(model, "eager", torch.device("cpu")).name == "eager"
