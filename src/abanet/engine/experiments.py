"""The paper's experiments: sets of training + evaluation runs written up as Markdown tables.

A preset (``abanet/configs/experiments/<name>.yaml``) lists runs, each a label, config overrides
(``set``, dotted keys), optional ``smoke_set`` overrides and the paper's numbers. Scales:

- ``full``: the paper's settings (input 256, batch 8, Adam 1e-4, ImageNet encoders, the paper's
  8500/2500/1758 split proportions, up to 100 epochs with early stopping on val IoU).
- ``medium``: a real ranking on a 2-core CPU in about an hour per table: 128 px inputs, 300 steps
  of batch 8 (Adam 1e-3, cosine), ImageNet MobileNetV2 encoders (the ImageNet weights that install
  offline) in place of ResNet/EfficientNet/VGG, ``abanet_lite`` in place of ``abanet_r34`` /
  ``basnet_r34``; rows that differ from another only by an encoder the CPU cannot afford are
  dropped (``medium: false``). Run it on ``mfsd-dev`` (136 real crops, split 65/10/25 % per trial).
- ``smoke``: every run end to end in seconds to minutes on a CPU: tiny inputs, one or two steps,
  random encoders, smp encoders ResNet-18, and (unless ``substitute=False``) ``abanet_lite`` in
  place of the 87M-parameter ``abanet_r34``/``basnet_r34`` (it takes the same ``refine`` and
  ``attention_stages`` options). Numbers at this scale only prove the pipeline runs.

A run with ``<scale>: false`` is left out at that scale; ``<scale>_set`` overrides apply on top
of ``set`` at that scale, ``<scale>_base`` on top of ``base``; ``<scale>_trials`` replaces
``trials``.

Layout of ``out``: ``<run>/trial<k>/train`` (a training run folder) and ``<run>/trial<k>/eval``
(``abanet evaluate`` files on the split's test part). A trial whose ``eval/summary.json`` exists is
skipped, so an interrupted experiment resumes where it stopped. A trial whose training or
evaluation raises is recorded as failed (its row shows ``failed: <error>`` in ``table.md`` and
carries the errors in ``results.json``) and the remaining trials run; a later call retries it.
``table.md``, ``results.csv`` and ``results.json`` are written at the end, and ``<preset>.png``
when the preset names a ``figure`` (``bars``: :func:`abanet.plots.bars.bars_figure`, the
paper's Figure 7).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from abanet.engine.config import merge, parse_overrides
from abanet.errors import AbanetError, ConfigError
from abanet.metrics.structure import STRUCTURE_KEYS

#: A failed trial's traceback, in its trial folder (removed once the trial succeeds).
ERROR_LOG = "error.log"

SCALES = ("smoke", "medium", "full")

#: Overrides every run gets at each scale (before the preset's own).
SCALE_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": {
        "input_size": 256,
        "batch_size": 8,
        "model": {"encoder_weights": "imagenet"},
        "optim": {"name": "adam", "lr": 1.0e-4},
        "data": {"ratios": [8500, 2500, 1758]},
        "trainer": {"max_epochs": 100},
        "early_stopping": {"patience": 10},
    },
    "medium": {
        "input_size": 128,
        "batch_size": 8,
        "num_workers": 0,
        "model": {"encoder_weights": "imagenet"},
        "optim": {"name": "adam", "lr": 1.0e-3},
        "sched": {"name": "cosine", "warmup_steps": 20},
        "data": {"ratios": [0.65, 0.1, 0.25], "augment": "heavy"},
        "trainer": {
            "max_steps": 300,
            "max_epochs": None,
            "val_every_n_steps": 100,
            "export": "last",
            "progress_bar": False,
            "log_every": 25,
        },
    },
    "smoke": {
        "input_size": 64,
        "batch_size": 2,
        "num_workers": 0,
        "model": {"encoder_weights": None},
        "data": {"val_max": 2, "augment": "light", "ratios": [0.8, 0.1, 0.1]},
        "trainer": {
            "max_steps": 1,
            "max_epochs": None,
            "sanity_val_steps": 0,
            "progress_bar": False,
            "log_every": 1,
        },
    },
}

#: Smoke- and medium-scale stand-ins for the large architectures (same options, a fraction of
#: the cost).
SMOKE_SUBSTITUTES: dict[str, dict[str, Any]] = {
    "abanet_r34": {"name": "abanet_lite"},
    "basnet_r34": {"name": "abanet_lite", "kwargs": {"attention_stages": []}},
}
#: Scales that run the stand-ins (unless ``substitute=False``).
SUBSTITUTE_SCALES = ("smoke", "medium")
#: Medium scale: encoders whose ImageNet weights are out of reach offline, or too slow for a CPU,
#: become the one ImageNet encoder that installs offline.
MEDIUM_ENCODER = "mobilenet_v2"

#: How a metric is shown in a table: percent (x100), a fraction, or a plain number.
_PERCENT = {"iou", "f1", "precision", "recall", "accuracy"}
_FRACTION = {"mae", *STRUCTURE_KEYS}
COLUMN_TITLES = {
    "iou": "IoU",
    "f1": "F1-score",
    "precision": "Precision",
    "recall": "Recall",
    "accuracy": "Acc",
    "mae": "MAE",
    "fbeta_adaptive": "F-beta",
    "fbeta_max": "max F-beta",
    "smeasure": "S-measure",
    "emeasure_mean": "E-measure",
    "fps": "FPS",
}


@dataclass
class RunSpec:
    label: str
    overrides: dict[str, Any]
    paper: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preset:
    name: str
    title: str
    row_header: str
    columns: list[str]
    runs: list[RunSpec]
    trials: int = 1
    eval_batch_size: int = 8
    extra_tables: list[dict[str, Any]] = field(default_factory=list)
    paper_only: list[dict[str, Any]] = field(default_factory=list)
    figure: str | None = None  # "bars": also draw the table as grouped bars


@dataclass
class ExperimentResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    table: Path
    trained: int = 0
    skipped: int = 0
    figure: Path | None = None
    failed: list[str] = field(default_factory=list)  # labels of the rows with a failed trial


def list_experiments() -> list[str]:
    """Names of the packaged experiment presets."""
    folder = resources.files("abanet.configs").joinpath("experiments")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.kwargs.refine": False}`` -> ``{"model": {"kwargs": {"refine": False}}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = str(key).split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(nested(value))
        else:
            node[parts[-1]] = nested(value) if isinstance(value, Mapping) else value
    return out


def _deep_update(base: dict[str, Any], upd: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in upd.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_preset(name: str, scale: str = "full") -> Preset:
    """Read a packaged preset (or a YAML file path) and keep the runs of ``scale``."""
    if scale not in SCALES:
        raise AbanetError(f"unknown scale {scale!r} (one of {', '.join(SCALES)})")
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        text, where = Path(name).read_text(encoding="utf-8"), name
    else:
        known = list_experiments()
        if name not in known:
            raise AbanetError(f"unknown experiment {name!r}; known: {', '.join(known)}")
        text = (
            resources.files("abanet.configs")
            .joinpath(f"experiments/{name}.yaml")
            .read_text(encoding="utf-8")
        )
        where = f"abanet/configs/experiments/{name}.yaml"
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(d, dict) or not isinstance(d.get("runs"), list) or not d["runs"]:
        raise ConfigError(f"{where}: an experiment needs a non-empty 'runs' list")
    base = nested(d.get("base") or {})
    base = _deep_update(base, nested(d.get(f"{scale}_base") or {}))
    runs = []
    for i, r in enumerate(d["runs"]):
        if not isinstance(r, dict) or "label" not in r:
            raise ConfigError(f"{where}: run {i} needs a label")
        if r.get(scale) is False:
            continue
        ov = _deep_update(base, nested(r.get("set") or {}))
        ov = _deep_update(ov, nested(r.get(f"{scale}_set") or {}))
        runs.append(RunSpec(str(r["label"]), ov, dict(r.get("paper") or {})))
    trials = int(d.get(f"{scale}_trials", d.get("trials", 1)))
    return Preset(
        name=Path(name).stem,
        title=str(d.get("title", name)),
        row_header=str(d.get("row_header", "Run")),
        columns=list(d.get("columns") or ["iou", "f1", "precision", "recall", "accuracy"]),
        runs=runs,
        trials=trials,
        eval_batch_size=int(d.get("eval_batch_size", 8)),
        extra_tables=list(d.get("extra_tables") or []),
        paper_only=list(d.get("paper_only") or []),
        figure=_figure_kind(d.get("figure"), where),
    )


FIGURES = ("bars",)


def _figure_kind(value: Any, where: str) -> str | None:
    if value is None or value in FIGURES:
        return value
    raise ConfigError(f"{where}: figure {value!r} is not one of {', '.join(FIGURES)}")


def write_figure(spec: Preset, rows: Sequence[Mapping[str, Any]], out_dir: Path) -> Path:
    """Draw the experiment's table as the preset's figure: ``out_dir/<preset>.png``."""
    from abanet.plots.bars import bars_figure
    from abanet.plots.base import save_png

    fig = bars_figure(rows, spec.columns, COLUMN_TITLES, spec.title, spec.row_header)
    return save_png(fig, out_dir / f"{spec.name}.png", overwrite=True)


def slug(label: str) -> str:
    """A folder name for a run label."""
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_")
    return s or "run"


def _substitute(cfg: dict[str, Any], scale: str) -> dict[str, Any]:
    enc = cfg["model"]["kwargs"].get("encoder_name")
    if scale == "medium" and enc is not None and enc != MEDIUM_ENCODER:
        cfg = copy.deepcopy(cfg)
        cfg["model"]["kwargs"]["encoder_name"] = MEDIUM_ENCODER
    sub = SMOKE_SUBSTITUTES.get(cfg["model"]["name"])
    if not sub:
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg["model"]["name"] = sub["name"]
    kwargs = {**cfg["model"]["kwargs"], **sub.get("kwargs", {})}
    cfg["model"]["kwargs"] = kwargs
    size = int(cfg["input_size"])
    if size % 64:  # abanet_lite's divisor
        cfg["input_size"] = max(64, 64 * round(size / 64))
    return cfg


def run_config(
    preset: Preset,
    run: RunSpec,
    data: str,
    scale: str,
    trial: int,
    run_dir: Path,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    substitute: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """The full training config of one trial of one run."""
    from abanet.engine.config import default_config, validate

    cfg = default_config()
    cfg = merge(cfg, SCALE_DEFAULTS[scale], f"{scale} scale")
    cfg = merge(cfg, run.overrides, f"experiment {preset.name} run {run.label!r}")
    user = parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides
    cfg = merge(cfg, user, "override")
    # --data is split into train/val/test; datasets given with --set data.train=[...] are
    # added to the training part of every run.
    extra = cfg["data"]["train"] or []
    cfg["data"]["train"] = [str(data), *(extra if isinstance(extra, list) else [extra])]
    cfg["seed"] = int(seed) + int(trial)
    cfg["out"] = str(run_dir / "train")
    if scale in SUBSTITUTE_SCALES and substitute:
        cfg = _substitute(cfg, scale)
    return validate(cfg)


def _describe_model(cfg: Mapping[str, Any]) -> str:
    """``abanet_lite, 64 px`` / ``unet (resnet18), 64 px``: what a row actually trained."""
    m = cfg["model"]
    enc = m["kwargs"].get("encoder_name")
    return f"{m['name']}{f' ({enc})' if enc else ''}, {cfg['input_size']} px"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def _fmt(key: str, mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    scale, digits = (100.0, 3) if key in _PERCENT else (1.0, 3 if key in _FRACTION else 1)
    text = f"{mean * scale:.{digits}f}"
    if not math.isnan(std):
        text += f" +- {std * scale:.{digits}f}"
    return text


def _failed_cell(row: Mapping[str, Any], limit: int = 160) -> str:
    """``failed: <first error>``; ``failed (trial 0, 2 of 3): ...`` for a row of several trials."""
    failed = row["failed"]
    total = row["trials"] + len(failed)
    which = ", ".join(str(f["trial"]) for f in failed)
    head = "failed" if total == 1 else f"failed (trial {which} of {total})"
    error = str(failed[0]["error"])
    if len(error) > limit:
        error = error[: limit - 3] + "..."
    return _md(f"{head}: {error}")


def _md(text: Any) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return str(text).replace("|", "\\|")


def _paper_cell(v: Any) -> str:
    return "-" if v is None else str(v)


def render_table(
    preset: Preset, rows: Sequence[Mapping[str, Any]], scale: str, note: str = ""
) -> str:
    """Markdown: our table, then the paper's numbers for the same rows."""

    def table(title: str, columns: Sequence[str]) -> list[str]:
        head = [preset.row_header, *[COLUMN_TITLES.get(c, c) for c in columns]]
        ours = head + (["trained model"] if scale != "full" else [])
        lines = [f"### {title}", "", "| " + " | ".join(ours) + " |", "|" + "---|" * len(ours)]
        for r in rows:
            if r.get("failed"):
                cells = [_failed_cell(r), *["-"] * (len(columns) - 1)]
            else:
                cells = [_fmt(c, *r["scores"].get(c, (math.nan, math.nan))) for c in columns]
            if scale != "full":
                cells.append(r.get("trained", ""))
            lines.append(f"| {_md(r['label'])} | " + " | ".join(cells) + " |")
        paper_rows = [r for r in rows if any(c in r["paper"] for c in columns)]
        extra = [p for p in preset.paper_only if any(c in p for c in columns)]
        if paper_rows or extra:
            lines += ["", "Paper:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in paper_rows:
                lines.append(
                    f"| {_md(r['label'])} | "
                    + " | ".join(_paper_cell(r["paper"].get(c)) for c in columns)
                    + " |"
                )
            for p in extra:
                lines.append(
                    f"| {_md(p.get('label', ''))} | "
                    + " | ".join(_paper_cell(p.get(c)) for c in columns)
                    + " |"
                )
        return lines + [""]

    out = [f"## {preset.title}", "", f"Scale: **{scale}**. {note}".strip(), ""]
    out += table(preset.title.split(":")[0] + " (this run)", preset.columns)
    for extra in preset.extra_tables:
        out += table(str(extra.get("title", "")), list(extra.get("columns", [])))
    out.append(
        "IoU, F1, precision, recall and accuracy in %, per-image means over the test images"
        " (mean +- sample std over trials when there are several)."
    )
    return "\n".join(out) + "\n"


def run_experiment(
    preset: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    scale: str = "smoke",
    trials: int | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    substitute: bool = True,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] = print,
    keep_checkpoints: bool = False,
) -> ExperimentResult:
    """Run (or resume) every trial of every run of ``preset`` on dataset ``data``.

    A trial's Lightning checkpoints are deleted once its model is exported (a ResNet-50 row keeps
    ~0.5 GB of them per trial) unless ``keep_checkpoints``.
    """
    from abanet.engine.evaluation import jsonable

    spec = load_preset(preset, scale)
    n_trials = int(trials) if trials is not None else spec.trials
    if n_trials < 1:
        raise AbanetError(f"--trials must be >= 1, got {n_trials}")
    if not Path(data).is_dir():
        raise AbanetError(f"{data}: dataset folder not found")
    out_dir = (
        Path(out) if out is not None else Path("runs") / "experiments" / f"{spec.name}-{scale}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # Check every config before the first (long) training starts.
    plans = []
    for run in spec.runs:
        for t in range(n_trials):
            rd = out_dir / slug(run.label) / f"trial{t}"
            plans.append(
                (
                    run,
                    t,
                    rd,
                    run_config(spec, run, str(data), scale, t, rd, overrides, substitute, seed),
                )
            )
    trained = skipped = 0
    trained_as = {run.label: _describe_model(cfg) for run, t, rd, cfg in plans}
    results: dict[str, list[dict[str, Any]]] = {r.label: [] for r in spec.runs}
    failures: dict[str, list[dict[str, Any]]] = {r.label: [] for r in spec.runs}
    for i, (run, t, rd, cfg) in enumerate(plans, start=1):
        summary_path = rd / "eval" / "summary.json"
        tag = f"[{i}/{len(plans)}] {run.label} trial {t}"
        if summary_path.is_file():
            log(f"{tag}: done already, skipped")
            results[run.label].append(json.loads(summary_path.read_text()))
            skipped += 1
            continue
        try:
            summary, did_train = _run_trial(
                spec, run, t, rd, cfg, data, device, tag, log, keep_checkpoints
            )
        except Exception as exc:  # noqa: BLE001 - one row's failure must not stop the table
            error = error_text(exc)
            log(f"{tag}: failed: {error}")
            _write_error_log(rd, exc)
            failures[run.label].append({"trial": t, "error": error})
            continue
        (rd / ERROR_LOG).unlink(missing_ok=True)
        trained += did_train
        results[run.label].append(summary)

    rows = []
    for run in spec.runs:
        summaries = results[run.label]
        keys = set().union(*(s["metrics"].keys() for s in summaries)) | {"fps"}
        scores = {}
        for k in keys:
            vals = [s["fps"] if k == "fps" else s["metrics"].get(k, math.nan) for s in summaries]
            scores[k] = _mean_std([float(v) for v in vals])
        rows.append(
            {
                "label": run.label,
                "trials": len(summaries),
                "scores": scores,
                "paper": run.paper,
                "images": summaries[0]["images"] if summaries else 0,
                "trained": trained_as[run.label],
                "failed": failures[run.label],
            }
        )
    images = next((r["images"] for r in rows if r["trials"]), 0)
    note = f"Data: `{data}`; {n_trials} trial(s) per row; test images per trial: {images}."
    text = render_table(spec, rows, scale, note)
    from abanet.data.atomic import write_bytes_atomic

    table = write_bytes_atomic(out_dir / "table.md", text.encode(), overwrite=True)
    write_bytes_atomic(out_dir / "results.csv", _results_csv(rows).encode(), overwrite=True)
    payload = {
        "preset": spec.name,
        "scale": scale,
        "data": str(data),
        "trials": n_trials,
        "failed": sum(len(f) for f in failures.values()),
        "rows": [{**r, "scores": {k: list(v) for k, v in r["scores"].items()}} for r in rows],
    }
    write_bytes_atomic(
        out_dir / "results.json",
        (json.dumps(jsonable(payload), indent=2) + "\n").encode(),
        overwrite=True,
    )
    log(f"table: {table}")
    failed = [r["label"] for r in rows if r["failed"]]
    figure = write_figure(spec, rows, out_dir) if spec.figure else None
    if figure is not None:
        log(f"figure: {figure}")
    return ExperimentResult(out_dir, rows, table, trained, skipped, figure, failed)


def _run_trial(
    spec: Preset,
    run: RunSpec,
    t: int,
    rd: Path,
    cfg: dict[str, Any],
    data: str | os.PathLike[str],
    device: str,
    tag: str,
    log: Callable[[str], None],
    keep_checkpoints: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Train (or resume, or reuse) and evaluate one trial; its summary and whether it trained."""
    from abanet.engine.evaluation import evaluate
    from abanet.engine.training import train

    train_dir = Path(cfg["out"])
    model_dir = train_dir / "model"
    split_file = train_dir / "split.json"
    did_train = False
    if not (model_dir / "model.safetensors").is_file():
        resume = (train_dir / "checkpoints" / "last.ckpt").is_file()
        log(f"{tag}: training {cfg['model']['name']} ({'resuming' if resume else 'new'})")
        res = train(cfg, resume=resume, command=f"abanet experiment {spec.name} ({run.label})")
        model: Any = res.model if res.model is not None else res.model_dir
        split_file = res.split_file or split_file
        did_train = True
    if not keep_checkpoints and (model_dir / "model.safetensors").is_file():
        shutil.rmtree(train_dir / "checkpoints", ignore_errors=True)  # the model is exported
    else:
        model = model_dir
    subset = "test"
    if split_file.is_file():
        names = json.loads(split_file.read_text())
        if not names.get("test"):
            subset = "val"
    log(f"{tag}: evaluating on the {subset} images")
    summary = evaluate(
        model,
        data,
        rd / "eval",
        split=split_file if split_file.is_file() else None,
        subset=subset,
        batch_size=spec.eval_batch_size,
        device=device,
        overwrite=True,
        num_threads=cfg["trainer"]["cpu_threads"],  # FPS on the threads training had
    ).summary
    summary["label"] = run.label
    summary["trial"] = t
    return summary, did_train


def error_text(exc: BaseException) -> str:
    """One line for a failed trial: the message of an abanet error, else ``Type: message``."""
    text = " ".join(str(exc).split())
    if isinstance(exc, AbanetError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_error_log(rd: Path, exc: BaseException) -> None:
    import traceback

    from abanet.data.atomic import write_bytes_atomic

    rd.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(exc))
    write_bytes_atomic(rd / ERROR_LOG, text.encode(), overwrite=True)


def _results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row: mean and std of every score, and the errors of failed trials."""
    import csv
    import io

    flat = []
    for r in rows:
        row: dict[str, Any] = {"label": r["label"], "trials": r["trials"]}
        for k, (m, s) in sorted(r["scores"].items()):
            row[k], row[f"{k}_std"] = ("" if math.isnan(m) else m), ("" if math.isnan(s) else s)
        row["failed"] = "; ".join(f"trial {f['trial']}: {f['error']}" for f in r["failed"])
        flat.append(row)
    scores = sorted({k for r in flat for k in r} - {"label", "trials", "failed"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["label", "trials", *scores, "failed"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()
