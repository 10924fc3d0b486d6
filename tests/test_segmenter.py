"""The Python API: Segmenter input kinds, output types and values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from abanet.errors import AbanetError
from abanet.faces.types import Face, FaceDetector
from abanet.inference.backends import resolve_device
from abanet.inference.segmenter import Segmenter, to_rgb_array
from tests.fixtures import LowerHalfModel, write_rgb


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(LowerHalfModel(), device="cpu", backend="eager", detector=None)


def expected_lower_half(h: int, w: int) -> np.ndarray:
    rows = (np.arange(h) + 0.5) / h >= 0.5
    return np.repeat(rows[:, None], w, axis=1)


def test_numpy_in_numpy_out_at_input_size(segmenter: Segmenter) -> None:
    image = np.zeros((50, 30, 3), np.uint8)
    mask = segmenter.predict(image)
    assert isinstance(mask, np.ndarray) and mask.shape == (50, 30) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    agree = (mask > 0) == expected_lower_half(50, 30)
    assert agree.mean() >= 0.95  # bilinear resize blurs one row at the boundary


def test_pil_in_pil_out(segmenter: Segmenter) -> None:
    out = segmenter.predict(Image.new("RGB", (40, 20)))
    assert isinstance(out, Image.Image) and out.mode == "L" and out.size == (40, 20)


def test_soft_gives_probabilities(segmenter: Segmenter) -> None:
    soft = segmenter.predict(np.zeros((64, 64, 3), np.uint8), soft=True)
    assert soft[0, 0] <= 1 and soft[-1, 0] >= 254  # sigmoid(-8)*255 ~ 0, sigmoid(8)*255 ~ 255


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_file_modes(segmenter: Segmenter, tmp_path, mode: str) -> None:
    path = tmp_path / ("img.jpg" if mode == "CMYK" else "img.png")
    Image.new("RGB", (36, 24), (120, 30, 200)).convert(mode).save(path)
    mask = segmenter.predict(path)
    assert mask.shape == (24, 36)


def test_exif_orientation_is_honoured(segmenter: Segmenter, tmp_path) -> None:
    image = Image.new("RGB", (60, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert segmenter.predict(path).shape == (60, 20)


def test_float_and_gray_arrays() -> None:
    assert to_rgb_array(np.ones((5, 4), np.float32)).shape == (5, 4, 3)
    assert to_rgb_array(np.ones((5, 4), np.float32))[0, 0, 0] == 255
    with pytest.raises(AbanetError, match="image array"):
        to_rgb_array(np.zeros((2, 3, 5), np.uint8))


def test_predict_batch_matches_predict(segmenter: Segmenter) -> None:
    images = [np.full((32 + 8 * i, 40, 3), 10 * i, np.uint8) for i in range(3)]
    batch = segmenter.predict_batch(images)
    for image, mask in zip(images, batch, strict=True):
        assert np.array_equal(mask, segmenter.predict(image))


def test_unreadable_bytes_name_the_file(segmenter: Segmenter, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(AbanetError, match="broken.jpg"):
        segmenter.predict(bad)


def test_cuda_request_without_cuda_fails_loudly() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AbanetError, match="CUDA is not available"):
        resolve_device("cuda")


def test_png_roundtrip_of_mask(segmenter: Segmenter) -> None:
    out = segmenter.predict(Image.new("RGB", (32, 32)))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    assert np.array_equal(np.asarray(Image.open(buf)), np.asarray(out))


class CountingBackend:
    """Wraps a backend and records the batch size of every forward pass."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, []
        self.name = "counting"

    def run(self, batch):
        self.batches.append(int(batch.shape[0]))
        return self.inner.run(batch)


def counting_segmenter(batch_size: int, detector=None) -> Segmenter:
    seg = Segmenter(
        LowerHalfModel(), device="cpu", backend="eager", detector=detector, batch_size=batch_size
    )
    seg._backend = CountingBackend(seg.backend)
    return seg


def test_predict_files_batches_crops_across_images(tmp_path) -> None:
    from abanet.inference.predict import predict_files

    (tmp_path / "in").mkdir()
    for i in range(5):
        write_rgb(tmp_path / "in" / f"im{i}.png", size=(30 + i, 20), seed=i)
    seg = counting_segmenter(batch_size=4)
    summary = predict_files(seg, [tmp_path / "in"], tmp_path / "out", report=lambda m: None)
    assert seg.backend.batches == [4, 1]
    assert len(summary.written) == 5 and summary.ok
    for i in range(5):
        mask = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        assert mask.shape == (20, 30 + i)
        assert ((mask > 0) == expected_lower_half(20, 30 + i)).mean() >= 0.9
    prof = summary.profile
    assert prof["images"] == 5 and prof["wall_s"] > 0
    assert prof["stages"]["decode"]["calls"] == 5 and prof["stages"]["encode"]["calls"] == 5
    assert prof["stages"]["model"]["calls"] == 2
    assert abs(sum(s["share"] for s in prof["stages"].values()) - 1.0) < 1e-6


def test_predict_files_bad_file_does_not_break_its_batch(tmp_path) -> None:
    from abanet.inference.predict import predict_files

    (tmp_path / "in").mkdir()
    write_rgb(tmp_path / "in" / "a.png", seed=1)
    (tmp_path / "in" / "b.png").write_bytes(b"not an image")
    write_rgb(tmp_path / "in" / "c.png", seed=2)
    seg = counting_segmenter(batch_size=8)
    messages: list[str] = []
    summary = predict_files(seg, [tmp_path / "in"], tmp_path / "out", report=messages.append)
    assert seg.backend.batches == [2]
    assert [p.name for p in summary.written] == ["a.png", "c.png"]
    assert len(summary.failed) == 1 and "b.png" in messages[0]


class TwoFaces(FaceDetector):
    name = "two"

    def _detect(self, image):
        return [Face((10, 10, 30, 30), 0.9), Face((60, 10, 80, 30), 0.8)]


def two_faces_segmenter(batch_size: int) -> Segmenter:
    seg = counting_segmenter(batch_size=batch_size, detector=None)
    seg.detector_name, seg._detector = "two", TwoFaces()
    return seg


def test_predict_batch_shares_passes_across_photos() -> None:
    seg = two_faces_segmenter(batch_size=8)
    photos = [np.zeros((100, 100, 3), np.uint8) for _ in range(3)]
    masks = seg.predict_batch(photos)
    # 2 faces x 3 photos in one pass; then all of them again in larger crops, in one pass
    # (the stand-in's mask fills each crop's lower half down to its edge: extension_boxes)
    assert seg.backend.batches == [6, 6]
    assert [m.shape for m in masks] == [(100, 100)] * 3
    single = seg.predict(photos[0])
    np.testing.assert_array_equal(masks[0], single)


def test_predict_files_second_crops_share_batches_with_the_next_photos(tmp_path) -> None:
    from abanet.inference.predict import predict_files

    (tmp_path / "in").mkdir()
    for i in range(3):
        write_rgb(tmp_path / "in" / f"im{i}.png", size=(100, 100), seed=i)
    seg = two_faces_segmenter(batch_size=4)
    summary = predict_files(seg, [tmp_path / "in"], tmp_path / "out", report=lambda m: None)
    assert summary.ok and [p.name for p in summary.written] == ["im0.png", "im1.png", "im2.png"]
    # photos 0-1: 4 first crops; then their 4 second crops with photo 2's 2 first crops (one
    # call, two passes of at most 4); then photo 2's second crops. Photo by photo: 6 calls.
    assert seg.backend.batches == [4, 4, 2, 2]
    assert summary.profile["stages"]["model"]["calls"] == 4
    for i in range(3):
        mask = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        single = two_faces_segmenter(batch_size=4).predict(tmp_path / "in" / f"im{i}.png")
        assert mask.any()
        np.testing.assert_array_equal(mask, single)
