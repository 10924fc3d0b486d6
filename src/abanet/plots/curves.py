"""Training curves from the CSV logs of a run folder (``abanet plot RUN``).

A run writes ``RUN/csv/version_N/metrics.csv`` (Lightning's CSVLogger; a resumed run adds a
version). Read here:

- ``train/loss_step`` (every logged step) and ``train/loss_epoch`` (epoch means);
- ``val/<metric>`` (``iou``, ``f1``, ``precision``, ``recall``, ``accuracy``, ``mae``, ``loss``);
- ``lr-<optimizer>`` (the learning rate).

Versions are joined in order; rows of a version at or past the first step of the next one are
dropped (that part of the run was redone after the resume). After fitting, training validates
again at the final step (``result.json``'s ``global_step``): the final weights when the last
validation was not at the final step, then the best checkpoint's weights to export them. Those
re-validations of an earlier checkpoint are not curve points and are left out: only the final
weights' validation is kept. Validations during fitting are logged at ``step - 1``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.errors import DataError

VAL_METRICS = ("iou", "f1", "precision", "recall", "accuracy")
#: TensorBoard's default smoothing of the per-step training loss
SMOOTHING = 0.6


@dataclass
class Series:
    """Points of one logged value: x (step or epoch) and y."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        self.x.append(x)
        self.y.append(y)


@dataclass
class RunLog:
    """What one run logged, by name (``train/loss_step``, ``val/iou``, ``lr``...)."""

    label: str
    path: Path
    series: dict[str, Series]
    x: str = "step"

    def get(self, name: str) -> Series:
        return self.series.get(name, Series())

    def best(self, metric: str = "val/iou") -> tuple[float, float] | None:
        """(x, value) of the highest value of ``metric``, or None when it was never logged."""
        s = self.get(metric)
        if not s.y:
            return None
        i = int(np.argmax(s.y))
        return s.x[i], s.y[i]


def _version(path: Path) -> int:
    m = re.search(r"version_(\d+)$", path.parent.name)
    return int(m.group(1)) if m else -1


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read training log ({exc})") from exc


def _num(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_val(row: dict[str, str]) -> bool:
    return any(k.startswith("val/") and _num(v) is not None for k, v in row.items())


def _final_step(run: Path) -> int | None:
    try:
        return int(json.loads((run / "result.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _drop_revalidations(rows: list[dict[str, str]], final: int | None) -> list[dict[str, str]]:
    """Leave out the post-fit validations of earlier weights at the final step (module doc)."""
    if final is None:
        return rows
    at_final = [i for i, r in enumerate(rows) if _is_val(r) and _num(r.get("step")) == final]
    fit_val_at_end = any(_is_val(r) and _num(r.get("step")) == final - 1 for r in rows)
    drop = set(at_final if fit_val_at_end else at_final[1:])
    return [r for i, r in enumerate(rows) if i not in drop]


def read_run_logs(run: str | os.PathLike[str], label: str | None = None, x: str = "step") -> RunLog:
    """The logged series of one run folder, with ``x`` (``step`` or ``epoch``) as abscissa."""
    if x not in ("step", "epoch"):
        raise DataError(f"x axis {x!r}: choose step or epoch")
    run = Path(run)
    files = sorted(run.glob("csv/version_*/metrics.csv"), key=_version)
    if not files:
        raise DataError(f"{run}: no training log (csv/version_*/metrics.csv) in this folder")
    parts = [_read_csv(f) for f in files]
    rows: list[dict[str, str]] = []
    for k, part in enumerate(parts):
        later = [_num(r.get("step")) for p in parts[k + 1 :] for r in p]
        later = [s for s in later if s is not None]
        if later:
            first = min(later)
            part = [r for r in part if (_num(r.get("step")) or 0) < first]
        rows += part
    rows = _drop_revalidations(rows, _final_step(run))
    series: dict[str, Series] = {}
    for r in rows:
        at = _num(r.get(x))
        if at is None:
            continue
        for key, text in r.items():
            v = _num(text)
            if key in ("step", "epoch") or v is None or key is None:
                continue
            name = "lr" if key.startswith("lr-") else key
            series.setdefault(name, Series()).add(at, v)
    return RunLog(label or run.name, run, series, x)


def find_runs(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """``(label, run folder)`` of ``folder`` itself when it is a run, else of every run below it
    (labels are paths relative to ``folder``, without a trailing ``/train``: an experiment's
    ``<row>/trial<k>``)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    if list(root.glob("csv/version_*/metrics.csv")):
        # an experiment's trial: <row>/trial<k>/train
        label = f"{root.parent.parent.name}/{root.parent.name}" if root.name == "train" else None
        return [(label or root.name, root)]
    runs = sorted({p.parent.parent.parent for p in root.rglob("csv/version_*/metrics.csv")})
    if not runs:
        raise DataError(f"{root}: no training run below it (no csv/version_*/metrics.csv)")
    out = []
    for run in runs:
        rel = run.relative_to(root).as_posix()
        out.append((rel[: -len("/train")] if rel.endswith("/train") else rel, run))
    return out


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> np.ndarray:
    """TensorBoard's debiased exponential moving average."""
    out = np.empty(len(values))
    last, norm = 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * float(v)
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def _mark_best(ax: Any, log: RunLog, colour: str = "black") -> None:
    best = log.best()
    if best is not None:
        ax.plot(*best, marker="*", markersize=11, color=colour, linestyle="none", zorder=5)
        ax.annotate(
            f"best IoU {best[1]:.3f}",
            best,
            textcoords="offset points",
            xytext=(-8, 8),
            ha="right",
            fontsize=8,
            color=colour,
        )


def _one_run(fig: Any, log: RunLog) -> None:
    panels = 3 if log.get("lr").y else 2
    axes = fig.subplots(1, panels)
    ax = axes[0]
    step = log.get("train/loss_step")
    if step.y:
        ax.plot(step.x, step.y, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(step.x, smooth(step.y), color="tab:blue", label="train (per step, smoothed)")
    epoch = log.get("train/loss_epoch")
    if epoch.y:
        ax.plot(epoch.x, epoch.y, "o-", color="tab:cyan", markersize=3, label="train (epoch mean)")
    val = log.get("val/loss")
    if val.y:
        ax.plot(val.x, val.y, "s-", color="tab:red", markersize=3, label="validation")
    ax.set_title("loss")
    ax.set_xlabel(log.x)
    if ax.lines:
        ax.legend(fontsize=8)
    ax = axes[1]
    for m in VAL_METRICS:
        s = log.get(f"val/{m}")
        if s.y:
            ax.plot(s.x, s.y, "o-", markersize=3, label=m, linewidth=2 if m == "iou" else 1)
    if ax.lines:
        _mark_best(ax, log)
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no validation logged", ha="center", transform=ax.transAxes)
    ax.set_title("validation")
    ax.set_xlabel(log.x)
    if panels == 3:
        lr = log.get("lr")
        axes[2].plot(lr.x, lr.y, color="tab:gray")
        axes[2].set_title("learning rate")
        axes[2].set_xlabel(log.x)
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for a in axes:
        a.grid(alpha=0.3)


def _many_runs(fig: Any, logs: Sequence[RunLog]) -> None:
    import matplotlib

    axes = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["tab10" if len(logs) <= 10 else "tab20"]
    for i, log in enumerate(logs):
        colour = cmap(i % cmap.N)
        step = log.get("train/loss_step")
        if step.y:
            axes[0].plot(step.x, smooth(step.y), ".-", color=colour, markersize=2, label=log.label)
        iou = log.get("val/iou")
        if iou.y:
            axes[1].plot(iou.x, iou.y, "o-", color=colour, markersize=3, label=log.label)
    axes[0].set_title("training loss (per step, smoothed)")
    axes[1].set_title("validation IoU")
    for a in axes:
        a.set_xlabel(logs[0].x)
        a.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)


def curves_figure(logs: Sequence[RunLog], title: str | None = None) -> Any:
    """One run: loss, validation metrics (best IoU starred) and learning rate panels. Several
    runs: training loss and validation IoU, one curve per run."""
    from abanet.plots.base import new_figure

    if not logs:
        raise DataError("no training run to plot")
    many = len(logs) > 1
    fig = new_figure(13 if many else 14, 4.2, layout="constrained")
    if many:
        _many_runs(fig, logs)
    else:
        _one_run(fig, logs[0])
    fig.suptitle(title or (f"{len(logs)} runs" if many else logs[0].label))
    return fig


def plot_runs(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    x: str = "step",
    overwrite: bool = False,
) -> tuple[Path, list[RunLog]]:
    """Write the curves of the run (or every run below) ``folder`` to ``out`` (default
    ``folder/curves.png``); returns the PNG's path and the logs read."""
    from abanet.plots.base import save_png

    root = Path(folder)
    logs = [read_run_logs(run, label, x) for label, run in find_runs(root)]
    target = Path(out) if out is not None else root / "curves.png"
    title = root.name if len(logs) > 1 else None
    return save_png(curves_figure(logs, title), target, overwrite=overwrite), logs
