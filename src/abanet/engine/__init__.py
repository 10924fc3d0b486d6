"""Training, evaluation and the paper's experiments.

>>> from abanet.engine import train, evaluate
>>> result = train({"data": {"train": ["data/mfsd"]}, "model": {"name": "abanet_lite"}})
>>> evaluate(result.model_dir, "data/mfsd", out="eval", split=result.split_file, subset="test")

Importing this package is light; torch and Lightning load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from abanet.engine.config import default_config, parse_overrides, resolve_config
from abanet.errors import ConfigError

_LAZY = {
    "train": "abanet.engine.training",
    "TrainResult": "abanet.engine.training",
    "evaluate": "abanet.engine.evaluation",
    "EvalResult": "abanet.engine.evaluation",
    "run_experiment": "abanet.engine.experiments",
    "list_experiments": "abanet.engine.experiments",
    "SegmentationModule": "abanet.engine.module",
    "SegmentationDataModule": "abanet.engine.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'abanet.engine' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "EvalResult",
    "SegmentationDataModule",
    "SegmentationModule",
    "TrainResult",
    "default_config",
    "evaluate",
    "list_experiments",
    "parse_overrides",
    "resolve_config",
    "run_experiment",
    "train",
]
