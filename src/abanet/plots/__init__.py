"""Figures as PNG files, drawn with matplotlib's Agg renderer (no display, no pyplot state).

- :mod:`abanet.plots.grid`: image | ground truth | prediction | error-map grids (one model or
  several side by side), with a TP / FP / FN legend on every error map.
- :mod:`abanet.plots.curves`: training curves from a run's CSV logs (or every run of a folder).
- :mod:`abanet.plots.bars`: an experiment's scores as grouped bars (the paper's Figure 7).
- :mod:`abanet.plots.dataset`: dataset statistics (the paper's Figures 3 and 4).

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure`; :func:`save_png` writes
one atomically.
"""

from __future__ import annotations

from abanet.lazy import lazy_getattr

_LAZY = {
    "new_figure": "base",
    "save_png": "base",
    "grid_figure": "grid",
    "curves_figure": "curves",
    "read_run_logs": "curves",
    "find_runs": "curves",
    "plot_runs": "curves",
    "bars_figure": "bars",
    "stats_figures": "dataset",
}

__getattr__ = lazy_getattr(__name__, _LAZY, "abanet.plots.")

__all__ = sorted(_LAZY)
