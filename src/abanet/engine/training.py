"""``train(config) -> TrainResult``: one training run with Lightning, end to end.

A run folder holds::

    config.yaml        the resolved configuration
    split.json         the train/val/test names when validation was held out of a dataset
    checkpoints/best.ckpt  best validation IoU (Lightning checkpoint)
    checkpoints/last.ckpt  the latest state (``--resume`` continues from it)
    csv/version_N/metrics.csv, tb/version_N/   CSV and TensorBoard logs
    model/             the best model: model.safetensors + config.json (``abanet.load_model``)
                       (a model with ``trainable = False``, e.g. GrabCut, is saved untrained:
                       the run folder then holds config.yaml, split.json, model/, result.json)
    result.json        paths, best score, steps, timing

In distributed training (``trainer.devices`` x ``trainer.num_nodes`` processes) every process runs
this function; process 0 alone writes these files (see docs/training.md, "Many GPUs, many nodes").
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from abanet.data.atomic import atomic_temp, write_bytes_atomic
from abanet.data.preprocess import resolve_data_config
from abanet.engine.config import dump_yaml, read_yaml, resolve_config
from abanet.errors import AbanetError, ConfigError

CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainResult:
    """Where a run's outputs are and how it scored."""

    run_dir: Path
    model_dir: Path | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_score: float | None
    val_scores: dict[str, float] = field(default_factory=dict)  # of the exported weights
    exported: str = "best"  # which weights RUN/model holds: "best", "last" or "untrained"
    global_step: int = 0
    epochs: int = 0
    seconds: float = 0.0
    split_file: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # the exported model, in memory (eval mode)
    global_rank: int = 0  # this process's rank in distributed training (0 writes the outputs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (paths as text; without the config, the model and the rank)."""
        skip = ("config", "model", "global_rank")
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def _atomic_checkpoint_io() -> Any:
    """A CheckpointIO that writes to a temp file in the target folder, then ``os.replace``."""
    import torch
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
        ) -> None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = atomic_temp(target)
            try:
                with os.fdopen(fd, "wb") as fh:
                    torch.save(checkpoint, fh)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    return AtomicCheckpointIO()


def default_run_dir(cfg: Mapping[str, Any]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg['model']['name']}-{stamp}"


def _build_model(cfg: Mapping[str, Any]) -> Any:
    from abanet.models import create_model

    m = cfg["model"]
    kwargs = dict(m["kwargs"])
    weights = m["encoder_weights"]
    kwargs["encoder_weights"] = None if weights in (None, "none", "None", False) else weights
    model = create_model(m["name"], **kwargs)
    div = int(model.config.size_divisor)
    size = int(cfg["input_size"])
    if size % div:
        from abanet.models.base import nearest_valid_size

        raise ConfigError(
            f"config key 'input_size': {size} is not a multiple of {div} for {m['name']}; "
            f"nearest valid size is {nearest_valid_size(size, div)}"
        )
    model.config.input_size = size
    model.config.threshold = float(m["threshold"])
    return model


def check_accelerator(name: str) -> None:
    """Refuse a ``trainer.accelerator`` this machine does not have, before anything is built."""
    import torch

    present = {
        "gpu": torch.cuda.is_available(),
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if name in present and not present[name]:
        raise ConfigError(
            f"config key 'trainer.accelerator': {name!r} is not available on this machine "
            "(use trainer.accelerator=cpu or auto)"
        )


def check_precision(precision: str, accelerator: str) -> None:
    """Refuse ``16-mixed`` where training would run on the CPU: Lightning has no fp16 AMP there
    and would quietly train in bf16-mixed instead (the run's config would say otherwise)."""
    import torch

    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if precision.startswith("16") and (accelerator == "cpu" or (accelerator == "auto" and not gpu)):
        raise ConfigError(
            f"config key 'trainer.precision': {precision} needs a GPU (this run would train on "
            "the CPU); use bf16-mixed or 32 there"
        )


def _trainer_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    t = cfg["trainer"]
    kw: dict[str, Any] = {
        "max_epochs": int(t["max_epochs"]) if t["max_epochs"] is not None else -1,
        "max_steps": int(t["max_steps"]) if t["max_steps"] is not None else -1,
        "precision": str(t["precision"]),
        "accelerator": t["accelerator"],
        "devices": t["devices"],
        "strategy": t["strategy"],
        "num_nodes": int(t["num_nodes"]),
        "sync_batchnorm": bool(t["sync_batchnorm"]),
        "accumulate_grad_batches": int(t["accumulate"]),
        "gradient_clip_val": t["grad_clip"],
        "log_every_n_steps": int(t["log_every"]),
        "enable_progress_bar": bool(t["progress_bar"]),
        "num_sanity_val_steps": int(t["sanity_val_steps"]),
        "deterministic": bool(t["deterministic"]),
        "enable_model_summary": False,
        "use_distributed_sampler": False,  # SegmentationDataModule shards train and val itself
    }
    if t["max_time"] is not None:
        kw["max_time"] = {"seconds": float(t["max_time"]) * 60.0}
    if t["val_every_n_steps"] is not None:
        kw["val_check_interval"] = int(t["val_every_n_steps"])
        kw["check_val_every_n_epoch"] = None
    else:
        kw["check_val_every_n_epoch"] = int(t["val_every_n_epochs"])
    return kw


class _DropTips(logging.Filter):
    """Hide Lightning's advertising tips from the console (everything else passes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless" not in record.getMessage()


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropTips) for f in handler.filters):
                handler.addFilter(_DropTips())


def _set_best(cb: Any, path: Path, score: float) -> None:
    """Record ``path`` as the best checkpoint in a ModelCheckpoint (save_top_k=1)."""
    import torch

    value = torch.tensor(score)
    cb.best_model_path = cb.kth_best_model_path = str(path)
    cb.best_model_score = cb.kth_value = value
    cb.best_k_models = {str(path): value}


def _load_weights(module: Any, ckpt: Path) -> None:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)


def train(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    resume: bool = False,
    command: str | None = None,
) -> TrainResult:
    """Train one model as ``config`` says (a dict, a YAML file or None for the defaults, plus
    dotted ``key=value`` overrides). With ``resume`` the run continues from
    ``<out>/checkpoints/last.ckpt`` (the saved ``<out>/config.yaml`` is the base config then).
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from abanet.engine.data import SegmentationDataModule, plan_data, write_split
    from abanet.engine.module import SegmentationModule

    _quiet_lightning()
    cfg = resolve_config(config, overrides)
    named_run = bool(cfg["out"])
    run_dir = Path(cfg["out"]) if cfg["out"] else default_run_dir(cfg)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    last_ckpt = ckpt_dir / "last.ckpt"
    saved_cfg = run_dir / "config.yaml"
    if resume:
        if not last_ckpt.is_file():
            raise AbanetError(f"{last_ckpt}: nothing to resume (no last checkpoint in this run)")
        if config is None and saved_cfg.is_file():
            cfg = resolve_config(read_yaml(saved_cfg), overrides)
            cfg["out"] = str(run_dir)
    elif last_ckpt.is_file() or (run_dir / "model").exists():
        raise AbanetError(
            f"{run_dir}: this run folder already holds a run; pass --resume to continue it or "
            "choose another out"
        )
    cfg["out"] = str(run_dir)
    check_accelerator(str(cfg["trainer"]["accelerator"]))
    check_precision(str(cfg["trainer"]["precision"]), str(cfg["trainer"]["accelerator"]))

    ckpt_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val/iou",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        save_on_train_epoch_end=False,
    )
    callbacks: list[Any] = [ckpt_cb, LearningRateMonitor(logging_interval="step")]
    es = cfg["early_stopping"]
    if es["patience"]:
        callbacks.append(
            EarlyStopping(
                monitor="val/iou",
                mode="max",
                patience=int(es["patience"]),
                min_delta=float(es["min_delta"]),
            )
        )
    loggers = [CSVLogger(run_dir, name="csv"), TensorBoardLogger(run_dir, name="tb")]
    trainer = L.Trainer(
        default_root_dir=run_dir,
        callbacks=callbacks,
        logger=loggers,
        plugins=[_atomic_checkpoint_io()],
        **_trainer_kwargs(cfg),
    )
    if trainer.world_size > 1 and not named_run:
        raise ConfigError(
            f"config key 'out': {trainer.world_size} processes must share one run folder; "
            "set out=RUN (each process would name its own from the clock)"
        )

    if cfg["trainer"]["cpu_threads"]:
        torch.set_num_threads(int(cfg["trainer"]["cpu_threads"]))
    L.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    model = _build_model(cfg)
    plan = plan_data(cfg)
    split_file = run_dir / "split.json" if plan.split is not None else None
    if trainer.is_global_zero:  # every process has the same config and split; one writes them
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(saved_cfg, dump_yaml(cfg).encode(), overwrite=True)
        write_split(plan, run_dir / "split.json")
    if not model.trainable:  # a classical method (GrabCut): saved as it is, evaluated as any
        result = TrainResult(run_dir, None, None, None, None, split_file=split_file, config=cfg)
        result.exported, result.model = "untrained", model
        _export(result, plan.describe(), command)
        return result

    dm = SegmentationDataModule(
        plan,
        resolve_data_config(model.config, int(cfg["input_size"])),
        batch_size=int(cfg["batch_size"]),
        num_workers=int(cfg["num_workers"]),
        augment=str(cfg["data"]["augment"]),
        cache=bool(cfg["data"]["cache"]),
        seed=int(cfg["seed"]),
        val_max=cfg["data"]["val_max"],
    )
    if cfg["model"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    module = SegmentationModule(model, cfg)

    if resume:  # Lightning warns that the checkpoint folder is not empty: that is the point
        warnings.filterwarnings(
            "ignore", message=r".*exists and is not empty", category=UserWarning
        )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last_ckpt) if resume else None)
    if trainer.interrupted:
        raise AbanetError(f"{run_dir}: training was interrupted; resume with --resume")

    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
    best_score = float(ckpt_cb.best_model_score) if ckpt_cb.best_model_score is not None else None
    val_scores: dict[str, float] = {}
    if module.last_val_step != trainer.global_step:
        # max_steps / max_time stopped between validations: validate the final weights too.
        trainer.validate(module, datamodule=dm, verbose=False)
        score = module.last_val_scores.get("iou")
        if score is not None and (best_score is None or score > best_score):
            best, best_score = ckpt_dir / "best.ckpt", float(score)
            trainer.save_checkpoint(best, weights_only=False)
            _set_best(ckpt_cb, best, best_score)
            val_scores = dict(module.last_val_scores)
    final_scores = dict(module.last_val_scores)  # the final weights' validation scores
    # last.ckpt: the final state, with the checkpoint callback's up-to-date best (for --resume).
    trainer.save_checkpoint(last_ckpt, weights_only=False)
    export = cfg["trainer"]["export"]
    if export == "last":
        val_scores = final_scores
    elif best is not None and best.is_file() and not val_scores:
        _load_weights(module, best)
        trainer.validate(module, datamodule=dm, verbose=False)
        val_scores = dict(module.last_val_scores)
    seconds = time.perf_counter() - start

    result = TrainResult(
        run_dir=run_dir,
        model_dir=None,
        best_checkpoint=best,
        last_checkpoint=last_ckpt,
        best_score=best_score,
        val_scores=val_scores,
        exported=export,
        global_step=int(trainer.global_step),
        epochs=int(trainer.current_epoch),
        seconds=seconds,
        split_file=split_file,
        config=cfg,
        model=module.model.eval(),
        global_rank=int(trainer.global_rank),
    )
    if trainer.is_global_zero:
        _export(result, plan.describe(), command)
    return result


def _export(result: TrainResult, data: Any, command: str | None) -> None:
    """Write ``RUN/model`` (the weights with what made them) and ``RUN/result.json``."""
    import torch

    from abanet.data.atomic import write_bytes_atomic

    cfg, model = result.config, result.model
    result.model_dir = result.run_dir / "model"
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    model.save_pretrained(
        result.model_dir,
        training={
            "data": data,
            "split_file": str(result.split_file) if result.split_file else None,
            "input_size": int(cfg["input_size"]),
            "loss": cfg["loss"] if model.trainable else None,
            "optim": cfg["optim"] if model.trainable else None,
            "global_step": result.global_step,
            "epochs": result.epochs,
            "seed": int(cfg["seed"]),
            "exported": result.exported,
        },
        val_scores=result.val_scores,
        command=command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        run_dir=str(result.run_dir),
        trained_at=datetime.now().isoformat(timespec="seconds"),
    )
    write_bytes_atomic(
        result.run_dir / "result.json",
        (json.dumps(result.to_dict(), indent=2) + "\n").encode(),
        overwrite=True,
    )
