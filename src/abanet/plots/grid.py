"""Grids of crops (the paper's Figures 8 and 9): image | ground truth | each model's prediction.

A grid is pixel-exact: ``tile`` x ``tile`` pixels per picture, a ``GRID_HEADER``-pixel row of
column titles on top, one row per crop. Error maps colour true positives white, false positives
red, false negatives blue and true negatives black; every error map carries a TP / FP / FN legend
(top right). The image tile shows the crop's name, each error tile its IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abanet.plots.base import ERROR_COLOURS, error_legend, new_figure

GRID_HEADER = 20  # pixels of the column-title row at the top of a grid
GRID_DPI = 100


@dataclass
class GridRow:
    """One crop: RGB image, ground truth {0, 1}, one prediction {0, 1} per model, a caption per
    prediction (shown on its error tile) and the crop's name."""

    image: np.ndarray
    gt: np.ndarray
    preds: list[np.ndarray]
    captions: list[str] = field(default_factory=list)
    name: str = ""


def grid_columns(models: Sequence[str], masks: bool = True) -> list[str]:
    """Column titles: image, ground truth, then per model its mask (``masks``) and error map."""
    cols = ["image", "ground truth"]
    if len(models) == 1 and masks:
        return [*cols, "prediction", "error"]
    for m in models:
        cols += [f"{m}: mask", f"{m}: error"] if masks else [m]
    return cols


def grid_size(rows: int, tile: int, columns: int = 4) -> tuple[int, int]:
    """(width, height) in pixels of a grid with ``rows`` rows of ``columns`` tiles."""
    return columns * tile, GRID_HEADER + rows * tile


def fit_tile(arr: np.ndarray, tile: int, nearest: bool) -> np.ndarray:
    """Resize ``arr`` (HxWx3 uint8) to fit a tile x tile square, centred on grey."""
    from PIL import Image

    h, w = arr.shape[:2]
    s = tile / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    im = Image.fromarray(arr).resize((nw, nh), Image.NEAREST if nearest else Image.BILINEAR)
    out = np.full((tile, tile, 3), 64, dtype=np.uint8)
    y, x = (tile - nh) // 2, (tile - nw) // 2
    out[y : y + nh, x : x + nw] = np.asarray(im)
    return out


def error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """RGB map: true positive white, false positive red, false negative blue, true negative
    black."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    out = np.zeros((*gt.shape, 3), dtype=np.uint8)
    out[pred & gt] = ERROR_COLOURS["TP"]
    out[pred & ~gt] = ERROR_COLOURS["FP"]
    out[~pred & gt] = ERROR_COLOURS["FN"]
    return out


def _gray3(mask: np.ndarray) -> np.ndarray:
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)


def _label(ax: Any, text: str, fontsize: float) -> None:
    """Yellow text on black in the top-left corner of a tile."""
    ax.text(
        0.02,
        0.98,
        text,
        transform=ax.transAxes,
        va="top",
        ha="left",
        color="yellow",
        fontsize=fontsize,
        clip_on=True,
        bbox={"facecolor": "black", "edgecolor": "none", "pad": 1.0},
    )


def _shorten(text: str, tile: int, fontsize: float) -> str:
    """``text`` cut (with "...") to about ``tile`` pixels at ``fontsize`` points."""
    chars = max(4, int(tile / (fontsize * 0.62 * GRID_DPI / 72)))
    return text if len(text) <= chars else text[: chars - 3] + "..."


def grid_figure(
    rows: Sequence[GridRow],
    models: Sequence[str] = ("prediction",),
    tile: int = 160,
    masks: bool = True,
) -> Any:
    """A Figure: one row per :class:`GridRow`, columns as :func:`grid_columns` says.

    ``masks=False`` leaves out the mask tiles: each model then has its error map only (its mask
    is the white plus red pixels).
    """
    columns = grid_columns(models, masks)
    width, height = grid_size(len(rows), tile, len(columns))
    fig = new_figure(width / GRID_DPI, height / GRID_DPI, dpi=GRID_DPI)
    fontsize = max(4.0, min(8.0, tile / 20))
    for c, title in enumerate(columns):
        fig.text(
            (c * tile + 4) / width,
            1 - 4 / height,
            _shorten(title, tile, 8.0),
            va="top",
            ha="left",
            fontsize=8,
        )
    for r, row in enumerate(rows):
        if len(row.preds) != len(models):
            raise ValueError(f"grid row {r}: {len(row.preds)} predictions for {len(models)} models")
        tiles: list[tuple[np.ndarray, str, bool]] = [
            (fit_tile(row.image, tile, False), _shorten(row.name, tile, fontsize), False),
            (fit_tile(_gray3(row.gt), tile, True), "", False),
        ]
        for m, pred in enumerate(row.preds):
            if masks:
                tiles.append((fit_tile(_gray3(pred), tile, True), "", False))
            caption = row.captions[m] if m < len(row.captions) else ""
            tiles.append((fit_tile(error_map(pred, row.gt), tile, True), caption, True))
        y = height - GRID_HEADER - (r + 1) * tile
        for c, (arr, text, is_error) in enumerate(tiles):
            ax = fig.add_axes((c * tile / width, y / height, tile / width, tile / height))
            ax.imshow(arr, interpolation="nearest", aspect="auto")
            ax.set_axis_off()
            if text and tile >= 48:
                _label(ax, text, fontsize)
            if is_error:
                error_legend(ax, fontsize=max(4.0, fontsize - 1.5))
    return fig
