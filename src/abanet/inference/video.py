"""Video and webcam input for ``abanet predict``: mask (and overlay) videos or per-frame PNGs.

Decoding and encoding use PyAV (its wheels carry ffmpeg): every frame of the first video stream
is segmented and written, so the outputs have the input's frame count, frame rate and size
(H.264 in MP4; audio is dropped; rotation metadata is not applied).

Tracking (:class:`FrameSegmenter`): faces are detected on the first frame, then every
``detect_every`` frames; in between, the last detection's crop boxes are carried over unchanged
and only the model runs. A face that wore a mask when detected and whose mask score falls below
``MIN_MASK_SCORE`` in a carried crop counts as lost: that frame is detected and segmented again
at once. A frame without a face gets an empty mask.

Smoothing in time (hysteresis, no lag): on the first frame a pixel is in the mask when its
probability reaches the threshold ``t``, as for a photo; after that a pixel turns on at
``t + h`` and stays on down to ``t - h`` (``h`` = ``HYSTERESIS``). Confident changes show on the
frame they happen (nothing is averaged over past frames, so a moving mask never trails); only
pixels hovering around the threshold stop flickering.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from abanet.data.atomic import atomic_temp, publish, write_bytes_atomic
from abanet.data.io import encode_image
from abanet.errors import DataError, OutputExistsError
from abanet.faces.pipeline import PhotoPlan, PhotoResult, extract_crop
from abanet.inference.profiling import StageTimer

#: containers taken as video by ``abanet predict`` (anything PyAV/ffmpeg reads works by path)
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".avi",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".wmv",
    ".flv",
    ".3gp",
)
#: faces are detected again at least every this many frames
DETECT_EVERY = 5
#: half-width of the hysteresis band around the threshold (module docstring)
HYSTERESIS = 0.1


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in one of :data:`VIDEO_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class FrameSegmenter:
    """Segments the frames of one video in order: tracking and smoothing (module docstring)."""

    def __init__(
        self,
        segmenter: Any,
        detect_every: int = DETECT_EVERY,
        whole_image: bool = False,
        hysteresis: float = HYSTERESIS,
        timer: StageTimer | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.detect_every = max(1, int(detect_every))
        self.whole_image = whole_image or segmenter.detector is None
        self.hysteresis = float(hysteresis)
        self.timer = timer or StageTimer()
        self.detections = 0  # frames on which the face detector ran
        self._plan: PhotoPlan | None = None
        self._masked: list[bool] = []
        self._since = 0
        self._previous: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, PhotoResult]:
        """The smoothed 0/1 mask of the next frame (RGB uint8) and its ``PhotoResult``."""
        last = self._plan
        fresh = last is None or self._since >= self.detect_every or last.image.shape != frame.shape
        result = self._segment(self._detect(frame) if fresh else self._carry(frame, last))
        tracked = zip(self._masked, result.faces, strict=False)  # no faces when it has no face
        if not fresh and any(was and not f.masked for was, f in tracked):
            result = self._segment(self._detect(frame))  # a tracked mask was lost
        self._since += 1
        return self._smooth(result), result

    def _detect(self, frame: np.ndarray) -> PhotoPlan:
        with self.timer.stage("detect"):
            plan = self.segmenter.plan(frame, whole_image=self.whole_image)
        if not self.whole_image:
            self.detections += 1
        self._plan, self._since, self._masked = plan, 0, []
        return plan

    @staticmethod
    def _carry(frame: np.ndarray, last: PhotoPlan) -> PhotoPlan:
        if last.no_face:
            return PhotoPlan(frame, [], None, [], no_face=True)
        if last.boxes is None:
            return PhotoPlan(frame, last.faces, None, [frame])
        crops = [extract_crop(frame, b) for b in last.boxes]
        return PhotoPlan(frame, last.faces, last.boxes, crops)

    def _segment(self, plan: PhotoPlan) -> PhotoResult:
        result = self.segmenter.segment_plans([plan], self.timer)[0]
        if self._since == 0:
            self._masked = [f.masked for f in result.faces]
        return result

    def _smooth(self, result: PhotoResult) -> np.ndarray:
        prob, t, h = result.prob, result.threshold, self.hysteresis
        previous = self._previous
        if previous is None or previous.shape != prob.shape or h <= 0:
            mask = prob >= t
        else:
            mask = (prob >= min(1.0, t + h)) | ((prob >= max(0.0, t - h)) & previous)
        self._previous = mask
        return mask.astype(np.uint8)


class VideoWriter:
    """H.264 MP4 of RGB or grey frames, written to a temporary file and published on
    :meth:`close` (never replacing a file unless ``overwrite``)."""

    def __init__(
        self, target: Path, width: int, height: int, rate: Fraction, overwrite: bool = False
    ) -> None:
        import av

        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target}: file exists (pass --overwrite to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = atomic_temp(target, ".mp4")
        os.close(fd)
        self.target, self.overwrite = target, overwrite
        self._container = av.open(self._tmp, "w", format="mp4")
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        even = width % 2 == 0 and height % 2 == 0
        stream.pix_fmt = "yuv420p" if even else "yuv444p"  # 4:2:0 needs even sizes
        stream.options = {"crf": "18", "preset": "superfast"}  # x264 at 1/2 the CPU of veryfast
        self._stream = stream

    def write(self, array: np.ndarray) -> None:
        import av

        fmt = "gray" if array.ndim == 2 else "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=fmt)
        self._container.mux(self._stream.encode(frame))

    def close(self) -> Path:
        """Flush the encoder and publish the file."""
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            with open(self._tmp, "rb+") as fh:  # on disk before it gets its name
                os.fsync(fh.fileno())
            return publish(self._tmp, self.target, self.overwrite)
        finally:
            Path(self._tmp).unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop the unfinished file."""
        try:
            self._container.close()
        finally:
            Path(self._tmp).unlink(missing_ok=True)


@dataclass
class VideoSummary:
    """What :func:`segment_stream` did."""

    frames: int = 0
    detections: int = 0  # frames on which the face detector ran
    masked_frames: int = 0  # frames with a non-empty mask
    seconds: float = 0.0
    written: list[Path] = field(default_factory=list)
    interrupted: bool = False
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


@dataclass
class VideoSource:
    """Frames (RGB uint8) and what the outputs need to match: size and frame rate."""

    name: str
    frames: Iterator[np.ndarray]
    width: int
    height: int
    rate: Fraction
    total: int = 0  # frame count from the container (0: unknown)
    close: Callable[[], None] = lambda: None


def open_video(path: str | os.PathLike[str]) -> VideoSource:
    """Decode the first video stream of a file PyAV/ffmpeg reads (DataError naming the file)."""
    import av

    name = str(path)
    try:
        container = av.open(name)
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{name}: cannot read video ({_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"{name}: cannot read video (no video stream)")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise DataError(f"{name}: cannot read video ({_reason(exc)})") from exc

    return VideoSource(
        name, frames(), stream.width, stream.height, Fraction(rate), stream.frames, container.close
    )


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text[0].lower() + text[1:] if text else type(exc).__name__


def open_camera(index: int) -> VideoSource:
    """Frames of webcam ``index`` (OpenCV's capture: V4L2, AVFoundation, DirectShow...)."""
    import cv2

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise DataError(f"camera {index}: cannot open it")
    ok, first = cap.read()
    if not ok:
        cap.release()
        raise DataError(f"camera {index}: gives no frames")
    fps = cap.get(cv2.CAP_PROP_FPS)
    rate = Fraction(fps).limit_denominator(1001) if 1 <= fps <= 240 else Fraction(30)

    def frames() -> Iterator[np.ndarray]:
        frame: np.ndarray | None = first
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = cap.read()
            frame = frame if ok else None

    h, w = first.shape[:2]
    return VideoSource(f"camera {index}", frames(), w, h, rate, 0, cap.release)


def video_outputs(out_dir: Path, stem: Path, overlay: bool, frames: bool) -> dict[str, Path]:
    """Where a video's outputs go: ``OUT/<stem>.mp4`` (mask) and ``OUT/<stem>_overlay.mp4``, or
    with ``frames`` the folder ``OUT/<stem>/`` of ``NNNNNN.png`` (and ``NNNNNN_overlay.jpg``)."""
    base = out_dir / stem
    if frames:
        return {"frames": base}
    paths = {"mask": base.parent / f"{base.name}.mp4"}
    if overlay:
        paths["overlay"] = base.parent / f"{base.name}_overlay.mp4"
    return paths


def segment_stream(
    segmenter: Any,
    source: VideoSource,
    paths: dict[str, Path],
    *,
    overlay: bool = False,
    overwrite: bool = False,
    detect_every: int = DETECT_EVERY,
    whole_image: bool = False,
    show: Callable[[np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VideoSummary:
    """Segment every frame of ``source`` and write the outputs of :func:`video_outputs`.

    Encoding runs in a second thread (frames pass through a short queue), so the model and the
    encoder share the cores. ``show`` gets each overlay frame (a live window). Ctrl-C stops
    cleanly: the frames done so far are written as complete files and ``interrupted`` is set.
    """
    from abanet.inference.predict import overlay as tint

    summary = VideoSummary()
    timer = StageTimer()
    tracker = FrameSegmenter(segmenter, detect_every, whole_image, timer=timer)
    writers: dict[str, VideoWriter] = {}
    started = time.perf_counter()
    try:
        for kind in ("mask", "overlay"):
            if kind in paths:
                w, h, rate = source.width, source.height, source.rate
                writers[kind] = VideoWriter(paths[kind], w, h, rate, overwrite)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        source.close()
        raise
    todo: queue.Queue = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def encode() -> None:
        while (item := todo.get()) is not None:
            if failure:
                continue
            try:
                with timer.stage("encode"):
                    write_frame(*item)
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

    def write_frame(i: int, mask: np.ndarray, tinted: np.ndarray | None) -> None:
        if "frames" in paths:
            folder = paths["frames"]
            files = [(folder / f"{i:06d}.png", encode_image(mask * 255, ".png"))]
            if tinted is not None:
                files.append((folder / f"{i:06d}_overlay.jpg", encode_image(tinted, ".jpg")))
            for path, data in files:
                with contextlib.suppress(OutputExistsError):  # an earlier run's frame is kept
                    summary.written.append(write_bytes_atomic(path, data, overwrite))
            return
        if "mask" in writers:
            writers["mask"].write(mask * 255)
        if tinted is not None and "overlay" in writers:
            writers["overlay"].write(tinted)

    encoder = threading.Thread(target=encode, name="abanet-video-encode", daemon=True)
    encoder.start()
    try:
        for i, frame in enumerate(timed(source.frames, timer)):
            mask, result = tracker(frame)
            tinted = None
            if overlay or show is not None:
                with timer.stage("overlay"):
                    tinted = tint(frame, mask)
            if show is not None:
                show(tinted)
            todo.put((i, mask, tinted if overlay else None))
            summary.frames += 1
            summary.masked_frames += bool(mask.any())
            if failure:
                raise failure[0]
            if progress is not None:
                progress(summary.frames)
    except KeyboardInterrupt:
        summary.interrupted = True
    except BaseException:
        todo.put(None)
        encoder.join()
        for writer in writers.values():
            writer.abort()
        source.close()
        raise
    todo.put(None)
    encoder.join()
    source.close()
    if failure:
        for writer in writers.values():
            writer.abort()
        raise failure[0]
    for writer in writers.values():
        summary.written.append(writer.close())
    summary.seconds = time.perf_counter() - started
    summary.detections = tracker.detections
    summary.profile = timer.report(summary.frames, summary.seconds)
    return summary


def timed(frames: Iterator[np.ndarray], timer: StageTimer) -> Iterator[np.ndarray]:
    """``frames`` with the time spent producing each counted as the ``decode`` stage."""
    while True:
        with timer.stage("decode"):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def live_window(title: str) -> Callable[[np.ndarray], None] | None:
    """A window showing RGB frames (``q`` stops like Ctrl-C), or None when OpenCV has no GUI
    (``opencv-python-headless``, a server without a display)."""
    import cv2

    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error:
        return None

    def show(rgb: np.ndarray) -> None:
        cv2.imshow(title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF == ord("q"):
            raise KeyboardInterrupt

    return show


def predict_videos(
    segmenter: Any,
    videos: list[Path],
    out_dir: Path,
    *,
    overlay: bool = False,
    frames: bool = False,
    overwrite: bool = False,
    detect_every: int = DETECT_EVERY,
    whole_image: bool = False,
    report: Callable[[str], None] = print,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> list[tuple[Path, VideoSummary | None, str | None]]:
    """Segment each video file into ``out_dir`` (:func:`video_outputs`); returns per video its
    summary (None when skipped or failed) and the failure message. Existing outputs are kept
    unless ``overwrite`` (a video whose outputs all exist is skipped); Ctrl-C stops after the
    current video's frames so far are written."""
    import av

    done: list[tuple[Path, VideoSummary | None, str | None]] = []
    for path in videos:
        wanted = video_outputs(out_dir, Path(path.stem), overlay, frames)
        todo = {k: p for k, p in wanted.items() if overwrite or k == "frames" or not p.exists()}
        if not todo:
            report(f"{next(iter(wanted.values()))}: exists, skipped (use --overwrite to replace)")
            done.append((path, None, None))
            continue
        try:
            source = open_video(path)
            tick = progress(str(path), source.total) if progress is not None else None
            summary = segment_stream(
                segmenter,
                source,
                todo,
                overlay=overlay and (frames or "overlay" in todo),
                overwrite=overwrite,
                detect_every=detect_every,
                whole_image=whole_image,
                progress=tick,
            )
        except (DataError, OutputExistsError, OSError, av.FFmpegError) as exc:
            report(str(exc) if isinstance(exc, DataError) else f"{path}: {exc}")
            done.append((path, None, str(exc)))
            continue
        done.append((path, summary, None))
        if summary.interrupted:
            break
    return done
