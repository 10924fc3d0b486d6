"""Training throughput (images/s) of abanet models: a naive eager loop next to abanet's settings.

    python scripts/train_throughput.py [--models abanet_r34 abanet_lite] [--size 256] [--batch 8]
        [--steps 3] [--naive-steps N] [--warmup 1] [--threads N] [--settings naive fp32-cl ...]
        [--model-batch abanet_r34=4] [--model-settings abanet_r34=naive,fp32-cl] [--rounds R]
        [--json FILE] [--device cuda]

For each model it times whole optimisation steps (forward with every deep-supervision output,
the paper's focal+SSIM+IoU loss, backward, Adam update) on random tensors, so data loading is not
counted, in these configurations:

- ``naive``: fp32, batch 1, NCHW, plain eager loop (how the authors' script trains);
- ``fp32 bB``: fp32, batch B, NCHW;
- ``fp32 bB cl``: fp32, batch B, channels-last;
- ``bf16 bB cl``: bf16 autocast (Lightning's ``bf16-mixed``), batch B, channels-last;
- ``16-mixed bB cl`` (key ``fp16-cl``): fp16 autocast with a gradient scaler (Lightning's
  ``16-mixed``), batch B, channels-last; meant for CUDA (on CPU fp16 autocast is slow).

All configurations run in the same process, one after another, and the table reports images per
second and the speed-up over ``naive``. With ``--rounds R`` each model's settings are timed R
times, interleaved (a, b, a, b, ...), and the table gives the median and the range, so that a
change of load hits every setting alike. The machine's load average is printed with the results:
timings on a shared CPU are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Setting:
    key: str
    name: str
    batch: int
    channels_last: bool
    amp: torch.dtype | None  # autocast dtype (None: fp32)


SETTING_KEYS = ("naive", "fp32", "fp32-cl", "bf16-cl", "fp16-cl")
DEFAULT_SETTINGS = ("naive", "fp32", "fp32-cl", "bf16-cl")


def settings(batch: int) -> list[Setting]:
    return [
        Setting("naive", "naive (fp32, b1)", 1, False, None),
        Setting("fp32", f"fp32 b{batch}", batch, False, None),
        Setting("fp32-cl", f"fp32 b{batch} channels-last", batch, True, None),
        Setting("bf16-cl", f"bf16-mixed b{batch} channels-last", batch, True, torch.bfloat16),
        Setting("fp16-cl", f"16-mixed b{batch} channels-last", batch, True, torch.float16),
    ]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what}: expected MODEL=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def time_steps(
    model_name: str, s: Setting, size: int, steps: int, warmup: int, device: str = "cpu"
) -> float:
    """Images per second of full training steps."""
    import abanet
    from abanet.losses import build_loss

    dev = torch.device(device)
    torch.manual_seed(0)
    model = abanet.create_model(model_name, encoder_weights=None).to(dev).train()
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = build_loss("focal+ssim+iou")
    x = torch.randn(s.batch, 3, size, size, device=dev)
    if s.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(s.batch, 1, size, size, device=dev) > 0.6).float()
    ctx = torch.autocast(dev.type, dtype=s.amp) if s.amp is not None else nullcontext()
    scaler = torch.amp.GradScaler(dev.type, enabled=s.amp == torch.float16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with ctx:
            outputs = model(x)
        loss = loss_fn(outputs, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * s.batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["abanet_r34", "abanet_lite"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    ap.add_argument("--naive-steps", type=int, default=None, help="timed steps for naive (b1)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=SETTING_KEYS)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--model-settings",
        nargs="*",
        default=[],
        help="per-model settings, e.g. abanet_r34=naive,fp32-cl",
    )
    ap.add_argument(
        "--model-batch",
        nargs="*",
        default=[],
        help="per-model batch size, e.g. abanet_r34=4 (memory)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repeats (median)")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    rows = []
    per_settings = {
        k: v.split(",") for k, v in _pairs(args.model_settings, "--model-settings").items()
    }
    per_batch = {k: int(v) for k, v in _pairs(args.model_batch, "--model-batch").items()}
    for model_name in args.models:
        wanted = per_settings.get(model_name, args.settings)
        chosen = [s for s in settings(per_batch.get(model_name, args.batch)) if s.key in wanted]
        runs: dict[str, list[float]] = {s.key: [] for s in chosen}
        for _ in range(max(1, args.rounds)):
            for s in chosen:
                steps = args.naive_steps if (s.batch == 1 and args.naive_steps) else args.steps
                if s.batch == 1 and not args.naive_steps:
                    steps = args.steps * per_batch.get(model_name, args.batch)  # as many images
                ips = time_steps(model_name, s, args.size, steps, args.warmup, args.device)
                runs[s.key].append(ips)
                print(f"{model_name:12s} {s.name:32s} {ips:8.3f} img/s", flush=True)
        base = None
        for s in chosen:
            ips = statistics.median(runs[s.key])
            if base is None and s.batch == 1:
                base = ips
            rows.append(
                {
                    "model": model_name,
                    "setting": s.name,
                    "images_per_s": ips,
                    "runs": runs[s.key],
                    "speedup": ips / base if base else None,
                }
            )
    load_after = os.getloadavg()

    print()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, input "
        f"{args.size}x{args.size}, load average before {load_before[0]:.2f}, after "
        f"{load_after[0]:.2f} (1-minute)"
    )
    print()
    print("| model | setting | images/s (median) | range | speed-up vs naive |")
    print("|---|---|---|---|---|")
    for r in rows:
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        span = f"{min(r['runs']):.3f}-{max(r['runs']):.3f}"
        print(f"| {r['model']} | {r['setting']} | {r['images_per_s']:.3f} | {span} | {sp} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "rows": rows,
                    "size": args.size,
                    "threads": torch.get_num_threads(),
                    "load_before": load_before,
                    "load_after": load_after,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
