"""Measured compute peak of this CPU: GEMM and 3x3 conv in fp32 (PyTorch and ONNX Runtime), bf16
(PyTorch) and int8 (ONNX Runtime), with 1 and 2 threads.

    python scripts/cpu_peak.py [--threads 1,2] [--repeats 30] [--json peak.json]

Each kernel is timed ``--repeats`` times, interleaved with the others (so a load spike from other
processes hits them alike), and the best run counts: the peak is what the cores deliver when they
are not taken away. GFLOP/s count 2 operations per multiply-add (int8 ones too: "GOP/s").

Kernels (small, so that one run takes a few milliseconds and fits in a time slice on a shared
machine, and works from the caches like a convolution's inner loop does):

- ``torch fp32 gemm``: ``torch.mm`` of two 512x512 fp32 matrices (MKL; 0.27 GFLOP);
- ``torch bf16 gemm``: the same in bfloat16 (native on AVX-512-BF16/AMX CPUs, emulated elsewhere);
- ``torch fp32 conv``: ``Conv2d(128, 128, 3, padding=1)`` on one 128x32x32 input, channels-last
  (oneDNN's direct convolution; 0.30 GFLOP);
- ``ort fp32 gemm`` / ``ort fp32 conv``: the same GEMM and conv as one-node ONNX models
  (``MatMul``, ``Conv``) run by ONNX Runtime (MLAS);
- ``ort int8 gemm``: ``MatMulInteger`` u8 x s8 -> s32 of the same GEMM;
- ``ort int8 conv``: ``QLinearConv`` u8 x s8 of the same conv.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from abanet.inference.backends.devices import cpu_name

N = 512  # GEMM side
C, HW = 128, 32  # conv channels and spatial side


def _ort_kernel(
    node: onnx.NodeProto,
    x: np.ndarray,
    out_type: int,
    out_shape: list[int],
    inits: list[np.ndarray],
    threads: int,
) -> Callable[[], object]:
    """A one-node ONNX model run by ONNX Runtime's CPU provider on input ``x``."""
    in_type = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node],
        node.op_type,
        [helper.make_tensor_value_info(node.input[0], in_type, list(x.shape))],
        [helper.make_tensor_value_info(node.output[0], out_type, out_shape)],
        [onnx.numpy_helper.from_array(a, n) for n, a in zip(node.input[1:], inits, strict=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {node.input[0]: x}
    return lambda: sess.run(None, feed)


def ort_kernels(threads: int) -> dict[str, tuple[Callable[[], object], float]]:
    """ONNX Runtime (MLAS) kernels: fp32 and int8 GEMM and 3x3 conv; name -> (run, FLOPs)."""
    rng = np.random.default_rng(0)
    f32 = TensorProto.FLOAT
    a32 = rng.standard_normal((N, N), dtype=np.float32)
    x32 = rng.standard_normal((1, C, HW, HW), dtype=np.float32)
    w32 = rng.standard_normal((C, C, 3, 3), dtype=np.float32)
    a8 = rng.integers(0, 255, (N, N), dtype=np.uint8)
    b8 = rng.integers(-127, 127, (N, N), dtype=np.int8)
    x8 = rng.integers(0, 255, (1, C, HW, HW), dtype=np.uint8)
    w8 = rng.integers(-127, 127, (C, C, 3, 3), dtype=np.int8)
    conv = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    qconv = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    qparams = [
        np.array(0.02, np.float32),
        np.array(128, np.uint8),
        w8,
        np.full(C, 0.01, np.float32),
        np.zeros(C, np.int8),
        np.array(0.05, np.float32),
        np.array(128, np.uint8),
    ]
    gemm_flops, conv_flops = 2.0 * N**3, 2.0 * C * C * 9 * HW * HW
    shape = [1, C, HW, HW]
    return {
        "ort fp32 gemm": (
            _ort_kernel(
                helper.make_node("MatMul", ["a", "b"], ["y"]),
                a32,
                f32,
                [N, N],
                [a32.T.copy()],
                threads,
            ),
            gemm_flops,
        ),
        "ort fp32 conv": (
            _ort_kernel(
                helper.make_node("Conv", ["x", "w"], ["y"], **conv), x32, f32, shape, [w32], threads
            ),
            conv_flops,
        ),
        "ort int8 gemm": (
            _ort_kernel(
                helper.make_node("MatMulInteger", ["a", "b"], ["y"]),
                a8,
                TensorProto.INT32,
                [N, N],
                [b8],
                threads,
            ),
            gemm_flops,
        ),
        "ort int8 conv": (
            _ort_kernel(
                helper.make_node("QLinearConv", qconv, ["y"], **conv),
                x8,
                TensorProto.UINT8,
                shape,
                qparams,
                threads,
            ),
            conv_flops,
        ),
    }


def torch_kernels() -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (run, FLOPs)."""
    a, b = torch.randn(N, N), torch.randn(N, N)
    a16, b16 = a.bfloat16(), b.bfloat16()
    conv = torch.nn.Conv2d(C, C, 3, padding=1, bias=False).eval()
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(1, C, HW, HW).contiguous(memory_format=torch.channels_last)
    conv_flops = 2.0 * C * C * 9 * HW * HW

    def run_conv() -> object:
        with torch.inference_mode():
            return conv(x)

    return {
        "torch fp32 gemm": (lambda: torch.mm(a, b), 2.0 * N**3),
        "torch bf16 gemm": (lambda: torch.mm(a16, b16), 2.0 * N**3),
        "torch fp32 conv": (run_conv, conv_flops),
    }


def measure(threads: list[int], repeats: int) -> list[dict[str, object]]:
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        kernels = {**torch_kernels(), **ort_kernels(n)}
        best = dict.fromkeys(kernels, float("inf"))
        for fn, _ in kernels.values():
            fn()  # warm-up: first-call setup, packing
        for _ in range(repeats):
            for name, (fn, _) in kernels.items():
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
        for name, (_, flops) in kernels.items():
            rows.append(
                {
                    "kernel": name,
                    "threads": n,
                    "best_ms": 1000 * best[name],
                    "gflops": flops / best[name] / 1e9,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None, help="write the rows and the machine as JSON")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows = measure([int(t) for t in args.threads.split(",")], args.repeats)
    info = {
        "cpu": cpu_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg()[0],
        "rows": rows,
    }
    print(f"{info['cpu']} ({info['capability']}), load {load:.1f} -> {info['loadavg_end']:.1f}")
    print("| kernel | threads | best ms | GFLOP/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['threads']} | {r['best_ms']:.1f} | {r['gflops']:.0f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(info, fh, indent=2)


if __name__ == "__main__":
    main()
