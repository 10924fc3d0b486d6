"""ONNX export with dynamic batch, height and width, and a check against PyTorch."""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abanet.data.atomic import atomic_temp
from abanet.errors import ExportError

DEFAULT_OPSET = 17
MATCH_TOLERANCE = 1e-4


@dataclass
class ExportCheck:
    """One comparison of ONNX Runtime against PyTorch."""

    batch: int
    height: int
    width: int
    max_logit_diff: float
    max_prob_diff: float
    max_abs_logit: float
    ok: bool

    def line(self) -> str:
        state = "ok" if self.ok else "MISMATCH"
        return (
            f"batch {self.batch}, {self.height}x{self.width}: max |logit diff| "
            f"{self.max_logit_diff:.2e} (|logit| up to {self.max_abs_logit:.3g}), max |prob diff| "
            f"{self.max_prob_diff:.2e} -> {state}"
        )


def _model_name(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "name", type(model).__name__))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: int | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as ONNX (input ``input`` (B,3,H,W) float32, output ``logits`` (B,1,H,W)).

    Batch, height and width are dynamic; ``size`` is only the tracing size (default: the model's
    ``input_size``). The model config (mean, std, threshold, size divisor) is stored in the file's
    metadata under ``abanet_config``. Written atomically; an existing file is kept unless
    ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: file exists; pass --overwrite to replace it")
    if path.is_dir():
        raise ExportError(f"{path}: is a folder, expected a file name")
    config = getattr(model, "config", None)
    divisor = int(getattr(config, "size_divisor", 32))
    size = int(size or getattr(config, "input_size", 256))
    if size % divisor:
        raise ExportError(
            f"{_model_name(model)}: export size {size} is not a multiple of {divisor}"
        )
    model = model.cpu().eval()
    example = torch.zeros(1, 3, size, size)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": dynamic, "logits": dynamic},
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001 - the exporter's errors carry pages of graph
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = reason.split(". Please")[0][:200]
            raise ExportError(
                f"{_model_name(model)}: cannot be exported to ONNX ({reason}); "
                "use an eager backend (eager, eager_fused, channels_last)"
            ) from exc
    props = {}
    if config is not None and hasattr(config, "to_dict"):
        props["abanet_config"] = json.dumps(config.to_dict(), default=str)
    data = _finish(buffer.getvalue(), props)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if path.exists() and not overwrite:  # appeared meanwhile
            raise ExportError(f"{path}: file exists; pass --overwrite to replace it")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finish(data: bytes, props: dict[str, str]) -> bytes:
    """Name the output's channel dimension (always 1) and store ``props`` as metadata."""
    import onnx

    proto = onnx.load_from_string(data)
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_param:
            dims[1].dim_value = 1  # the tracer leaves a made-up symbol here
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def read_onnx_config(path: str | Path) -> dict[str, Any] | None:
    """The abanet config stored in an exported file's metadata, if any."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == "abanet_config":
            return json.loads(entry.value)
    return None


def check_shapes(size: int, divisor: int) -> list[tuple[int, int, int]]:
    """Two (batch, height, width) checks: the export size at batch 1 and another, non-square
    size at batch 2."""
    other = size + divisor if size <= 2 * divisor else size - divisor
    return [(1, size, size), (2, other, size)]


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    shapes: list[tuple[int, int, int]] | None = None,
    tolerance: float = MATCH_TOLERANCE,
    seed: int = 0,
) -> list[ExportCheck]:
    """Run the ONNX file with ONNX Runtime (CPU) and PyTorch on the same random inputs.

    A check passes when probabilities differ by at most ``tolerance`` and logits by at most
    ``tolerance * max(1, max|logit|)`` (float32 rounding grows with the logits' magnitude).
    """
    import onnxruntime as ort

    config = getattr(model, "config", None)
    divisor = int(getattr(config, "size_divisor", 32))
    size = int(getattr(config, "input_size", 256))
    shapes = shapes or check_shapes(size, divisor)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    model = model.cpu().eval()
    checks = []
    for batch, height, width in shapes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            ref = model(x).float().numpy()
        out = session.run(None, {input_name: x.numpy()})[0]
        if out.shape != ref.shape:
            checks.append(ExportCheck(batch, height, width, np.inf, np.inf, np.inf, False))
            continue
        logit_diff = float(np.abs(out - ref).max())
        prob_diff = float(np.abs(_sigmoid(out) - _sigmoid(ref)).max())
        scale = float(np.abs(ref).max())
        ok = prob_diff <= tolerance and logit_diff <= tolerance * max(1.0, scale)
        checks.append(ExportCheck(batch, height, width, logit_diff, prob_diff, scale, ok))
    return checks


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
