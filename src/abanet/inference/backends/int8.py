"""``onnxruntime_int8``: the model's ONNX export statically quantized to int8 by ONNX Runtime.

QDQ format, int8 weights per output channel, uint8 activations whose ranges are calibrated on
real face crops (a :class:`CalibrationDataReader` over image files, preprocessed exactly as the
model's inputs are). Opt-in (not an ``auto`` candidate): int8 changes probabilities by more than
``auto``'s fidelity rule allows; it is judged by mask agreement instead
(:mod:`abanet.inference.agreement`). The quantized file is cached beside the fp32 export, keyed by
the settings, the calibration data and the library versions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from abanet.data.atomic import publish
from abanet.data.io import list_images, read_image
from abanet.data.preprocess import resolve_data_config
from abanet.errors import BackendError
from abanet.inference.backends.cache import cached_int8_path, ensure_onnx
from abanet.inference.backends.runtimes import OnnxRuntimeBackend

#: environment variable naming the calibration images when the caller passes none
CALIBRATION_ENV = "ABANET_INT8_CALIBRATION"
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
#: ``exclude`` keywords: which convolutions stay in float
EXCLUDE_KEYWORDS = ("first-conv", "last-conv")


@dataclass(frozen=True)
class Int8Settings:
    """How the model is quantized.

    Attributes:
        method: activation range calibration: ``minmax``, ``percentile`` or ``entropy``.
        count: calibration images (evenly spaced over the sorted files).
        exclude: node names, or ``first-conv`` / ``last-conv``, kept in float.
        reduce_range: 7-bit weights (for CPUs without VNNI, where u8 x s8 products can saturate).
    """

    method: str = "minmax"
    count: int = 32
    exclude: tuple[str, ...] = ()
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BackendError(
                f"backend onnxruntime_int8: unknown calibration method {self.method!r} "
                f"(choose {', '.join(METHODS)})"
            )
        if int(self.count) < 1:
            raise BackendError(f"backend onnxruntime_int8: calibration count {self.count} < 1")
        object.__setattr__(self, "exclude", tuple(self.exclude))


def calibration_files(
    source: str | os.PathLike[str] | Sequence[Any] | None, count: int
) -> list[Path]:
    """``count`` image files, evenly spaced over ``source`` sorted: a folder (its ``images/``
    subfolder when it is a dataset root), a list of files, or ``$ABANET_INT8_CALIBRATION``."""
    if source is None:
        source = os.environ.get(CALIBRATION_ENV) or None
    if source is None:
        raise BackendError(
            "backend onnxruntime_int8 needs calibration images: pass --calibration FOLDER "
            f"(abanet benchmark), calibration=... (create_backend) or set {CALIBRATION_ENV} to a "
            "folder of face crops like the ones it will segment"
        )
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise BackendError(f"{folder}: calibration folder not found")
        if (folder / "images").is_dir():
            folder = folder / "images"
        files = list_images(folder)
        if not files:
            raise BackendError(f"{folder}: no images to calibrate int8 on")
    else:
        files = sorted(Path(p) for p in source)
        if not files:
            raise BackendError("backend onnxruntime_int8: the calibration image list is empty")
    if len(files) <= count:
        return files
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in picks]


class CropReader(CalibrationDataReader):
    """Feeds preprocessed images to ONNX Runtime's calibrator, one per call."""

    def __init__(self, input_name: str, inputs: np.ndarray) -> None:
        self.input_name = input_name
        self.inputs = inputs
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.inputs):
            return None
        self.position += 1
        return {self.input_name: self.inputs[self.position - 1 : self.position]}

    def rewind(self) -> None:
        self.position = 0


def _conv_names(graph: onnx.GraphProto, keywords: Sequence[str]) -> list[str]:
    """Names of the convolution reading the graph input and of those the output depends on
    through non-convolution nodes only (resizes, additions): ``first-conv`` / ``last-conv``."""
    producers = {out: node for node in graph.node for out in node.output}
    names: list[str] = []
    if "first-conv" in keywords:
        inputs = {i.name for i in graph.input}
        names += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    if "last-conv" in keywords:
        stack, seen = [o.name for o in graph.output], set()
        while stack:
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                names.append(node.name)
            else:
                stack += list(node.input)
    return names


def quantize_int8(
    fp32_path: Path, out_path: Path, inputs: np.ndarray, settings: Int8Settings
) -> Path:
    """Write the QDQ int8 model of ``fp32_path`` calibrated on ``inputs`` (N, 3, H, W) to
    ``out_path`` (atomically)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False).graph
        keywords = [e for e in settings.exclude if e in EXCLUDE_KEYWORDS]
        exclude = [e for e in settings.exclude if e not in EXCLUDE_KEYWORDS]
        exclude += _conv_names(graph, keywords)
        result = Path(tmp) / "int8.onnx"
        quantize_static(
            prepared,
            result,
            CropReader(graph.input[0].name, inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude or None,
            calibrate_method=METHODS[settings.method],
        )
        publish(result, out_path, overwrite=True)
    return out_path


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """ONNX Runtime on the int8 QDQ quantization of the model (built and cached on first use)."""

    reduced_precision = True

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        size: int | None = None,
        batch: int = 1,
        calibration: str | os.PathLike[str] | Sequence[Any] | None = None,
        num_threads: int | None = None,
        **settings: Any,
    ) -> None:
        if device.type != "cpu":
            raise BackendError("backend onnxruntime_int8 runs on cpu only")
        self.settings = Int8Settings(**settings)
        self.calibration_files = calibration_files(calibration, int(self.settings.count))
        config = getattr(model, "config", None)
        if config is None:
            raise BackendError("backend onnxruntime_int8: the model has no config (mean, std)")
        data_config = resolve_data_config(config, size)
        inputs = np.stack([data_config(read_image(f)) for f in self.calibration_files])
        fp32 = ensure_onnx(model)
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{fp32.name}|{sorted(asdict(self.settings).items())}".encode())
        digest.update(f"|ort{onnxruntime.__version__}|onnx{onnx.__version__}|".encode())
        digest.update(np.ascontiguousarray(inputs).tobytes())
        path = cached_int8_path(fp32, digest.hexdigest())
        if not path.is_file():
            quantize_int8(fp32, path, inputs, self.settings)
        super().__init__(model, device, onnx_path=path, num_threads=num_threads)

    def describe(self) -> str:
        s = self.settings
        excluded = f", {'/'.join(s.exclude)} in float" if s.exclude else ""
        return (
            f"{super().describe()} (calibrated on {len(self.calibration_files)} images, "
            f"{s.method}{excluded})"
        )
