"""int8 vs fp32 on this CPU, per model: speed of every fp32 backend and of ``onnxruntime_int8``
(timed interleaved, 1 and 2 threads), achieved GFLOP/s against the measured peak, and how far
int8 moves the logits.

    python scripts/int8_report.py --models abanet_lite abanet_r34 basnet_r34 [--size 256]
        [--threads 1,2] [--rounds 3] [--calibration ../shared/data/mfsd-dev] [--out rows.jsonl]

Per thread count: the peak kernels of ``scripts/cpu_peak.py`` first (fp32 and int8 peaks), then
for each model every backend is built (random weights, seeded: speed does not depend on the
weights; int8 calibrated on ``--count`` crops) and timed round-robin for ``--rounds`` rounds
(one image per call), so load from other processes hits all alike; the best round counts (as for
the peak). The best faithful fp32 backend is the fastest one that passes ``auto``'s fidelity rule
on its calibration batch. GFLOP/s = the model's FLOPs (``torch.utils.flop_counter``, 2 per
multiply-add) x images/s.

Logit error of int8 (weights-independent proxy for models without trained weights): on ``--probe``
crops of the calibration folder, the SQNR of the int8 logits against fp32 (centred per image,
in dB) and the agreement of the two masks thresholded at each image's median fp32 logit (half
the pixels on each side, so the test is not trivially passed by a constant output).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from abanet.data.io import read_image
from abanet.data.preprocess import resolve_data_config
from abanet.inference.backends import create_backend
from abanet.inference.backends.auto import calibration_batch, compare_outputs, is_faithful
from abanet.inference.backends.int8 import calibration_files
from abanet.models.hub import resolve_model
from abanet.models.summary import count_flops

FP32 = ("eager", "channels_last", "eager_fused", "winograd", "onnxruntime", "bf16")


def _peak_module():
    path = Path(__file__).resolve().parent / "cpu_peak.py"
    spec = importlib.util.spec_from_file_location("cpu_peak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logit_error(net, int8_backend, inputs: torch.Tensor) -> dict[str, float]:
    """SQNR (dB, centred logits) and median-threshold mask agreement of int8 vs fp32."""
    with torch.inference_mode():
        ref = net(inputs).float()
    out = torch.logit(int8_backend.run(inputs).clamp(1e-7, 1 - 1e-7))
    sqnr, agree = [], []
    for r, o in zip(ref, out, strict=True):
        rc = r - r.mean()
        noise = (o - r) - (o - r).mean()
        sqnr.append(10 * math.log10(float((rc**2).sum()) / max(float((noise**2).sum()), 1e-30)))
        median = r.median()
        agree.append(float(((o > median) == (r > median)).float().mean()))
    return {"sqnr_db": float(np.mean(sqnr)), "median_agreement": float(np.mean(agree))}


def measure_model(name: str, args: argparse.Namespace, threads: int) -> list[dict]:
    net, dev, _ = resolve_model(name, "cpu", random_weights=True, seed=0)
    size = resolve_data_config(net.config, args.size).size
    flops = count_flops(net, size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    calib = calibration_batch(2, size, net.config.mean, net.config.std)
    with torch.inference_mode():
        reference = torch.sigmoid(net(calib))
    engines, rows = {}, {}
    for backend in (*args.fp32, "onnxruntime_int8"):
        options = {}
        if backend == "onnxruntime_int8":
            options = {"calibration": args.calibration, "count": args.count}
        start = time.perf_counter()
        engine = create_backend(net, backend, dev, size=size, num_threads=threads, **options)
        setup = time.perf_counter() - start
        agree, diff = compare_outputs(engine.run(calib), reference)
        engine.run(x)  # warm-up
        engines[backend] = engine
        rows[backend] = {
            "model": name,
            "size": size,
            "threads": threads,
            "backend": backend,
            "gflops_per_image": flops / 1e9,
            "setup_s": setup,
            "agreement_calib": agree,
            "max_prob_diff_calib": diff,
            "faithful": is_faithful(agree, diff),
            "times": [],
        }
    for _ in range(args.rounds):
        for backend, engine in engines.items():
            start = time.perf_counter()
            engine.run(x)
            rows[backend]["times"].append(time.perf_counter() - start)
    for row in rows.values():
        best = min(row["times"])
        row.update(
            images_per_s=1 / best,
            ms_per_image=1000 * best,
            median_ms=1000 * float(np.median(row["times"])),
            gflops=flops / 1e9 / best,
        )
    dc = resolve_data_config(net.config, size)
    probe = calibration_files(args.calibration, args.probe)
    inputs = torch.from_numpy(np.stack([dc(read_image(f)) for f in probe]))
    rows["onnxruntime_int8"].update(logit_error(net, engines["onnxruntime_int8"], inputs))
    return list(rows.values())


def table(rows: list[dict], peaks: dict[int, dict[str, float]]) -> str:
    """One row per (model, threads): the best faithful fp32 backend, bf16, int8 and the peaks."""
    lines = [
        "| model | threads | best faithful fp32 | images/s | GFLOP/s | % fp32 peak | bf16 images/s "
        "| int8 images/s | int8 / best fp32 | int8 % int8 peak | int8 SQNR dB | median-thr. "
        "agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["model"], r["threads"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for model, threads in keys:
        group = {r["backend"]: r for r in rows if (r["model"], r["threads"]) == (model, threads)}
        fp32 = [r for n, r in group.items() if n not in ("bf16", "onnxruntime_int8")]
        best = max((r for r in fp32 if r["faithful"]), key=lambda r: r["images_per_s"])
        q = group["onnxruntime_int8"]
        bf16 = f"{group['bf16']['images_per_s']:.2f}" if "bf16" in group else "-"
        peak = peaks[threads]
        lines.append(
            f"| {model} | {threads} | {best['backend']} | {best['images_per_s']:.2f} | "
            f"{best['gflops']:.0f} | {100 * best['gflops'] / peak['fp32']:.0f}% | {bf16} | "
            f"{q['images_per_s']:.2f} | {q['images_per_s'] / best['images_per_s']:.2f}x | "
            f"{100 * q['gflops'] / peak['int8']:.0f}% | {q['sqnr_db']:.1f} | "
            f"{100 * q['median_agreement']:.2f}% |"
        )
    return "\n".join(lines)


def peaks_of(kernels: list[dict]) -> dict[str, float]:
    """The fp32 and int8 peaks (GFLOP/s): the fastest kernel of each kind."""
    return {
        "fp32": max(k["gflops"] for k in kernels if "fp32" in k["kernel"]),
        "int8": max(k["gflops"] for k in kernels if "int8" in k["kernel"]),
    }


def read_rows(path: Path) -> tuple[list[dict], dict[int, dict[str, float]]]:
    """Rows and peaks (the highest per thread count) from an ``--out`` file."""
    rows, peaks = [], {}
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if "peak" in item:
            new = peaks_of(item["peak"])
            old = peaks.get(item["threads"], new)
            peaks[item["threads"]] = {k: max(new[k], old[k]) for k in new}
        else:
            rows.append(item)
    return rows, peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["abanet_lite", "abanet_r34", "basnet_r34"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fp32", nargs="+", default=list(FP32))
    ap.add_argument("--calibration", default="../shared/data/mfsd-dev")
    ap.add_argument("--count", type=int, default=8, help="calibration images (speed only)")
    ap.add_argument("--probe", type=int, default=8, help="crops for the logit-error proxy")
    ap.add_argument("--peak-repeats", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, appended")
    ap.add_argument("--table", action="store_true", help="only print the table of --out")
    args = ap.parse_args()
    if args.table:
        print(table(*read_rows(args.out)))
        return
    peak_script = _peak_module()
    peaks: dict[int, dict[str, float]] = {}
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        load = os.getloadavg()[0]
        kernels = peak_script.measure([threads], args.peak_repeats)
        peaks[threads] = peaks_of(kernels)
        with args.out.open("a") as fh:
            fh.write(json.dumps({"peak": kernels, "threads": threads, "loadavg": load}) + "\n")
        for model in args.models:
            load = os.getloadavg()[0]
            for row in measure_model(model, args, threads):
                row["loadavg_start"], row["loadavg_end"] = load, os.getloadavg()[0]
                rows.append(row)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
                print(
                    f"{model} {threads}t {row['backend']}: {row['images_per_s']:.2f} images/s, "
                    f"{row['gflops']:.0f} GFLOP/s, faithful {row['faithful']}",
                    flush=True,
                )
    print(f"peaks (GFLOP/s): {peaks}")
    print(table(*read_rows(args.out)))


if __name__ == "__main__":
    main()
