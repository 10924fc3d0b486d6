"""``evaluate(model, data, out)``: score a model on a labelled dataset with the paper's protocol.

Protocol (spec.md s.5): each image is resized to the model's input size, predicted, and its
probability map resized back (bilinear) to the ground truth's size; masks are thresholded at 127
(0..255), predictions at the model's threshold (0.5); no min-max normalisation of predictions;
every metric is computed per image and averaged over images (``dataset_*`` keys pool the pixels).

Files written to ``out``: ``per_image.csv``, ``summary.json``, ``summary.md`` and, when asked,
``compare.csv`` (beside a baselines file), a PNG grid of image | ground truth | prediction |
error map rows and a PNG grid of several models' error maps on the same crops
(:mod:`abanet.plots.grid`: false positives red, false negatives blue, true positives white, a
legend on every error map).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from abanet.errors import AbanetError, DataError
from abanet.metrics.structure import STRUCTURE_KEYS

if TYPE_CHECKING:
    from abanet.inference.segmenter import Segmenter

#: Columns of per_image.csv after ``image`` (binary metrics first, as in the baselines file).
BINARY_COLUMNS = ("accuracy", "f1", "iou", "precision", "recall", "mae")
#: Metrics a baselines file may hold (any subset; ``model`` and ``image`` are required).
COMPARE_METRICS = ("iou", "f1", "precision", "recall", "accuracy", "mae")


@dataclass
class EvalResult:
    """Scores of one evaluation and the files written."""

    summary: dict[str, Any]
    per_image: list[dict[str, Any]]
    compare: list[dict[str, Any]] | None = None
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.summary["metrics"]


# ----------------------------------------------------------------------------------- data
def select_samples(
    data: str | os.PathLike[str] | Sequence[Any],
    split: str | os.PathLike[str] | None = None,
    subset: str = "test",
    kind: str = "auto",
    notes: list[str] | None = None,
) -> list[Any]:
    """The labelled samples of a dataset folder (or a sample list), optionally one split subset.

    Images without a mask cannot be scored: they are left out and said so in ``notes``.
    """
    from abanet.data.readers import open_dataset, paired

    if isinstance(data, str | os.PathLike):
        samples, problems = open_dataset(data, kind)
        pairs = paired(samples)
        if not pairs:
            errs = [str(p) for p in problems if p.severity == "error"][:1]
            raise DataError(
                f"{data}: no image/mask pairs to evaluate" + (f" ({errs[0]})" if errs else "")
            )
        unpaired = [s for s in samples if not s.has_mask]
        if unpaired and notes is not None:
            notes.append(
                f"{len(unpaired)} of {len(samples)} images have no mask and are not scored "
                f"(e.g. {unpaired[0].image_path}; 'abanet data check {data}' lists them)"
            )
    else:
        pairs = list(data)
    if split is not None:
        from abanet.data.splits import apply_split, load_split

        s = load_split(split)
        if subset not in s:
            raise DataError(f"{split}: no {subset!r} list (has {', '.join(s)})")
        pairs = apply_split(pairs, {subset: s[subset]})[subset]
        if not pairs:
            raise DataError(f"{split}: the {subset!r} list is empty")
    return pairs


def load_scored_mask(sample: Any, threshold: int = 127) -> np.ndarray:
    """A sample's ground truth as {0, 1}, refused (DataError) when ``abanet data check`` would
    reject its values: a 0/1 class-index mask would score as empty, a grey one as noise."""
    from abanet.data.io import binarize_mask, mask_value_problems
    from abanet.data.readers import load_mask_raw

    raw = load_mask_raw(sample)
    problems = mask_value_problems(raw, threshold)
    if problems:
        raise DataError(f"{sample.mask_path}: {problems[0]}; cannot score against it")
    return binarize_mask(raw, threshold)


class _EvalSet:
    """Items: the RGB image, its ground truth (uint8 {0,1}) and name; the Segmenter preprocesses."""

    def __init__(self, samples: Sequence[Any]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from abanet.data.readers import load_image

        s = self.samples[i]
        image = load_image(s)
        mask = load_scored_mask(s, 127)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{s.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return {"image": image, "mask": mask, "name": s.name}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: [it[k] for it in items] for k in ("image", "mask", "name")}


# -------------------------------------------------------------------------------- compare
def _name_keys(name: str) -> list[str]:
    base = Path(name).name
    return [name, base, base.lower(), Path(base).stem.lower()]


def read_baselines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a per-image baselines CSV (``model,[encoder,]image,<metrics>``), metrics as
    floats."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"{p}: baselines file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read baselines file ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("model", "image") if c not in cols]
    if missing:
        raise DataError(
            f"{p}: baselines file needs columns model,image (missing {', '.join(missing)})"
        )
    metrics = [m for m in COMPARE_METRICS if m in cols]
    if not metrics:
        raise DataError(
            f"{p}: baselines file has none of the metric columns {', '.join(COMPARE_METRICS)}"
        )
    rows = []
    for line, r in enumerate(reader, start=2):
        r = {k.strip(): (v or "").strip() for k, v in r.items() if k is not None}
        row: dict[str, Any] = {
            "model": r["model"],
            "encoder": r.get("encoder", ""),
            "image": r["image"],
        }
        for m in metrics:
            try:
                row[m] = float(r[m])
            except ValueError:
                raise DataError(f"{p}: line {line}: {m} is not a number ({r[m]!r})") from None
        rows.append(row)
    return rows


def compare_with(
    per_image: Sequence[Mapping[str, Any]],
    baselines: Sequence[Mapping[str, Any]],
    label: str = "ours",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per (model, encoder) of ``baselines``: its means and ours over the SAME images (joined by
    image name: exact, then file name, then case-insensitive file name, then stem).

    Returns ``(rows, info)``; each row has ``model, encoder, listed, matched`` and for each metric
    ``<m>`` (baseline mean) and ``ours_<m>``; the last row is ours over the images every baseline
    matched. ``info`` says how many of our images matched.
    """
    index: dict[str, str] = {}
    for r in per_image:
        for k in _name_keys(str(r["image"])):
            index.setdefault(k, str(r["image"]))
    ours = {str(r["image"]): r for r in per_image}
    metrics = [m for m in COMPARE_METRICS if baselines and m in baselines[0]]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for b in baselines:
        groups[(b["model"], b.get("encoder", ""))].append(b)
    rows: list[dict[str, Any]] = []
    common: set[str] | None = None
    for (model, enc), items in groups.items():
        matched: dict[str, Mapping[str, Any]] = {}
        for b in items:
            hit = next((index[k] for k in _name_keys(b["image"]) if k in index), None)
            if hit is not None:
                matched[hit] = b
        row: dict[str, Any] = {
            "model": model,
            "encoder": enc,
            "listed": len(items),
            "matched": len(matched),
        }
        for m in metrics:
            row[m] = float(np.mean([b[m] for b in matched.values()])) if matched else math.nan
            row[f"ours_{m}"] = (
                float(np.mean([ours[n][m] for n in matched])) if matched else math.nan
            )
        rows.append(row)
        common = set(matched) if common is None else common & set(matched)
    rows.sort(key=lambda r: -(r.get("iou", 0.0) if not math.isnan(r.get("iou", math.nan)) else -1))
    common = common or set()
    ours_row: dict[str, Any] = {
        "model": label,
        "encoder": "",
        "listed": len(per_image),
        "matched": len(common),
    }
    for m in metrics:
        v = float(np.mean([ours[n][m] for n in common])) if common else math.nan
        ours_row[m] = v
        ours_row[f"ours_{m}"] = v
    rows.append(ours_row)
    info = {
        "baseline_groups": len(groups),
        "our_images": len(per_image),
        "matched_by_all": len(common),
        "metrics": metrics,
    }
    return rows, info


# ------------------------------------------------------------------------------- writing
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6f}"
    return str(v)


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in columns])
    return buf.getvalue()


def _write(path: Path, text: str) -> Path:
    from abanet.data.atomic import write_bytes_atomic

    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=True)


def summary_markdown(
    summary: Mapping[str, Any], compare: Sequence[Mapping[str, Any]] | None
) -> str:
    """The summary as Markdown (percentages like the paper's tables for IoU..accuracy)."""
    m = summary["metrics"]
    lines = [
        f"# Evaluation of {summary['model']}",
        "",
        f"- data: `{summary['data']}`"
        + (
            f" (split `{summary['split']}`, subset `{summary['subset']}`)"
            if summary.get("split")
            else ""
        ),
        f"- images: {summary['images']}, input size {summary['input_size']}, threshold "
        f"{summary['threshold']}, device {summary['device']}",
        f"- speed: {summary['fps']:.2f} images/s (model forward, batch {summary['batch_size']})",
        *(f"- **warning**: {w}" for w in summary.get("warnings", [])),
        "",
        "Per-image means (paper protocol), IoU to accuracy in %:",
        "",
        "| IoU | F1 | Precision | Recall | Acc | MAE | F-beta (adaptive) | F-beta (max) | S-measure"
        " | E-measure (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(k: str) -> str:
        return f"{100 * m[k]:.3f}" if k in m else "-"

    def frac(k: str) -> str:
        return f"{m[k]:.3f}" if k in m else "-"

    lines.append(
        f"| {pct('iou')} | {pct('f1')} | {pct('precision')} | {pct('recall')} | {pct('accuracy')} "
        f"| {frac('mae')} | {frac('fbeta_adaptive')} | {frac('fbeta_max')} | {frac('smeasure')} "
        f"| {frac('emeasure_mean')} |"
    )
    lines += [
        "",
        "Pooled over all pixels (%): "
        + ", ".join(
            f"{k.split('_', 1)[1]} {100 * m[k]:.3f}" for k in m if k.startswith("dataset_")
        ),
        "",
    ]
    if compare:
        metrics = [k for k in COMPARE_METRICS if k in compare[0]]
        lines += [
            "## Beside the baselines (same images)",
            "",
            "| model | encoder | matched | "
            + " | ".join(metrics)
            + " | "
            + " | ".join(f"ours {k}" for k in metrics)
            + " |",
            "|---|---|---|" + "---|" * (2 * len(metrics)),
        ]

        def cell(k: str, v: float) -> str:
            if math.isnan(v):
                return "-"
            return f"{v:.4f}" if k == "mae" else f"{100 * v:.3f}"

        for r in compare:
            vals = [cell(k, r[k]) for k in metrics]
            ours = [cell(k, r["ours_" + k]) for k in metrics]
            lines.append(
                f"| {r['model']} | {r['encoder']} | {r['matched']}/{r['listed']} | "
                + " | ".join(vals)
                + " | "
                + " | ".join(ours)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- evaluate
def evaluate(
    model: Any,
    data: str | os.PathLike[str] | Sequence[Any],
    out: str | os.PathLike[str] | None = None,
    *,
    size: int | None = None,
    batch_size: int = 8,
    split: str | os.PathLike[str] | None = None,
    subset: str = "test",
    kind: str = "auto",
    compare: str | os.PathLike[str] | None = None,
    grid: str | os.PathLike[str] | None = None,
    grid_worst: int | None = None,
    grid_rows: int = 8,
    grid_tile: int = 160,
    compare_grid: str | os.PathLike[str] | None = None,
    grid_models: Sequence[tuple[str, Any]] = (),
    label: str | None = None,
    threshold: float | None = None,
    structure: bool = True,
    device: str = "auto",
    backend: str = "eager",
    num_workers: int = 0,
    flip_tta: bool | None = None,
    fill_holes: bool | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    num_threads: int | None = None,
) -> EvalResult:
    """Score ``model`` (a SegmentationModel, a shipped name or a saved folder/file) on the labelled
    pairs of ``data`` (a dataset folder or a list of samples; ``split``+``subset`` pick a part).

    Probabilities come from :class:`abanet.Segmenter` on each whole image (the path ``predict``
    uses, with any ``backend`` of it). ``size`` overrides the model's input size; ``threshold``
    its threshold; ``flip_tta`` and ``fill_holes`` its test-time refinements (``None``: as its
    config says); ``num_threads`` the CPU threads (default: every core). With ``out`` the files
    of the module docstring are written there (an existing ``summary.json`` is only replaced with
    ``overwrite``). ``grid`` writes a PNG of ``grid_rows`` images, or the ``grid_worst`` worst by
    IoU. ``compare_grid`` writes the same crops with one error map per model: this one (named
    ``label``, default its config name) then each ``(label, model)`` of ``grid_models`` at its
    own input size and threshold. ``progress(done, total)`` is called before the first batch
    and after each. Returns an :class:`EvalResult`.
    """
    import torch
    from torch.utils.data import DataLoader

    from abanet.metrics import SegmentationMetrics

    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "summary.json").exists() and not overwrite:
        raise AbanetError(f"{out_dir}: holds an evaluation already (summary.json); pass overwrite")
    for picture in (grid, compare_grid):
        if picture is not None and Path(picture).exists() and not overwrite:
            raise AbanetError(f"{picture}: file exists (pass overwrite to replace it)")
    if compare_grid is not None and not grid_models:
        raise AbanetError(f"{compare_grid}: a compare grid needs at least one other model")
    if batch_size < 1:
        raise AbanetError(f"evaluate: batch size must be >= 1, got {batch_size}")
    from abanet.data.preprocess import resolve_data_config
    from abanet.models.hub import resolve_model

    net, torch_device, _ = resolve_model(model, device)
    dev = str(torch_device)
    cfg = net.config
    input_size = resolve_data_config(cfg, size).size
    thr = float(cfg.threshold if threshold is None else threshold)
    notes: list[str] = []
    samples = select_samples(data, split, subset, kind, notes)
    baselines = read_baselines(compare) if compare is not None else None

    from abanet.inference.profiling import StageTimer
    from abanet.inference.segmenter import Segmenter

    dataset = _EvalSet(samples)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    segmenter = Segmenter(
        net,
        device=dev,
        backend=backend,
        threshold=thr,
        detector=None,
        batch_size=batch_size,
        flip_tta=flip_tta,
        fill_holes=fill_holes,
        size=input_size,
        num_threads=num_threads,
    )
    tta, holes = segmenter.flip_tta, segmenter.fill_holes
    others = [
        (str(name), Segmenter(m, device=dev, backend=backend, detector=None, batch_size=batch_size))
        for name, m in (grid_models if compare_grid is not None else ())
    ]
    timer = StageTimer()
    metrics = SegmentationMetrics(threshold=thr, structure=structure)
    start = time.perf_counter()
    if progress is not None:
        progress(0, len(dataset))
    with torch.inference_mode():
        for batch in loader:
            probs = [torch.from_numpy(p) for p in segmenter.segment_crops(batch["image"], timer)]
            masks = [torch.from_numpy(m) for m in batch["mask"]]
            metrics.update(probs, masks, names=batch["name"])
            if progress is not None:
                progress(len(metrics), len(dataset))
    wall = time.perf_counter() - start
    forward = timer.seconds.get("model", 0.0)

    per_image = []
    for row in metrics.per_image():
        r = {"image": row.pop("name"), **row}
        per_image.append(r)
    scores = metrics.compute()
    summary: dict[str, Any] = {
        "model": str(model) if not hasattr(model, "config") else cfg.name,
        "model_name": cfg.name,
        "data": str(data) if isinstance(data, str | os.PathLike) else f"{len(samples)} samples",
        "split": str(split) if split is not None else None,
        "subset": subset if split is not None else None,
        "images": len(per_image),
        "input_size": input_size,
        "threshold": thr,
        "flip_tta": tta,
        "fill_holes": holes,
        "device": dev,
        "batch_size": batch_size,
        "backend": getattr(segmenter.backend, "name", backend),
        "fps": len(samples) / forward if forward else 0.0,
        "seconds": wall,
        "metrics": scores,
        "warnings": notes,
    }
    result = EvalResult(summary=summary, per_image=per_image, out_dir=out_dir)

    if baselines is not None:
        rows, info = compare_with(per_image, baselines, label=f"ours ({cfg.name})")
        summary["compare"] = {"file": str(compare), **info}
        result.compare = rows

    if grid is not None or compare_grid is not None:
        pictures = _grid_pictures(
            segmenter, others, dataset, per_image, grid_worst, grid_rows, grid_tile
        )
        if grid is not None:
            result.files["grid"] = pictures(Path(grid), ["prediction"])
        if compare_grid is not None:
            labels = [label or cfg.name, *(n for n, _ in others)]
            result.files["compare_grid"] = pictures(Path(compare_grid), labels)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = ["image", *BINARY_COLUMNS] + (list(STRUCTURE_KEYS) if structure else [])
        result.files["per_image"] = _write(out_dir / "per_image.csv", _csv_text(per_image, columns))
        if result.compare is not None:
            metrics_cols = summary["compare"]["metrics"]
            cols = [
                "model",
                "encoder",
                "listed",
                "matched",
                *metrics_cols,
                *[f"ours_{m}" for m in metrics_cols],
            ]
            result.files["compare"] = _write(
                out_dir / "compare.csv", _csv_text(result.compare, cols)
            )
        result.files["summary_md"] = _write(
            out_dir / "summary.md", summary_markdown(summary, result.compare)
        )
        summary["files"] = {k: str(v) for k, v in result.files.items()}
        # summary.json last: its presence marks a finished evaluation
        result.files["summary"] = _write(
            out_dir / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n"
        )
    return result


def jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists and NaN as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _grid_pictures(
    segmenter: Segmenter,
    others: Sequence[tuple[str, Segmenter]],
    dataset: _EvalSet,
    per_image: Sequence[Mapping[str, Any]],
    worst: int | None,
    rows: int,
    tile: int,
) -> Callable[[Path, list[str]], Path]:
    """Predict the grid's crops (the first ``rows``, or the ``worst`` by IoU of the evaluated
    model) with every model once; returns ``write(path, labels)``, which writes a grid of the
    first ``len(labels)`` models: masks and error maps for one model, error maps only for
    several."""
    from abanet.metrics.binary import binary_scores
    from abanet.plots.base import save_png
    from abanet.plots.grid import GridRow, grid_figure

    if worst:
        chosen = sorted(range(len(per_image)), key=lambda i: (per_image[i]["iou"], i))[:worst]
    else:
        chosen = list(range(min(rows, len(per_image))))
    items = [dataset[i] for i in chosen]
    images = [it["image"] for it in items]
    preds: list[list[np.ndarray]] = [[] for _ in items]
    captions: list[list[str]] = [[] for _ in items]
    for seg in (segmenter, *(s for _, s in others)):
        for k, p in enumerate(seg.segment_crops(images)):
            preds[k].append((p >= seg.threshold).astype(np.uint8))
            iou = binary_scores(p, items[k]["mask"], seg.threshold)["iou"]
            captions[k].append(f"IoU {iou:.3f}")

    def write(path: Path, labels: list[str]) -> Path:
        n = len(labels)
        picture_rows = [
            GridRow(it["image"], it["mask"], p[:n], c[:n], str(per_image[i]["image"]))
            for i, it, p, c in zip(chosen, items, preds, captions, strict=True)
        ]
        fig = grid_figure(picture_rows, labels, tile, masks=n == 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_png(fig, path, overwrite=True)

    return write
