"""Where does inference time go? Per-part and per-operator CPU time of one abanet model.

Usage:
    python scripts/profile_model.py --model abanet_lite --size 256 --batch 8 [--threads 2]
        [--iters 5] [--backend eager|channels_last|eager_fused]

Parts are timed with forward hooks on the model's sub-modules (encoder stages, decoder stages,
attention gates, side heads, refinement); what lies between hooks (resizes, concatenations,
the sigmoid) is reported as "glue". Operators come from ``torch.profiler``. Times are medians
over ``--iters`` runs after one warm-up; the machine may be shared, so the load average is shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch
from torch import nn

import abanet
from abanet.inference.backends import configure_threads, create_backend


def parts_of(model: nn.Module) -> dict[str, nn.Module]:
    """Named sub-modules worth timing separately (non-overlapping)."""
    parts: dict[str, nn.Module] = {}
    enc = getattr(model, "encoder", None)
    if enc is not None and hasattr(enc, "features"):  # MobileNetV2 (lite): per stride level
        from abanet.models.lite.model import MBV2_STAGES

        start = 0
        for level, (end, _) in enumerate(MBV2_STAGES, start=1):
            for i in range(start, end):
                parts[f"encoder.s{2**level} (features[{i}])"] = enc.features[i]
            start = end
    elif enc is not None:  # ResNet stages
        for name in ("layer1", "layer2", "layer3", "layer4"):
            parts[f"encoder.{name}"] = getattr(enc, name)
    for name in ("inconv", "stage5", "stage6", "bridge"):
        if hasattr(model, name):
            parts[name] = getattr(model, name)
    for group in ("gates", "decoder", "side"):
        for key, mod in getattr(model, group, {}).items():
            parts[f"{group}.{key}"] = mod
    if getattr(model, "side_bridge", None) is not None:
        parts["side_bridge"] = model.side_bridge
    if getattr(model, "refiner", None) is not None:
        parts["refiner"] = model.refiner
    return parts


def time_parts(model: nn.Module, x: torch.Tensor, iters: int) -> tuple[dict[str, float], float]:
    parts = parts_of(model)
    spent: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = {}
    handles = []
    for name, mod in parts.items():

        def pre(_m, _i, name=name):
            current[name] = time.perf_counter()

        def post(_m, _i, _o, name=name):
            spent[name].append(time.perf_counter() - current.pop(name))

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    totals = []
    with torch.inference_mode():
        model(x)
        spent.clear()
        for _ in range(iters):
            start = time.perf_counter()
            model(x)
            totals.append(time.perf_counter() - start)
    for h in handles:
        h.remove()
    per_part = {k: sum(v) / iters for k, v in spent.items()}  # summed over calls, per run
    return per_part, statistics.median(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="abanet_lite")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--backend", default="eager", choices=["eager", "channels_last", "eager_fused"])
    ap.add_argument("--ops", type=int, default=12, help="Top operators to list.")
    args = ap.parse_args()

    threads = configure_threads(args.threads)
    model = abanet.create_model(args.model).eval()
    backend = create_backend(model, args.backend, "cpu", num_threads=threads)
    net = backend.model
    fmt = torch.channels_last if args.backend != "eager" else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=fmt)
    load = os.getloadavg()[0]
    per_part, total = time_parts(net, x, args.iters)
    b = args.batch
    print(
        f"{args.model} {args.size}x{args.size} batch {b}, {args.backend}, {threads} threads, "
        f"load {load:.1f}: {1000 * total / b:.1f} ms/image ({b / total:.1f} images/s)"
    )
    groups: dict[str, float] = defaultdict(float)
    for name, sec in per_part.items():
        groups[name.split(" ")[0]] += sec
    covered = sum(per_part.values())
    print(f"{'part':34s} {'ms/image':>9s} {'share':>6s}")
    for name, sec in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{name:34s} {1000 * sec / b:9.2f} {100 * sec / total:5.1f}%")
    glue = total - covered
    print(f"{'glue (resize, cat, ...)':34s} {1000 * glue / b:9.2f} {100 * glue / total:5.1f}%")

    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            net(x)
    print("\ntop operators (self CPU time over 2 runs):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
