"""The LightningModule: any abanet model + the hybrid loss (or the model's own training loss,
``SegmentationModel.training_loss``), per-image validation IoU."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from abanet.errors import ConfigError
from abanet.losses import build_loss
from abanet.metrics import SegmentationMetrics
from abanet.models.base import SegmentationModel

#: Validation scores logged each validation (``val/<key>``); ``val/iou`` picks the best model.
VAL_KEYS = ("iou", "f1", "precision", "recall", "accuracy", "mae")


def build_optimizer(params: Any, optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam, AdamW, Adamax, RMSprop or SGD (momentum) from the ``optim`` config section."""
    name = str(optim["name"]).lower()
    lr, wd = float(optim["lr"]), float(optim["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, weight_decay=wd, momentum=float(optim["momentum"])
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(optim["momentum"]))
    raise ConfigError(f"config key 'optim.name': unknown optimizer {name!r}")


def lr_factor(
    step: int, sched: Mapping[str, Any], total_steps: float, steps_per_epoch: int
) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps (warm-up x schedule)."""
    warm = int(sched["warmup_steps"])
    f = 1.0
    if warm and step < warm:
        f = (step + 1) / warm
    name = str(sched["name"]).lower()
    if name == "cosine":
        floor = float(sched["min_lr_ratio"])
        span = max(1.0, total_steps - warm)
        t = min(1.0, max(0.0, (step - warm) / span))
        f *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    elif name == "step":
        epoch = step // max(1, steps_per_epoch)
        f *= float(sched["gamma"]) ** (epoch // int(sched["step_epochs"]))
    return f


class SegmentationModule(L.LightningModule):
    """Trains a :class:`~abanet.models.SegmentationModel` with a :class:`~abanet.losses.HybridLoss`.

    The training step is batched (the loss handles every deep-supervision output in one pass);
    validation runs the model in eval mode (main output) and logs ``val/iou`` etc.: per-image
    scores at the training input size, averaged over images (the paper's protocol), over the
    images of every process in distributed training.
    """

    def __init__(self, model: SegmentationModel, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.cfg = dict(cfg)
        loss = cfg["loss"]
        self.loss_fn = build_loss(
            loss["spec"],
            focal_alpha=float(loss["focal_alpha"]),
            focal_gamma=float(loss["focal_gamma"]),
        )
        self.channels_last = bool(cfg["model"]["channels_last"])
        self.val_metrics = SegmentationMetrics(
            threshold=float(cfg["model"]["threshold"]), structure=False
        )
        self.last_val_step = -1
        self.last_val_scores: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.model(x)

    def _input(self, batch: Mapping[str, Any]) -> torch.Tensor:
        x = batch["image"]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x = self._input(batch)
        own = self.model.training_loss(x, batch["mask"])  # a model with its own loss
        if own is None:
            loss = self.loss_fn(self.model(x), batch["mask"])
            parts = self.loss_fn.last_components
        else:
            loss, parts = own
        bs = batch["mask"].shape[0]
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=bs,
            # the epoch mean over every process's batches (one process outside a Trainer)
            sync_dist=self._trainer is not None and self.trainer.world_size > 1,
        )
        comps = {
            f"train/{k}": v.detach() if isinstance(v, torch.Tensor) else v
            for k, v in parts.items()
            if k not in ("total",) and not k.endswith("_sum")
        }
        self.log_dict(comps, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        logits = self.model(self._input(batch))
        if isinstance(logits, list | tuple):  # a model that ignores eval mode
            logits = logits[0]
        loss = self.loss_fn(logits, batch["mask"])
        self.log(
            "val/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch["mask"].shape[0],
            sync_dist=True,
        )
        self.val_metrics.update(torch.sigmoid(logits.float()), batch["mask"], names=batch["name"])

    def on_validation_epoch_end(self) -> None:
        values, images = self._global_val_scores()
        if not images:
            return
        # The values are already global (equal on every process). sync_dist with "max" is an
        # exact no-op that tells Lightning so (a mean could round; no sync would warn).
        logged = {k: v for k, v in values.items() if k != "val/iou"}
        self.log_dict(logged, sync_dist=True, reduce_fx="max")
        self.log("val/iou", values["val/iou"], prog_bar=True, sync_dist=True, reduce_fx="max")
        if not self.trainer.sanity_checking:
            self.last_val_step = int(self.trainer.global_step)
            self.last_val_scores = {k.split("/", 1)[1]: v for k, v in values.items()}
            self.last_val_scores["images"] = float(images)

    def _global_val_scores(self) -> tuple[dict[str, float], int]:
        """``val/<key>`` means over every validation image of every process, and their count.

        Each process sums its per-image scores (float64); one all-reduce adds the sums and the
        counts, so the mean is over images whatever the size of each process's share (a mean of
        per-process means would not be).
        """
        n = len(self.val_metrics)
        local = [0.0] * (len(VAL_KEYS) + 1)
        if n:
            scores = self.val_metrics.compute()
            local = [scores[k] * n for k in VAL_KEYS] + [float(n)]
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        stats = torch.tensor(local, dtype=dtype, device=self.device)
        if self.trainer.world_size > 1:
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        total = int(round(float(stats[-1])))
        if not total:
            return {}, 0
        means = (stats[:-1] / total).tolist()
        return {f"val/{k}": float(v) for k, v in zip(VAL_KEYS, means, strict=True)}, total

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.model.parameters(), self.cfg["optim"])
        sched = self.cfg["sched"]
        name = str(sched["name"]).lower()
        if name == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt,
                mode="max",
                factor=float(sched["plateau_factor"]),
                patience=int(sched["plateau_patience"]),
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {
                    "scheduler": plateau,
                    "monitor": "val/iou",
                    "interval": "epoch",
                    "strict": False,
                },
            }
        if name == "none" and not int(sched["warmup_steps"]):
            return opt
        total = float(self.trainer.estimated_stepping_batches)
        if name == "cosine" and not math.isfinite(total):
            raise ConfigError(
                "config key 'sched.name': cosine needs trainer.max_epochs or trainer.max_steps"
            )
        accumulate = max(1, int(self.trainer.accumulate_grad_batches))
        per_epoch = (
            max(1, math.ceil(int(self.trainer.num_training_batches) / accumulate))
            if math.isfinite(float(self.trainer.num_training_batches))
            else 1
        )
        lam = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, sched, total, per_epoch)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": lam, "interval": "step"}}
