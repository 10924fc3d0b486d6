"""Figures of dataset statistics (:mod:`abanet.data.stats`): the paper's Figures 3 and 4.

One panel function per statistic draws into a given axes; :func:`stats_figures` makes one
figure per panel and an overview with all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from abanet.data.stats import COLOUR_NAMES, DatasetStats

MAX_SIZE_BARS = 12  # distinct sizes shown as bars; more: width and height histograms
MAX_FACE_BAR = 6  # photos with more faces share the last bar ("6+")


def _note(ax: Any, text: str) -> None:
    import textwrap

    wrapped = "\n".join(textwrap.fill(part, 45) for part in text.split("\n"))
    ax.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=9, color="0.3")
    ax.set_axis_off()


def draw_sizes(ax: Any, stats: DatasetStats) -> None:
    """(a) Image sizes: bars per distinct size, or width / height histograms."""
    sizes = Counter((s.width, s.height) for s in stats.images)
    if len(sizes) <= MAX_SIZE_BARS:
        keys = sorted(sizes, key=lambda k: (-sizes[k], k))
        ax.bar(
            [f"{w}x{h}" for w, h in keys],
            [sizes[k] for k in keys],
            width=0.8 if len(keys) > 2 else 0.4,
            color="tab:blue",
        )
        ax.set_xlabel("width x height (pixels)")
        if len(keys) > 4:
            ax.tick_params(axis="x", labelrotation=45)
    else:
        w = [s.width for s in stats.images]
        h = [s.height for s in stats.images]
        bins = np.histogram_bin_edges(w + h, bins=20)
        ax.hist(w, bins=bins, alpha=0.6, label="width")
        ax.hist(h, bins=bins, alpha=0.6, label="height")
        ax.set_xlabel("pixels")
        ax.legend(fontsize=8)
    ax.set_ylabel("images")
    ax.set_title("image sizes")


def draw_faces(ax: Any, stats: DatasetStats) -> None:
    """(c) Faces and masked faces per photo."""
    if not stats.photo_faces:
        _note(ax, "faces per image not counted:\n" + stats.faces_note)
        ax.set_title("faces per image")
        return
    values = list(stats.photo_faces.values())
    bins = np.arange(MAX_FACE_BAR + 1)
    faces = np.bincount(np.minimum([f for f, _ in values], MAX_FACE_BAR), minlength=len(bins))
    masked = np.bincount(np.minimum([m for _, m in values], MAX_FACE_BAR), minlength=len(bins))
    ax.bar(bins - 0.2, faces, 0.4, label="faces")
    ax.bar(bins + 0.2, masked, 0.4, label="masked faces")
    ax.set_xticks(bins, [str(b) for b in bins[:-1]] + [f"{MAX_FACE_BAR}+"])
    ax.set_xlabel("per photo")
    ax.set_ylabel("photos")
    ax.legend(fontsize=8)
    ax.set_title("faces per image")


def draw_area(ax: Any, stats: DatasetStats) -> None:
    """Mask area: histogram of the share of the image each mask covers."""
    area = np.array([100 * s.mask_fraction for s in stats.images])
    top = min(100.0, 10.0 * np.ceil(max(area.max(), 1e-9) / 10.0))
    ax.hist(area, bins=np.linspace(0, top, 21), color="tab:green", edgecolor="white")
    ax.axvline(area.mean(), color="black", linestyle="--", linewidth=1)
    ax.axvline(np.median(area), color="tab:gray", linestyle=":", linewidth=1.5)
    ax.legend(
        [f"mean {area.mean():.1f} %", f"median {np.median(area):.1f} %"],
        fontsize=8,
        loc="upper right",
    )
    ax.set_xlabel("mask area (% of the image)")
    ax.set_ylabel("images")
    ax.set_title("mask area")


def draw_heat(ax: Any, stats: DatasetStats) -> Any:
    """Mask position: the mean of the masks, each stretched to a square."""
    im = ax.imshow(stats.heat, cmap="magma", vmin=0, vmax=1, extent=(0, 1, 1, 0))
    cents = [s.centroid for s in stats.images if s.centroid]
    if cents:
        cx, cy = np.mean(cents, axis=0)
        ax.plot(cx, cy, marker="+", color="cyan", markersize=12, mew=2, label="mean centroid")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("x (fraction of width)")
    ax.set_ylabel("y (fraction of height)")
    ax.set_title("mask position (share of masks)")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def _pie(ax: Any, counts: Counter[str], colours: dict[str, Any] | None, title: str) -> None:
    total = sum(counts.values())
    items = counts.most_common()
    small = [(k, v) for k, v in items if v / total < 0.03]
    if len(small) > 1:  # slivers are merged so that labels stay readable
        items = [(k, v) for k, v in items if v / total >= 0.03]
        items.append(("other", sum(v for _, v in small)))
    face = [colours.get(k, (0.85, 0.85, 0.85)) if colours else None for k, _ in items]
    wedges, _ = ax.pie(
        [v for _, v in items],
        colors=face if colours else None,
        wedgeprops={"edgecolor": "0.4", "linewidth": 0.6},
        startangle=90,
        counterclock=False,
    )
    ax.legend(
        wedges,
        [f"{k}: {v} ({100 * v / total:.0f} %)" for k, v in items],
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    ax.set_title(title)


def draw_colours(ax: Any, stats: DatasetStats) -> None:
    """Mask colours: the named dominant colour of each mask (Figure 4's pie, by colour)."""
    counts = stats.counts("colour")
    if not counts:
        _note(ax, "no mask pixels")
        return
    colours = {k: np.array(v) / 255 for k, v in COLOUR_NAMES.items()}
    _pie(ax, counts, colours, "mask colours (dominant)")


def draw_types(ax: Any, stats: DatasetStats) -> None:
    """Mask types (Figure 4), when the dataset says them."""
    counts = stats.counts("mask_type")
    if not counts:
        _note(ax, "mask types unknown\n(pass --types CSV: image,type)")
        ax.set_title("mask types")
        return
    _pie(ax, counts, None, "mask types")


#: panel file name -> drawing function
PANELS: dict[str, Callable[[Any, DatasetStats], Any]] = {
    "sizes": draw_sizes,
    "faces": draw_faces,
    "area": draw_area,
    "heatmap": draw_heat,
    "colours": draw_colours,
    "types": draw_types,
}


def stats_figures(stats: DatasetStats, title: str = "") -> dict[str, Any]:
    """``{name: Figure}``: one per panel that has something to show (``faces`` only when faces
    were counted, ``types`` only when types are known) and ``overview`` with every panel."""
    from abanet.plots.base import new_figure

    shown = {
        "faces": bool(stats.photo_faces),
        "types": bool(stats.counts("mask_type")),
    }
    figures = {}
    for name, draw in PANELS.items():
        if not shown.get(name, True):
            continue
        fig = new_figure(5.5, 4.2, layout="constrained")
        draw(fig.subplots(), stats)
        figures[name] = fig
    overview = new_figure(15, 8.5, dpi=80, layout="constrained")
    for ax, draw in zip(overview.subplots(2, 3).ravel(), PANELS.values(), strict=True):
        draw(ax, stats)
    overview.suptitle(title or stats.root)
    figures["overview"] = overview
    return figures
