"""Figure plumbing: a Figure on the Agg canvas, atomic PNG writes, the error-map colours."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

#: error-map colours (RGB 0..255) and the legend's words for them
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    "TP": (255, 255, 255),
    "FP": (255, 0, 0),
    "FN": (0, 0, 255),
    "TN": (0, 0, 0),
}
#: legend entries of an error map: true positive, false positive, false negative
ERROR_LEGEND = ("TP", "FP", "FN")


def new_figure(width: float, height: float, dpi: int = 100, layout: str | None = None) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches on an Agg canvas (never a window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, dpi: int | None = None) -> bytes:
    """The figure encoded as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, facecolor="white")
    return buf.getvalue()


def save_png(
    fig: Any, path: str | os.PathLike[str], overwrite: bool = False, dpi: int | None = None
) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (an existing file only with ``overwrite``)."""
    from abanet.data.atomic import write_bytes_atomic

    return write_bytes_atomic(path, png_bytes(fig, dpi), overwrite=overwrite)


def error_legend(ax: Any, fontsize: float = 6.0, loc: str = "upper right") -> Any:
    """A TP / FP / FN legend on an error-map axes."""
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=np.array(ERROR_COLOURS[k]) / 255, edgecolor="0.5", label=k)
        for k in ERROR_LEGEND
    ]
    return ax.legend(
        handles=handles,
        loc=loc,
        fontsize=fontsize,
        handlelength=1.0,
        handleheight=0.8,
        handletextpad=0.3,
        borderpad=0.25,
        labelspacing=0.15,
        borderaxespad=0.2,
        framealpha=0.75,
    )
