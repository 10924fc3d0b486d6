"""Training configuration: the packaged defaults, YAML run files, dotted ``key=value`` overrides
and validation (unknown keys and bad values are one-line errors naming the key)."""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from abanet.errors import ConfigError

# Keys whose values are free-form mappings (not checked against the defaults).
FREE_FORM = ("model.kwargs",)

OPTIMIZERS = ("adam", "adamw", "adamax", "rmsprop", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau")
PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64", "64-true")
SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")  # refused, see validate()
EXPORTS = ("best", "last")  # which weights a run exports to RUN/model
AUGMENT = ("none", "light", "default", "heavy")
TRAIN_ENTRY_KEYS = ("path", "repeat", "kind", "negatives")


def _read_yaml_text(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: not valid YAML ({first})") from exc


def default_config() -> dict[str, Any]:
    """The packaged ``abanet/configs/default.yaml`` as a fresh dict."""
    text = resources.files("abanet.configs").joinpath("default.yaml").read_text(encoding="utf-8")
    return _read_yaml_text(text, "abanet/configs/default.yaml")


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML mapping from a file (ConfigError naming the file otherwise)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: config file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from exc
    data = _read_yaml_text(text, str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: a config file must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def _is_free(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in FREE_FORM)


def _all_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.append(key)
        if isinstance(v, Mapping) and not _is_free(key):
            out.extend(_all_keys(v, key + "."))
    return out


def _unknown_key(key: str, known: Iterable[str], where: str) -> ConfigError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    if not close:
        close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:3]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def merge(base: dict[str, Any], update: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``; keys missing from ``base`` are an error
    (except under free-form keys such as ``model.kwargs``)."""
    return _merge(base, update, where, "", _all_keys(base))


def _merge(
    base: dict[str, Any], update: Mapping[str, Any], where: str, prefix: str, known: list[str]
) -> dict[str, Any]:
    out = copy.deepcopy(base)
    if not isinstance(update, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping")
    for k, v in update.items():
        if not isinstance(k, str):
            raise ConfigError(f"{where}: config keys must be text, got {k!r}")
        key = f"{prefix}{k}"
        if _is_free(key) and key not in FREE_FORM:
            out[k] = copy.deepcopy(v)
            continue
        if k not in out:
            raise _unknown_key(key, known, where)
        if _is_free(key):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{where}: config key {key!r} must be a mapping")
            out[k] = {**(out.get(k) or {}), **copy.deepcopy(dict(v))}
        elif isinstance(out[k], Mapping):
            if not isinstance(v, Mapping):
                raise ConfigError(
                    f"{where}: config key {key!r} is a section; set its keys ({key}.KEY=...)"
                )
            out[k] = _merge(out[k], v, where, key + ".", known)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_value(text: str) -> Any:
    """A command-line value: YAML (numbers, true/false, null, [lists], {maps}) or plain text.

    ``1e-3`` (which YAML 1.1 would keep as text) becomes a float.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return value
        return int(f) if f.is_integer() and "e" not in value.lower() and "." not in value else f
    return value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "model.name=abanet_lite"]`` -> a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. optim.lr=1e-3)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: bad key {key!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is set twice")
        node[parts[-1]] = parse_value(text.strip())
    return out


def resolve_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults <- run file (or dict) <- overrides, validated."""
    cfg = default_config()
    if config is not None:
        if isinstance(config, Mapping):
            cfg = merge(cfg, config, "config")
        else:
            cfg = merge(cfg, read_yaml(config), str(config))
    if overrides:
        upd = parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides
        cfg = merge(cfg, upd, "override")
    return validate(cfg)


def get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _num(
    cfg: Mapping[str, Any],
    key: str,
    *,
    minimum: float | None = None,
    integer: bool = False,
    optional: bool = False,
    exclusive: bool = False,
) -> None:
    v = get(cfg, key)
    if v is None and optional:
        return
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok and integer:
        ok = float(v).is_integer()
    if ok and minimum is not None:
        ok = v > minimum if exclusive else v >= minimum
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum:g}"
        none = " or null" if optional else ""
        raise ConfigError(f"config key {key!r}: expected {kind}{bound}{none}, got {v!r}")


def _choice(cfg: Mapping[str, Any], key: str, choices: Sequence[str]) -> None:
    v = get(cfg, key)
    if str(v).lower() not in choices:
        raise ConfigError(f"config key {key!r}: {v!r} is not one of {', '.join(choices)}")


def train_entries(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``data.train`` normalised to ``[{path, repeat, kind, negatives}]``.

    ``negatives: true`` marks a folder of images without masks (e.g. bare faces): every image is
    trained on with an empty mask.
    """
    raw = cfg["data"]["train"]
    if raw is None:
        raw = []
    if isinstance(raw, str | os.PathLike):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(
            f"config key 'data.train': expected a list of dataset folders, got {raw!r}"
        )
    out = []
    for i, e in enumerate(raw):
        if isinstance(e, str | os.PathLike):
            e = {"path": str(e)}
        if not isinstance(e, Mapping) or "path" not in e:
            raise ConfigError(
                f"config key 'data.train[{i}]': expected a path or {{path: DIR, repeat: N}}"
            )
        bad = [k for k in e if k not in TRAIN_ENTRY_KEYS]
        if bad:
            raise ConfigError(
                f"config key 'data.train[{i}].{bad[0]}': unknown "
                f"(allowed: {', '.join(TRAIN_ENTRY_KEYS)})"
            )
        repeat = e.get("repeat", 1.0)
        if isinstance(repeat, bool) or not isinstance(repeat, int | float) or not repeat > 0:
            raise ConfigError(
                f"config key 'data.train[{i}].repeat': expected a number > 0, got {repeat!r}"
            )
        negatives = e.get("negatives", False)
        if not isinstance(negatives, bool):
            raise ConfigError(
                f"config key 'data.train[{i}].negatives': expected true or false, got {negatives!r}"
            )
        out.append(
            {
                "path": str(e["path"]),
                "repeat": float(repeat),
                "kind": str(e.get("kind") or cfg["data"]["kind"]),
                "negatives": negatives,
            }
        )
    return out


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check value types and ranges (ConfigError naming the first bad key); return a copy with
    values normalised (``trainer.precision`` as text). ``config`` itself is left as it is."""
    cfg = copy.deepcopy(dict(config))
    _num(cfg, "seed", integer=True, minimum=0)
    _num(cfg, "input_size", integer=True, minimum=8)
    _num(cfg, "batch_size", integer=True, minimum=1)
    _num(cfg, "num_workers", integer=True, minimum=0)
    train_entries(cfg)
    d = cfg["data"]
    ratios = d["ratios"]
    if (
        not isinstance(ratios, list)
        or not 2 <= len(ratios) <= 3
        or not all(
            isinstance(r, int | float) and not isinstance(r, bool) and r >= 0 for r in ratios
        )
        or not ratios[0] > 0
        or not ratios[1] > 0
    ):
        raise ConfigError(
            "config key 'data.ratios': expected 2 or 3 numbers >= 0 with train and val > 0, "
            f"got {ratios!r}"
        )
    _num(cfg, "data.folds", integer=True, minimum=2)
    _num(cfg, "data.fold", integer=True, minimum=0, optional=True)
    if d["fold"] is not None and d["fold"] >= d["folds"]:
        raise ConfigError(
            f"config key 'data.fold': {d['fold']} is not below data.folds={d['folds']}"
        )
    if d["fold"] is not None and (d["split"] or d["val"]):
        raise ConfigError("config keys 'data.fold' and 'data.split'/'data.val' exclude each other")
    if d["split"] and d["val"]:
        raise ConfigError("config keys 'data.split' and 'data.val' exclude each other")
    _choice(cfg, "data.augment", AUGMENT)
    _num(cfg, "data.val_max", integer=True, minimum=1, optional=True)
    if not isinstance(cfg["model"]["name"], str):
        raise ConfigError(
            f"config key 'model.name': expected a model name, got {cfg['model']['name']!r}"
        )
    if not isinstance(cfg["model"]["kwargs"], Mapping):
        raise ConfigError("config key 'model.kwargs': expected a mapping of model options")
    if "encoder_weights" in cfg["model"]["kwargs"]:
        raise ConfigError(
            "config key 'model.kwargs.encoder_weights': set model.encoder_weights instead"
        )
    _num(cfg, "model.threshold", minimum=0)
    if not isinstance(cfg["loss"]["spec"], str):
        raise ConfigError(
            "config key 'loss.spec': expected text like focal+ssim+iou, "
            f"got {cfg['loss']['spec']!r}"
        )
    _num(cfg, "loss.focal_alpha", minimum=0)
    _num(cfg, "loss.focal_gamma", minimum=0)
    _choice(cfg, "optim.name", OPTIMIZERS)
    _num(cfg, "optim.lr", minimum=0, exclusive=True)
    _num(cfg, "optim.weight_decay", minimum=0)
    _num(cfg, "optim.momentum", minimum=0)
    _choice(cfg, "sched.name", SCHEDULERS)
    _num(cfg, "sched.warmup_steps", integer=True, minimum=0)
    if str(cfg["sched"]["name"]).lower() == "plateau" and cfg["sched"]["warmup_steps"]:
        raise ConfigError("config key 'sched.warmup_steps': warm-up does not combine with plateau")
    _num(cfg, "sched.min_lr_ratio", minimum=0)
    _num(cfg, "sched.step_epochs", integer=True, minimum=1)
    _num(cfg, "sched.gamma", minimum=0, exclusive=True)
    _num(cfg, "sched.plateau_patience", integer=True, minimum=0)
    _num(cfg, "sched.plateau_factor", minimum=0, exclusive=True)
    t = cfg["trainer"]
    _num(cfg, "trainer.max_epochs", integer=True, minimum=1, optional=True)
    _num(cfg, "trainer.max_steps", integer=True, minimum=1, optional=True)
    _num(cfg, "trainer.max_time", minimum=0, exclusive=True, optional=True)
    if t["max_epochs"] is None and t["max_steps"] is None and t["max_time"] is None:
        raise ConfigError(
            "config: set one of trainer.max_epochs, trainer.max_steps, trainer.max_time"
        )
    _num(cfg, "trainer.val_every_n_epochs", integer=True, minimum=1)
    _num(cfg, "trainer.val_every_n_steps", integer=True, minimum=1, optional=True)
    _num(cfg, "trainer.sanity_val_steps", integer=True, minimum=0)
    t["precision"] = str(t["precision"])  # YAML reads 32 as a number
    _choice(cfg, "trainer.precision", PRECISIONS)
    _num(cfg, "trainer.num_nodes", integer=True, minimum=1)
    strategy = str(t["strategy"]).lower()
    if strategy.startswith(SPAWNING_STRATEGIES):
        raise ConfigError(
            f"config key 'trainer.strategy': {t['strategy']!r} hands only the weights "
            "back from its child processes, and a run validates and exports after fitting in "
            "every process; use ddp (one process per device, or torchrun / srun)"
        )
    _num(cfg, "trainer.accumulate", integer=True, minimum=1)
    _num(cfg, "trainer.grad_clip", minimum=0, exclusive=True, optional=True)
    _num(cfg, "trainer.log_every", integer=True, minimum=1)
    _num(cfg, "trainer.cpu_threads", integer=True, minimum=1, optional=True)
    _choice(cfg, "trainer.export", EXPORTS)
    _num(cfg, "early_stopping.patience", integer=True, minimum=1, optional=True)
    _num(cfg, "early_stopping.min_delta", minimum=0)
    return cfg


def dump_yaml(cfg: Mapping[str, Any]) -> str:
    """YAML text of a config (keys in their default order)."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None, width=100)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj
