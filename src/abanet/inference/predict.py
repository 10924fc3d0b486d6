"""``abanet predict`` as a library function: gather inputs, run a Segmenter, write outputs.

Decoding, face detection, paste-back and encoding run in a thread pool around the model (which
sees batches of crops gathered across images) so the cores do not idle; outputs are written
atomically and never overwrite existing files unless asked.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.data.io import IMAGE_EXTENSIONS, write_bytes_atomic, write_image_atomic
from abanet.errors import AbanetError
from abanet.inference.profiling import StageTimer


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
    masked_faces: int = 0
    no_face: list[Path] = field(default_factory=list)  # inputs where no face was found
    profile: dict[str, Any] = field(default_factory=dict)  # StageTimer.report of the run

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
    workers: int | None = None,
) -> PredictSummary:
    """Segment every input and write ``OUT/<stem>.png`` (+ requested extras).

    Pipeline: a thread pool decodes images and finds faces a bounded window ahead of the model;
    the calling thread runs the model on batches of ``segmenter.batch_size`` crops gathered
    across images; the pool pastes results back and encodes the outputs. ``summary.profile``
    holds the busy seconds of each stage (:mod:`abanet.inference.profiling`).
    """
    from abanet.data.io import read_image
    from abanet.inference.segmenter import encode_mask

    started = time.perf_counter()
    timer = StageTimer()
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
    if not whole_image:
        _ = segmenter.detector  # build once, before the pool threads use it
    _ = segmenter.backend  # calibrate (auto) before timing the pipeline
    # most detectors hold one network and are not safe across threads; BlazeFace is (one
    # interpreter per thread), so photos are detected on every core at once
    thread_safe = getattr(segmenter.detector, "thread_safe", False) and not whole_image
    detect_lock: Any = contextlib.nullcontext() if thread_safe else threading.Lock()

    def load(job: PredictJob) -> Any:
        with timer.stage("decode"):
            image = read_image(job.path)
        with detect_lock, timer.stage("detect"):  # time the detector, not the wait for it
            return segmenter.plan(image, whole_image=whole_image)

    def finish(job: PredictJob, paths: dict[str, Path], plan: Any, probs: list) -> Any:
        result = segmenter.finish(plan, probs, timer)
        with timer.stage("encode"):
            for p in paths.values():
                p.parent.mkdir(parents=True, exist_ok=True)
            write_image_atomic(paths["mask"], encode_mask(result, soft), overwrite=True)
            binary = encode_mask(result, False)
            if "overlay" in paths:
                write_image_atomic(paths["overlay"], overlay(plan.image, binary), overwrite=True)
            if "cutout" in paths:
                write_image_atomic(paths["cutout"], cutout(plan.image, binary), overwrite=True)
            if "json" in paths:
                record = {"image": str(job.path), **result.to_json()}
                text = json.dumps(record, indent=1) + "\n"
                write_bytes_atomic(paths["json"], text.encode(), overwrite=True)
        return result

    def fail(job: PredictJob, message: str) -> None:
        report(message)
        summary.failed.append((job.path, message))

    workers = workers or max(2, min(4, os.cpu_count() or 2))
    window = max(2 * segmenter.batch_size, 2 * workers)  # images decoded ahead of the model
    with ThreadPoolExecutor(workers) as pool:
        loads: dict[int, Future] = {}
        pending: list[tuple[PredictJob, dict[str, Path], Any]] = []
        writes: list[tuple[PredictJob, dict[str, Path], Future]] = []

        def run_model() -> None:
            crops = [c for _, _, plan in pending for c in plan.crops]
            try:
                probs = segmenter.segment_crops(crops, timer) if crops else []
            except AbanetError as exc:
                for job, _, _ in pending:
                    fail(job, f"{job.path}: {exc}")
                pending.clear()
                return
            k = 0
            for job, paths, plan in pending:
                mine = probs[k : k + len(plan.crops)]
                k += len(plan.crops)
                writes.append((job, paths, pool.submit(finish, job, paths, plan, mine)))
            pending.clear()

        steps: Iterator[Any] = iter(range(len(todo)))
        if progress is not None:
            steps = progress(steps, len(todo))
        queued = 0
        for i in steps:
            while queued < min(len(todo), i + window):
                loads[queued] = pool.submit(load, todo[queued][0])
                queued += 1
            job, paths = todo[i]
            try:
                plan = loads.pop(i).result()
            except AbanetError as exc:
                fail(job, str(exc))
                continue
            pending.append((job, paths, plan))
            if sum(len(p.crops) for _, _, p in pending) >= segmenter.batch_size:
                run_model()
        run_model()
        for job, paths, fut in writes:
            try:
                result = fut.result()
                summary.faces += len(result.faces)
                summary.masked_faces += result.masked_faces
                if result.no_face:
                    summary.no_face.append(job.path)
                summary.written.append(paths["mask"])
            except (AbanetError, OSError) as exc:
                fail(job, f"{job.path}: cannot write output ({exc})")
    summary.profile = timer.report(len(summary.written), time.perf_counter() - started)
    return summary
