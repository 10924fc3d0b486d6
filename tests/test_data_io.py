"""abanet.data.io: decoding every colour mode, masks, errors, atomic writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abanet.data.io import (
    IMAGE_EXTENSIONS,
    binarize_mask,
    mask_value_problems,
    read_image,
    read_image_bytes,
    read_mask,
    read_mask_raw,
    write_image_atomic,
)
from abanet.errors import DataError, ImageReadError


def _disk(n: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return (((yy - n / 2 + 0.3) ** 2 + (xx - n / 2 - 0.2) ** 2) < (n / 3) ** 2).astype(np.uint8)


def test_extensions_constant() -> None:
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, arr)


def test_grayscale_and_1bit(tmp_path: Path) -> None:
    g = np.arange(16 * 8, dtype=np.uint8).reshape(8, 16)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)
    Image.fromarray(g > 60).convert("1").save(tmp_path / "b.png")
    b = read_image(tmp_path / "b.png")
    assert b.shape == (8, 16, 3) and set(np.unique(b)) <= {0, 255}


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[0, 0] = (255, 0, 0, 0)  # fully transparent -> white
    a[0, 1] = (0, 0, 255, 255)  # opaque blue
    a[0, 2] = (0, 0, 0, 128)  # half black over white -> mid grey
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png")
    assert out.shape == (4, 4, 3)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (0, 0, 255)
    assert all(abs(int(v) - 127) <= 1 for v in out[0, 2])


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    idx = np.zeros((6, 6), dtype=np.uint8)
    idx[2:4, 2:4] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (6, 6, 3)
    assert tuple(out[2, 2]) == (10, 200, 30) and tuple(out[0, 0]) == (0, 0, 0)
    im.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[2, 2]) == (10, 200, 30)


def test_16bit_scaled_to_8bit(tmp_path: Path) -> None:
    a = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16).repeat(3, axis=0)
    Image.fromarray(a).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert list(out[0, :, 0]) == [0, 128, 255, 4]  # round(1000 / 257) = 4
    m = read_mask(tmp_path / "d.png")
    assert list(m[0]) == [0, 1, 1, 0]


def test_cmyk_jpeg_and_tiff(tmp_path: Path) -> None:
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red
    im.save(tmp_path / "c.jpg", quality=95)
    im.save(tmp_path / "c.tif")
    for name in ("c.jpg", "c.tif"):
        out = read_image(tmp_path / name)
        assert out.shape == (16, 16, 3)
        r, g, b = (int(v) for v in out[8, 8])
        assert r > 230 and g < 25 and b < 25, (name, r, g, b)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_applied(tmp_path: Path, ext: str) -> None:
    stored = np.zeros((8, 16, 3), dtype=np.uint8)  # 16 wide, 8 tall
    stored[:4, :4] = 255  # white block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    p = tmp_path / f"r{ext}"
    Image.fromarray(stored).save(p, exif=exif, **({"quality": 100} if ext == ".jpg" else {}))
    out = read_image(p)
    assert out.shape == (16, 8, 3)  # width and height swapped
    assert out[1, 6].min() > 200  # top-left block is now top-right
    assert out[1, 1].max() < 50 and out[14, 1].max() < 50


def test_read_image_bytes_and_errors(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (5, 3), 77).save(buf, format="PNG")
    out = read_image_bytes(buf.getvalue(), "upload.png")
    assert out.shape == (3, 5, 3) and int(out[0, 0, 0]) == 77
    with pytest.raises(ImageReadError, match=r"^upload\.bin: cannot read image \(empty data\)$"):
        read_image_bytes(b"", "upload.bin")
    with pytest.raises(ImageReadError, match=r"^upload\.txt: cannot read image \("):
        read_image_bytes(b"hello world, not an image", "upload.txt")


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError) as ei:
        read_image(missing)
    assert str(ei.value) == f"{missing}: cannot read image (file not found)"

    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00\x01 definitely not a jpeg" * 10)
    with pytest.raises(ImageReadError) as ei:
        read_image(junk)
    assert str(ei.value).startswith(f"{junk}: cannot read image (")
    assert "\n" not in str(ei.value)

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(empty)

    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)

    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG")):
        rng = np.random.default_rng(1)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
        cut = tmp_path / f"truncated{ext}"
        cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(ImageReadError) as ei:
            read_image(cut)
        msg = str(ei.value)
        assert msg.startswith(f"{cut}: cannot read image (") and "\n" not in msg
        with pytest.raises(ImageReadError, match="truncated"):
            read_mask(cut)


def test_read_mask_threshold_and_rgb(tmp_path: Path) -> None:
    raw = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(raw).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.dtype == np.uint8 and m.shape == (1, 4)
    assert list(m[0]) == [0, 0, 1, 1]
    assert list(read_mask(tmp_path / "m.png", threshold=200)[0]) == [0, 0, 0, 1]
    rgb = np.stack([raw] * 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert list(read_mask(tmp_path / "rgb.png")[0]) == [0, 0, 1, 1]


def test_jpeg_mask_noise_is_thresholded(tmp_path: Path) -> None:
    disk = _disk(32)
    Image.fromarray(disk * 255).save(tmp_path / "m.jpg", quality=75)
    raw = read_mask_raw(tmp_path / "m.jpg")
    assert len(np.unique(raw)) > 2  # compression noise is there
    np.testing.assert_array_equal(read_mask(tmp_path / "m.jpg"), disk)
    assert mask_value_problems(raw) == []


def test_alpha_matte_mask(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[..., :3] = 40  # uniform colour
    a[1:3, 1:3, 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    m = read_mask(tmp_path / "alpha.png")
    assert m.sum() == 4 and m[1, 1] == 1 and m[0, 0] == 0


def test_mask_value_problems_rules() -> None:
    clean = (_disk(32) * 255).astype(np.uint8)
    assert mask_value_problems(clean) == []
    gradient = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    probs = mask_value_problems(gradient)
    assert len(probs) == 1 and "not binary" in probs[0] and "between 32 and 223" in probs[0]
    soft = clean.copy()
    soft[0, :5] = 100  # 5 of 1024 pixels = 0.5% ambiguous: tolerated
    assert mask_value_problems(soft) == []
    soft[1, :10] = 100  # 15 of 1024 = 1.5%: flagged
    assert "1.5% of pixels" in mask_value_problems(soft)[0]
    zero_one = _disk(32)
    probs = mask_value_problems(zero_one)
    assert len(probs) == 1 and "class indices (max 1" in probs[0]
    assert mask_value_problems(np.zeros((8, 8), np.uint8)) == []


def test_binarize_mask_inputs() -> None:
    assert binarize_mask(np.array([[True, False]])).tolist() == [[1, 0]]
    assert binarize_mask(np.array([[200, 100]], np.uint8)).tolist() == [[1, 0]]


def test_write_image_atomic(tmp_path: Path) -> None:
    arr = np.random.default_rng(2).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    p = write_image_atomic(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(read_image(p), arr)
    with pytest.raises(DataError) as ei:
        write_image_atomic(p, arr)
    assert str(ei.value).startswith(f"{p}: file exists")
    arr2 = 255 - arr
    write_image_atomic(p, arr2, overwrite=True)
    np.testing.assert_array_equal(read_image(p), arr2)
    # bool masks become single-channel 0/255
    m = write_image_atomic(tmp_path / "m.png", _disk(16).astype(bool))
    with Image.open(m) as im:
        assert im.mode == "L"
    np.testing.assert_array_equal(read_mask(m), _disk(16))
    # JPEG by extension, RGBA composited
    j = write_image_atomic(tmp_path / "y.JPG", np.full((8, 8, 4), 200, np.uint8))
    with Image.open(j) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
    with pytest.raises(DataError, match="unknown extension"):
        write_image_atomic(tmp_path / "z.gif", arr)
    with pytest.raises(DataError, match="dtype float32"):
        write_image_atomic(tmp_path / "f.png", arr.astype(np.float32))
    leftovers = [q.name for q in tmp_path.rglob("*") if q.name.startswith(".")]
    assert leftovers == []


def test_atomic_writes_get_the_usual_file_permissions(tmp_path) -> None:
    import os

    from abanet.data.atomic import FILE_MODE, write_bytes_atomic

    umask = os.umask(0)
    os.umask(umask)
    path = write_bytes_atomic(tmp_path / "a.bin", b"x")
    assert 0o666 & ~umask == FILE_MODE
    assert path.stat().st_mode & 0o777 == FILE_MODE  # not mkstemp's owner-only 0600


def test_write_is_an_exclusive_create(tmp_path, monkeypatch) -> None:
    """A file that appears between the existence check and the write is never replaced."""
    import abanet.data.atomic as io_mod
    from abanet.errors import OutputExistsError

    target = tmp_path / "out.png"
    real_temp = io_mod.atomic_temp

    def other_writer_first(path, suffix=".tmp"):
        target.write_bytes(b"other run")
        return real_temp(path, suffix)

    monkeypatch.setattr(io_mod, "atomic_temp", other_writer_first)
    with pytest.raises(OutputExistsError, match="file exists"):
        io_mod.write_bytes_atomic(target, b"mine")
    assert target.read_bytes() == b"other run"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left
