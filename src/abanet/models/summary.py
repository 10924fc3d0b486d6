"""Parameter and FLOP counts of registered models (built on the meta device: fast, no memory)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from abanet.models.hub import list_pretrained, read_config
from abanet.models.pretrained import offline_weights_path
from abanet.models.registry import create_model, get_entry, list_models


def count_flops(model: torch.nn.Module, size: int = 256, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one eval-mode forward at ``size`` x ``size``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(batch, 3, size, size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def model_gflops(name: str, model: torch.nn.Module, size: int) -> float | None:
    """GFLOPs of ``model`` (built on the meta device); None for a method without parameters
    (GrabCut: OpenCV, not counted). A detector whose shapes depend on the data (Mask R-CNN)
    is counted on the CPU with seeded random weights (their proposals and detections)."""
    if next(model.parameters(), None) is None:
        return None
    try:
        return count_flops(model, size) / 1e9
    except NotImplementedError:  # data-dependent shapes cannot run on the meta device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return count_flops(create_model(name), size) / 1e9


def model_summaries(size: int = 256) -> list[dict[str, Any]]:
    """One row per registered architecture and per shipped trained model."""
    shipped = {}
    for pname in list_pretrained():
        cfg = read_config(pname)
        shipped.setdefault(cfg.name, []).append(pname)
    rows = []
    for name in list_models():
        entry = get_entry(name)
        with torch.device("meta"):
            model = create_model(name)
        weights = []
        if name in shipped:
            weights.append("trained: " + ", ".join(shipped[name]))
        if offline_weights_path(entry.encoder) is not None:
            weights.append("imagenet (offline)")
        elif entry.encoder_weights is not None:
            weights.append("imagenet (download)")
        rows.append(
            {
                "name": name,
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "gflops": model_gflops(name, model, size),
                "encoder": entry.encoder,
                "weights": "; ".join(weights) or "-",
                "description": entry.description,
            }
        )
    return rows
