"""An experiment's scores as grouped bars: one group per metric, one bar per row (Figure 7)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: metrics shown in percent (the rest as they are)
PERCENT = {"iou", "f1", "precision", "recall", "accuracy"}


def bars_figure(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    titles: Mapping[str, str] | None = None,
    title: str = "",
    legend_title: str = "",
) -> Any:
    """Grouped bars of ``rows`` (each ``{"label", "scores": {metric: (mean, std)}}``, as
    :func:`abanet.engine.experiments.run_experiment` returns them) for the metrics ``columns``;
    error bars show the std over trials when there are several. Percent metrics are x100; the
    y axis is zoomed to the bars (differences are a few points)."""
    from abanet.plots.base import new_figure

    titles = titles or {}
    n = max(1, len(rows))
    width = 0.8 / n
    fig = new_figure(max(6.0, 1.1 * len(columns) * max(1, n / 3) + 2), 4.2, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(columns))
    tops: list[float] = []
    bottoms: list[float] = []
    for i, row in enumerate(rows):
        means, stds = [], []
        for c in columns:
            mean, std = row["scores"].get(c, (math.nan, math.nan))
            scale = 100.0 if c in PERCENT else 1.0
            means.append(mean * scale)
            stds.append(std * scale if std is not None and not math.isnan(std) else 0.0)
        pos = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(pos, means, width, yerr=stds, capsize=2, label=str(row["label"]))
        ax.bar_label(bars, fmt="%.1f", fontsize=7, rotation=90, label_type="center", color="white")
        finite = [(m, s) for m, s in zip(means, stds, strict=True) if not math.isnan(m)]
        tops += [m + s for m, s in finite]
        bottoms += [m - s for m, s in finite]
    if tops:
        lo, hi = min(bottoms), max(tops)
        pad = max(1.0, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - 2 * pad), hi + 2.5 * pad)
    ax.set_xticks(x, [titles.get(c, c) + (" (%)" if c in PERCENT else "") for c in columns])
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(title=legend_title or None, fontsize=8, ncols=min(n, 6), loc="upper left")
    ax.set_title(title)
    return fig
