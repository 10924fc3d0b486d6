"""``abanet predict`` as a library function: gather inputs, run a Segmenter, write outputs.

Decoding, face detection, paste-back and encoding run in a thread pool around the model (which
sees batches of crops gathered across images) so the cores do not idle; outputs are written
atomically and never overwrite existing files unless asked (checked per file when it is
written). The kinds of output file are the :data:`OUTPUT_WRITERS` registry, which the HTTP service
uses too.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from abanet.data.atomic import write_bytes_atomic
from abanet.data.io import IMAGE_EXTENSIONS, encode_image
from abanet.errors import AbanetError, DataError, OutputExistsError
from abanet.faces.pipeline import PhotoResult
from abanet.inference.profiling import StageTimer

#: an input: a local path, or a URI (``s3://...``, ``gs://...``, ``https://...``) read by fsspec
Source = Path | str


@dataclass
class PredictJob:
    """One input file and the stem (relative, without extension) its outputs are named after."""

    path: Source
    stem: Path


@dataclass
class InputResult:
    """What became of one input: ``ok`` (outputs written), ``skipped`` (they all existed, or
    appeared meanwhile) or ``error`` (``message`` says why). ``output``: the first output written
    (ok) or kept (skipped); ``mask``: the mask file's path. A row of the results manifest."""

    path: str
    stem: str
    status: str
    message: str = ""
    output: str = ""
    mask: str = ""
    faces: int = 0
    masked_faces: int = 0
    no_face: bool = False


@dataclass
class PredictSummary:
    """What ``predict_files`` did: counts and per-file failures (built by :meth:`add`)."""

    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    faces: int = 0
    masked_faces: int = 0
    no_face: list[Path] = field(default_factory=list)  # inputs where no face was found
    masks: list[tuple[Path, Path]] = field(default_factory=list)  # (input, its mask file) pairs
    profile: dict[str, Any] = field(default_factory=dict)  # StageTimer.report of the run
    interrupted: bool = False  # stopped by Ctrl-C; the counts say what was done before

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, result: InputResult) -> None:
        """Count one input's result."""
        if result.status == "error":
            self.failed.append((as_source(result.path), result.message))
            return
        self.faces += result.faces
        self.masked_faces += result.masked_faces
        if result.no_face:
            self.no_face.append(as_source(result.path))
        self.masks.append((as_source(result.path), Path(result.mask)))
        (self.written if result.status == "ok" else self.skipped_existing).append(
            Path(result.output)
        )


def is_uri(text: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (read through fsspec), false for a local path."""
    return "://" in str(text)


def as_source(text: str | os.PathLike[str]) -> Source:
    """A URI stays text (``Path`` would fold its ``//``); a local path becomes a ``Path``."""
    return str(text) if is_uri(text) else Path(text)


def read_source(source: Source) -> np.ndarray:
    """An input image as RGB uint8: a local file, or a URI any fsspec file system reads."""
    from abanet.data.io import read_image, read_image_bytes
    from abanet.errors import ImageReadError

    if not is_uri(source):
        return read_image(source)
    import fsspec

    try:
        with fsspec.open(str(source), "rb") as fh:
            data = fh.read()
    except (OSError, ValueError, ImportError) as exc:
        reason = "file not found" if isinstance(exc, FileNotFoundError) else exc
        raise ImageReadError(f"{source}: cannot read image ({reason})") from exc
    return read_image_bytes(data, str(source))


def read_manifest(path: str | os.PathLike[str]) -> list[str]:
    """The inputs a manifest lists: a Parquet file's ``path`` column, or a text file's lines
    (blank lines and ``#`` comments ignored). Local or a URI (fsspec); entries are paths or URIs.
    """
    import fsspec

    name = str(path)
    try:
        with fsspec.open(name, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError, ImportError) as exc:
        reason = "file not found" if isinstance(exc, FileNotFoundError) else exc
        raise DataError(f"{name}: cannot read manifest ({reason})") from exc
    if name.lower().endswith((".parquet", ".pq")):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{name}: reading a Parquet manifest needs pyarrow (pip install 'abanet[ray]')"
            ) from None
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name}: cannot read manifest (not a Parquet file: {exc})") from exc
        if "path" not in table.column_names:
            cols = ", ".join(table.column_names) or "none"
            raise DataError(f"{name}: a Parquet manifest needs a 'path' column (it has {cols})")
        return [str(p) for p in table.column("path").to_pylist() if p]
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise DataError(f"{name}: cannot read manifest (not UTF-8 text or Parquet)") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def gather_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    exclude: str | os.PathLike[str] | None = None,
    manifest: Iterable[str] = (),
) -> tuple[list[PredictJob], list[str]]:
    """Expand files, folders (recursive) and globs into jobs, then add the ``manifest``
    entries (files or URIs, taken as named: one that cannot be read fails when it is read);
    returns (jobs, problems).

    Folders and globs never yield files under ``exclude`` (the output folder: a run's outputs
    are not the next run's inputs); a file named explicitly is always taken.
    """
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None

    def is_input(p: Path) -> bool:
        return (
            p.is_file()
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and (skip is None or not p.resolve().is_relative_to(skip))
        )

    jobs: list[PredictJob] = []
    problems: list[str] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if is_input(p))
            if not files:
                problems.append(f"{path}: folder holds no images")
            jobs += [PredictJob(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            jobs.append(PredictJob(path, Path(path.stem)))
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if is_input(m)]
            if not files:
                problems.append(f"{text}: pattern matches no images")
            jobs += [PredictJob(m, Path(m.stem)) for m in files]
        else:
            problems.append(f"{path}: no such file or folder")
    for entry in manifest:
        source = as_source(entry)
        jobs.append(PredictJob(source, Path(Path(entry).stem)))
    seen: dict[Path, Source] = {}
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


@dataclass(frozen=True)
class OutputWriter:
    """One kind of output file: its name (the CLI flag), the file name after the stem, and how
    it is encoded from the image, the result, the input's name and the ``soft`` option.
    ``relative_name``: the name is given relative to the output file's folder (LabelMe's
    ``imagePath``)."""

    name: str
    suffix: str
    encode: Callable[[np.ndarray, PhotoResult, str, bool], bytes]
    relative_name: bool = False


def json_record(name: str, result: PhotoResult) -> dict[str, Any]:
    """The JSON document of one segmented image (``--json`` and the service's /predict/json)."""
    return {"image": name, **result.to_json()}


def _binary(result: PhotoResult) -> np.ndarray:
    from abanet.inference.segmenter import encode_mask

    return encode_mask(result, False)


def _mask_png(image: np.ndarray, result: PhotoResult, name: str, soft: bool) -> bytes:
    from abanet.inference.segmenter import encode_mask

    return encode_image(encode_mask(result, soft), ".png")


def _overlay_jpg(image: np.ndarray, result: PhotoResult, name: str, soft: bool) -> bytes:
    return encode_image(overlay(image, _binary(result)), ".jpg")


def _cutout_png(image: np.ndarray, result: PhotoResult, name: str, soft: bool) -> bytes:
    return encode_image(cutout(image, _binary(result)), ".png")


def _json_bytes(image: np.ndarray, result: PhotoResult, name: str, soft: bool) -> bytes:
    return (json.dumps(json_record(name, result), indent=1) + "\n").encode()


def _labelme_json(image: np.ndarray, result: PhotoResult, name: str, soft: bool) -> bytes:
    from abanet.data.labelme_export import labelme_bytes

    return labelme_bytes(result.mask, name)


#: every kind of output ``predict_files`` can write; ``mask`` is always written
OUTPUT_WRITERS: dict[str, OutputWriter] = {
    w.name: w
    for w in (
        OutputWriter("mask", ".png", _mask_png),
        OutputWriter("overlay", "_overlay.jpg", _overlay_jpg),
        OutputWriter("cutout", "_cutout.png", _cutout_png),
        OutputWriter("json", ".json", _json_bytes),
        OutputWriter("labelme", ".json", _labelme_json, relative_name=True),
    )
}


def output_paths(out_dir: Path, stem: Path, kinds: Iterable[str]) -> dict[str, Path]:
    """Paths the mask and each requested output kind are written to."""
    base = out_dir / stem
    wanted = ["mask", *(k for k in kinds if k != "mask")]
    for kind in wanted:
        if kind not in OUTPUT_WRITERS:
            known = ", ".join(OUTPUT_WRITERS)
            raise AbanetError(f"unknown output kind {kind!r}; choose from {known}")
    paths = {k: base.parent / f"{base.name}{OUTPUT_WRITERS[k].suffix}" for k in wanted}
    if len(set(paths.values())) < len(paths):
        clash = [k for k in wanted if list(paths.values()).count(paths[k]) > 1]
        raise AbanetError(
            f"{' and '.join(clash)} outputs would both be written to {base.name}"
            f"{OUTPUT_WRITERS[clash[0]].suffix}; choose one"
        )
    return paths


def overlay(image: np.ndarray, mask: np.ndarray, color=(0, 200, 255), alpha=0.45) -> np.ndarray:
    """The image with the mask region tinted and its outline drawn."""
    import cv2

    sel = (mask > 0).astype(np.uint8)
    out = image.copy()
    x, y, w, h = cv2.boundingRect(sel)  # only the mask's box is blended (video frames are many)
    if w and h:
        roi, inside = out[y : y + h, x : x + w], sel[y : y + h, x : x + w] > 0
        tint = np.empty_like(roi)
        tint[:] = color
        np.copyto(roi, cv2.addWeighted(roi, 1 - alpha, tint, alpha, 0), where=inside[..., None])
    contours, _ = cv2.findContours(sel, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
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
    manifest: Iterable[str] = (),
    report: Callable[[str], None] = print,
    **options: Any,
) -> PredictSummary:
    """Segment every input (files, folders, globs and the ``manifest`` entries, see
    :func:`gather_inputs`) and write its outputs: :func:`predict_jobs` with these ``options``.
    Inputs that cannot be gathered (a missing file, an empty folder) are reported and failed."""
    out = Path(out_dir)
    on_result = options.pop("on_result", None)
    jobs, summary = gather_jobs(inputs, out, manifest, report, on_result)
    return predict_jobs(
        segmenter, jobs, out, report=report, summary=summary, on_result=on_result, **options
    )


def gather_jobs(
    inputs: Iterable[str | os.PathLike[str]],
    out: Path,
    manifest: Iterable[str],
    report: Callable[[str], None],
    on_result: Callable[[InputResult], None] | None,
) -> tuple[list[PredictJob], PredictSummary]:
    """:func:`gather_inputs` for a run into ``out``: the jobs, and a summary where each problem
    is reported and counted (and passed to ``on_result``) as an error result."""
    jobs, problems = gather_inputs(inputs, exclude=out, manifest=manifest)
    summary = PredictSummary()
    for problem in problems:
        result = InputResult(problem.split(": ", 1)[0], "", "error", message=problem)
        take_result(summary, result, report, on_result)
    return jobs, summary


def take_result(
    summary: PredictSummary,
    result: InputResult,
    report: Callable[[str], None],
    on_result: Callable[[InputResult], None] | None,
) -> None:
    """Count one input's result, pass it to ``on_result`` and report an error or a skip."""
    summary.add(result)
    if on_result is not None:
        on_result(result)
    line = result_line(result)
    if line is not None:
        report(line)


def result_line(result: InputResult) -> str | None:
    """What to tell the user about one input's result: the error, or the kept output."""
    if result.status == "error":
        return result.message
    if result.status == "skipped":
        return f"{result.output}: exists, skipped (use --overwrite to replace)"
    return None


class ResultsManifest:
    """The results manifest: one JSON line per input (an :class:`InputResult`: path, stem,
    status ok/skipped/error, message, outputs, face counts). Written to a temporary file beside
    ``path`` and published when closed, also after Ctrl-C; it replaces the previous run's."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from abanet.data.atomic import atomic_temp

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = atomic_temp(self.path)
        self.file = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, result: InputResult) -> None:
        self.file.write(json.dumps(dataclasses.asdict(result)) + "\n")

    def __enter__(self) -> ResultsManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        from abanet.data.atomic import publish

        self.file.close()
        try:
            publish(self.tmp, self.path, overwrite=True)
        finally:
            Path(self.tmp).unlink(missing_ok=True)


def predict_jobs(
    segmenter: Any,
    jobs: Iterable[PredictJob],
    out_dir: str | os.PathLike[str],
    *,
    soft: bool = False,
    extras: Iterable[str] = (),
    whole_image: bool = False,
    overwrite: bool = False,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
    report: Callable[[str], None] = print,
    workers: int | None = None,
    summary: PredictSummary | None = None,
    on_result: Callable[[InputResult], None] | None = None,
) -> PredictSummary:
    """Segment each job's image and write ``OUT/<stem>.png`` plus the ``extras`` kinds of
    :data:`OUTPUT_WRITERS` (``overlay``, ``cutout``, ``json``, ``labelme``); each input's
    :class:`InputResult` is counted in the summary (``summary``, or a new one) and passed to
    ``on_result``.

    Without ``overwrite`` an input whose outputs all exist is skipped, and one with only some
    (say ``--overlay`` added on a rerun) gets the missing ones; a file that appears meanwhile
    (another run) is kept.

    Pipeline: a thread pool decodes images and finds faces a bounded window ahead of the model;
    the calling thread runs the model on batches of ``segmenter.batch_size`` crops gathered
    across images (:class:`~abanet.faces.pipeline.CropBatcher`: the second, larger crops of masks
    that reach their crop's edge share the batches of the next images' crops); the pool pastes
    results back and encodes the outputs. ``summary.profile`` holds the busy seconds of each
    stage (:mod:`abanet.inference.profiling`). Ctrl-C stops the run cleanly:
    ``summary.interrupted`` is set and the summary counts what was written.
    """
    started = time.perf_counter()
    timer = StageTimer()
    out = Path(out_dir)
    kinds = list(extras)
    summary = PredictSummary() if summary is None else summary

    def done(job: PredictJob, status: str, **fields: Any) -> None:
        mask = "" if status == "error" else str(output_paths(out, job.stem, ())["mask"])
        result = InputResult(str(job.path), job.stem.as_posix(), status, mask=mask, **fields)
        take_result(summary, result, report, on_result)

    def skipped(job: PredictJob, kept: Path, **fields: Any) -> None:
        done(job, "skipped", output=str(kept), **fields)

    todo = []
    for job in jobs:
        paths = output_paths(out, job.stem, kinds)
        missing = {k: p for k, p in paths.items() if overwrite or not p.exists()}
        if not missing:
            skipped(job, paths["mask"])
            continue
        todo.append((job, missing))
    if not todo:
        return summary
    if not whole_image:
        _ = segmenter.detector  # build once, before the pool threads use it
    _ = segmenter.backend  # calibrate (auto) before timing the pipeline
    # most detectors hold one network and are not safe across threads; BlazeFace is (one
    # interpreter per thread), so photos are detected on every core at once
    thread_safe = getattr(segmenter.detector, "thread_safe", False) and not whole_image
    detect_lock: Any = contextlib.nullcontext() if thread_safe else threading.Lock()

    def load(job: PredictJob) -> Any:
        with timer.stage("decode"):
            image = read_source(job.path)
        with detect_lock, timer.stage("detect"):  # time the detector, not the wait for it
            return segmenter.plan(image, whole_image=whole_image)

    def finish(job: PredictJob, paths: dict[str, Path], done: Any) -> tuple:
        result = segmenter.finish(done, timer)
        with timer.stage("encode"):
            written = write_outputs(paths, done.plan.image, result, str(job.path), soft, overwrite)
        return result, written, [p for p in paths.values() if p not in written]

    def fail(job: PredictJob, message: str) -> None:
        done(job, "error", message=message)

    workers = workers or max(2, min(4, os.cpu_count() or 2))
    window = max(2 * segmenter.batch_size, 2 * workers)  # images decoded ahead of the model
    pool = ThreadPoolExecutor(workers)
    loads: dict[int, Future] = {}
    batcher = segmenter.batcher(timer)
    writes: list[tuple[PredictJob, Future]] = []

    def run_model() -> None:
        for done in batcher.run():
            job, paths = done.key
            if done.error is not None:
                fail(job, f"{job.path}: {done.error}")
            else:
                writes.append((job, pool.submit(finish, job, paths, done)))

    def collect(wait: bool) -> None:
        while writes and (wait or writes[0][1].done()):
            job, fut = writes.pop(0)
            try:
                result, written, kept = fut.result()
            except (AbanetError, OSError) as exc:
                fail(job, f"{job.path}: cannot write output ({exc})")
                continue
            counts = {"faces": len(result.faces), "masked_faces": result.masked_faces}
            counts["no_face"] = bool(result.no_face)
            if written:
                done(job, "ok", output=str(written[0]), **counts)
            else:
                skipped(job, kept[0], **counts)

    try:
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
            batcher.add((job, paths), plan)
            if batcher.queued >= segmenter.batch_size:
                run_model()
            collect(wait=False)
        while batcher.pending:
            run_model()
        collect(wait=True)
    except KeyboardInterrupt:
        summary.interrupted = True
        for fut in loads.values():
            fut.cancel()
        collect(wait=True)  # outputs already being encoded are finished, not left half-done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    summary.profile = timer.report(len(summary.written), time.perf_counter() - started)
    return summary


def write_outputs(
    paths: dict[str, Path],
    image: np.ndarray,
    result: PhotoResult,
    name: str,
    soft: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Encode and write each output kind of ``paths``; returns the paths written (each file is
    created exclusively unless ``overwrite``: one that appeared meanwhile is kept)."""
    written = []
    for kind, path in paths.items():
        writer = OUTPUT_WRITERS[kind]
        own = os.path.relpath(Path(name).resolve(), path.parent.resolve())
        data = writer.encode(image, result, own if writer.relative_name else name, soft)
        try:
            written.append(write_bytes_atomic(path, data, overwrite=overwrite))
        except OutputExistsError:
            continue
    return written
