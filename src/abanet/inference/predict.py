"""``abanet predict`` as a library function: gather inputs, run a Segmenter, write outputs.

Decoding and encoding run in a thread pool around the model so the cores do not idle; outputs
are written atomically and never overwrite existing files unless asked.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.data.io import IMAGE_EXTENSIONS, write_bytes_atomic, write_image_atomic
from abanet.errors import AbanetError


@dataclass
class PredictJob:
    """One input file and the stem (relative, without extension) its outputs are named after."""

    path: Path
    stem: Path


@dataclass
class PredictSummary:
    """What ``predict_files`` did: counts and per-file failures."""

    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    faces: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def gather_inputs(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[PredictJob], list[str]]:
    """Expand files, folders (recursive) and globs into jobs; returns (jobs, problems)."""
    jobs: list[PredictJob] = []
    problems: list[str] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                problems.append(f"{path}: folder holds no images")
            jobs += [PredictJob(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            jobs.append(PredictJob(path, Path(path.stem)))
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                problems.append(f"{text}: pattern matches no images")
            jobs += [PredictJob(m, Path(m.stem)) for m in files]
        else:
            problems.append(f"{path}: no such file or folder")
    seen: dict[Path, Path] = {}
    unique: list[PredictJob] = []
    for job in jobs:
        if job.stem in seen:
            if seen[job.stem] != job.path:
                problems.append(
                    f"{job.path}: output name {job.stem} already taken by {seen[job.stem]}"
                )
            continue
        seen[job.stem] = job.path
        unique.append(job)
    return unique, problems


def output_paths(out_dir: Path, stem: Path, options: dict[str, bool]) -> dict[str, Path]:
    """Paths each requested output kind is written to."""
    base = out_dir / stem
    paths = {"mask": base.with_suffix(".png")}
    if options.get("overlay"):
        paths["overlay"] = base.parent / f"{base.name}_overlay.jpg"
    if options.get("cutout"):
        paths["cutout"] = base.parent / f"{base.name}_cutout.png"
    if options.get("json"):
        paths["json"] = base.with_suffix(".json")
    return paths


def overlay(image: np.ndarray, mask: np.ndarray, color=(0, 200, 255), alpha=0.45) -> np.ndarray:
    """The image with the mask region tinted and its outline drawn."""
    import cv2

    out = image.astype(np.float32)
    sel = mask > 0
    out[sel] = out[sel] * (1 - alpha) + np.asarray(color, np.float32) * alpha
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(image.shape[:2]) / 300))
    cv2.drawContours(out, contours, -1, color, thickness)
    return out


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA image whose alpha is the mask."""
    return np.dstack([image, mask.astype(np.uint8)])


def predict_files(
    segmenter: Any,
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    soft: bool = False,
    overlay_out: bool = False,
    cutout_out: bool = False,
    json_out: bool = False,
    whole_image: bool = False,
    overwrite: bool = False,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
    report: Callable[[str], None] = print,
) -> PredictSummary:
    """Segment every input and write ``OUT/<stem>.png`` (+ requested extras)."""
    from abanet.data.io import read_image
    from abanet.inference.segmenter import encode_mask

    out = Path(out_dir)
    jobs, problems = gather_inputs(inputs)
    summary = PredictSummary()
    for p in problems:
        report(p)
        summary.failed.append((Path(p.split(":", 1)[0]), p))
    options = {"overlay": overlay_out, "cutout": cutout_out, "json": json_out}
    todo = []
    for job in jobs:
        paths = output_paths(out, job.stem, options)
        existing = [p for p in paths.values() if p.exists()]
        if existing and not overwrite:
            report(f"{existing[0]}: exists, skipped (use --overwrite to replace)")
            summary.skipped_existing.append(existing[0])
            continue
        todo.append((job, paths))
    if not todo:
        return summary
    out.mkdir(parents=True, exist_ok=True)

    def decode(job: PredictJob) -> np.ndarray:
        return read_image(job.path)

    def encode(job: PredictJob, paths: dict[str, Path], image: np.ndarray, result: Any) -> None:
        mask = encode_mask(result, soft)
        write_image_atomic(paths["mask"], mask, overwrite=True)
        binary = encode_mask(result, False)
        if "overlay" in paths:
            write_image_atomic(paths["overlay"], overlay(image, binary), overwrite=True)
        if "cutout" in paths:
            write_image_atomic(paths["cutout"], cutout(image, binary), overwrite=True)
        if "json" in paths:
            record = {"image": str(job.path), **result.to_json()}
            write_bytes_atomic(
                paths["json"], (json.dumps(record, indent=1) + "\n").encode(), overwrite=True
            )

    workers = max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(workers) as pool:
        decoded: list[Future] = [pool.submit(decode, job) for job, _ in todo]
        writes: list[tuple[PredictJob, Future]] = []
        steps: Iterator[Any] = iter(range(len(todo)))
        if progress is not None:
            steps = progress(steps, len(todo))
        for i in steps:
            job, paths = todo[i]
            try:
                image = decoded[i].result()
                result = segmenter.segment(image, whole_image=whole_image)
            except AbanetError as exc:
                report(str(exc))
                summary.failed.append((job.path, str(exc)))
                continue
            decoded[i] = None  # type: ignore[call-overload]  # free memory early
            summary.faces += len(result.faces)
            for p in paths.values():
                p.parent.mkdir(parents=True, exist_ok=True)
            writes.append((job, pool.submit(encode, job, paths, image, result)))
        for job, fut in writes:
            try:
                fut.result()
                summary.written.append(output_paths(out, job.stem, options)["mask"])
            except (AbanetError, OSError) as exc:
                report(f"{job.path}: cannot write output ({exc})")
                summary.failed.append((job.path, str(exc)))
    return summary
