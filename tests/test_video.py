"""Video, webcam and stdin prediction: generated few-frame clips, a stand-in model and detector."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.faces.pipeline import PhotoResult
from abanet.faces.types import FaceDetector
from abanet.inference.segmenter import Segmenter
from abanet.inference.video import FrameSegmenter, open_video, segment_stream, video_outputs
from tests.fixtures import BoxDetector, DarkIsBareModel, LowerHalfModel, tiny_saved_model

runner = CliRunner()
W, H, FPS = 96, 72, Fraction(10)
FACE = (30.0, 16.0, 60.0, 46.0)  # the stand-in detector's face box (x1, y1, x2, y2)


class CountingDetector(BoxDetector):
    """Finds one face at ``FACE`` on every view; counts the frames it looked at."""

    def __init__(self) -> None:
        super().__init__(FACE)


def make_clip(path: Path, n: int = 12, dark: set[int] = frozenset()) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = rng.integers(90, 170, (H, W, 3), dtype=np.uint8)
        if i in dark:
            frame[:] = 5
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode(None))
    container.close()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(tiny_saved_model(tmp_path_factory.mktemp("model") / "tiny"))


def segmenter(model=None, detector: FaceDetector | None = None) -> Segmenter:
    seg = Segmenter(model or LowerHalfModel(), device="cpu", backend="eager", detector=None)
    if detector is not None:
        seg.detector_name, seg._detector = detector.name, detector
    return seg


def decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="gray") for f in container.decode(stream)], stream.average_rate


def test_video_round_trip_masks_on_the_face(tmp_path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    detector = CountingDetector()
    paths = video_outputs(tmp_path / "out", Path("clip"), overlay=True, frames=False)
    summary = segment_stream(
        segmenter(detector=detector), open_video(clip), paths, overlay=True, detect_every=5
    )
    assert summary.frames == 12 and summary.masked_frames == 12
    assert detector.calls == summary.detections == 3  # frames 0, 5 and 10; tracked between
    masks, rate = decode(tmp_path / "out" / "clip.mp4")
    overlays, overlay_rate = decode(tmp_path / "out" / "clip_overlay.mp4")
    assert len(masks) == len(overlays) == 12 and rate == overlay_rate == FPS
    assert masks[0].shape == overlays[0].shape == (H, W)
    frames = list(open_video(clip).frames)
    photo = segmenter(detector=CountingDetector())
    for frame, mask in zip(frames, masks, strict=True):
        expected = photo.segment(frame).mask > 0  # the photo pipeline on this frame
        on = mask > 127
        assert expected[36:44, 34:56].all() and not expected[:15].any()  # on the face, below
        assert (on & expected).sum() / (on | expected).sum() >= 0.98  # the codec is lossy


def test_frames_mode_and_cli(tmp_path, model) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=4)
    args = ["predict", str(clip), "-o", str(tmp_path / "out"), "--model", model, "--backend"]
    res = runner.invoke(app, [*args, "eager", "--whole-image", "--frames", "--overlay", "-q"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "out" / "clip").iterdir())
    assert names[:2] == ["000000.png", "000000_overlay.jpg"] and len(names) == 8
    assert Image.open(tmp_path / "out" / "clip" / "000003.png").size == (W, H)
    res = runner.invoke(app, [*args, "eager", "--whole-image", "-q"])
    assert res.exit_code == 0 and len(decode(tmp_path / "out" / "clip.mp4")[0]) == 4
    again = runner.invoke(app, [*args, "eager", "--whole-image", "-q"])
    assert again.exit_code == 0 and "exists, skipped" in again.output
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    bad = runner.invoke(app, [*args[:1], str(tmp_path / "bad.mp4"), *args[2:], "eager", "-q"])
    assert bad.exit_code == 1 and "bad.mp4: cannot read video" in bad.output


def test_lost_mask_is_detected_again_at_once(tmp_path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=6, dark={2})
    detector = CountingDetector()
    tracker = FrameSegmenter(segmenter(DarkIsBareModel(), detector), detect_every=10)
    masks = [tracker(frame)[0] for frame in open_video(clip).frames]
    assert detector.calls == 2  # frame 0, and frame 2 at once (the tracked mask was lost)
    assert [bool(m.any()) for m in masks] == [True, True, False, True, True, True]


def test_hysteresis_smooths_without_lag() -> None:
    tracker = FrameSegmenter(segmenter(), hysteresis=0.1)

    def step(values: list[float]) -> list[int]:
        prob = np.asarray([values], np.float32)
        mask = (prob >= 0.5).astype(np.uint8)
        return tracker._smooth(PhotoResult(prob, mask, [], 0.5, True)).ravel().tolist()

    assert step([0.55, 0.45, 0.9, 0.1]) == [1, 0, 1, 0]  # first frame: the threshold
    assert step([0.45, 0.55, 0.9, 0.1]) == [1, 0, 1, 0]  # near it: the last frame's state
    assert step([0.1, 0.9, 0.9, 0.9]) == [0, 1, 1, 1]  # confident changes show at once


def test_camera_ends_cleanly_on_ctrl_c(tmp_path, monkeypatch, model) -> None:
    import cv2

    class FakeCapture:
        def __init__(self, index: int) -> None:
            self.reads = 0

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return True

        def read(self):
            self.reads += 1
            if self.reads > 5:
                raise KeyboardInterrupt
            return True, np.full((H, W, 3), 120, np.uint8)

        def get(self, prop: int) -> float:
            return 15.0

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    out = tmp_path / "out"
    args = ["predict", "--camera", "0", "-o", str(out), "--model", model, "--backend", "eager"]
    res = runner.invoke(app, [*args, "--whole-image", "--overlay", "-q"])
    assert res.exit_code == 0, res.output
    masks, rate = decode(out / "camera0.mp4")
    assert len(masks) == 5 and rate == 15 and len(decode(out / "camera0_overlay.mp4")[0]) == 5


def test_stdin_to_stdout(tmp_path, model) -> None:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(buf, format="PNG")
    args = ["predict", "-", "--model", model, "--backend", "eager", "--whole-image"]
    res = runner.invoke(app, args, input=buf.getvalue())
    assert res.exit_code == 0, res.stderr
    mask = Image.open(io.BytesIO(res.stdout_bytes))
    assert mask.size == (40, 30) and mask.mode == "L"
    bad = runner.invoke(app, args, input=b"garbage")
    assert bad.exit_code == 2 and "<stdin>: cannot read image" in bad.stderr
    mixed = runner.invoke(app, [*args, "--overlay"], input=buf.getvalue())
    assert mixed.exit_code == 2 and "stdin" in mixed.stderr


@pytest.mark.parametrize("size", [(63, 47)])
def test_odd_sizes_are_kept(tmp_path, size) -> None:
    from abanet.inference.video import VideoWriter

    writer = VideoWriter(tmp_path / "odd.mp4", *size, FPS)
    for _ in range(3):
        writer.write(np.zeros(size[::-1], np.uint8))
    writer.close()
    frames, _ = decode(tmp_path / "odd.mp4")
    assert len(frames) == 3 and frames[0].shape == size[::-1]
