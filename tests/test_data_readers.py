"""Dataset readers: folders, MFSD release, LabelMe, auto detection, LabelMe conversion."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abanet.data.convert import convert_labelme
from abanet.data.readers import (
    detect_kind,
    find_mfsd_root,
    load_image,
    load_mask,
    open_dataset,
    rasterize_labelme,
    read_folders,
    read_labelme,
    read_mfsd,
    read_mfsd_boxes,
)
from abanet.errors import DataError


def _img(path: Path, value: int = 100, size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    arr[0, 0] = (value + 7) % 256
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), dtype=np.uint8)
    m[size[1] // 2 :, :] = 255
    Image.fromarray(m).save(path)
    return path


# --------------------------------------------------------------------------------- folders
def test_folders_pairs_by_stem_and_reports_unpaired(tmp_path: Path) -> None:
    _img(tmp_path / "images" / "a.jpg")
    _mask(tmp_path / "masks" / "a.png")
    _img(tmp_path / "images" / "b.png")
    _mask(tmp_path / "masks" / "b.jpg")
    _img(tmp_path / "images" / "lonely.png")
    _mask(tmp_path / "masks" / "orphan.png")
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    samples, problems = read_folders(tmp_path)
    by_name = {s.name: s for s in samples}
    assert sorted(by_name) == ["a.jpg", "b.png", "lonely.png"]
    assert by_name["a.jpg"].mask_path == tmp_path / "masks" / "a.png"
    assert by_name["b.png"].mask_path == tmp_path / "masks" / "b.jpg"
    assert by_name["lonely.png"].mask_path is None
    msgs = {p.kind: str(p) for p in problems}
    assert (
        msgs["unpaired-image"]
        == f"{tmp_path / 'images' / 'lonely.png'}: no mask with the same stem"
    )
    assert (
        msgs["unpaired-mask"] == f"{tmp_path / 'masks' / 'orphan.png'}: no image with the same stem"
    )
    assert load_mask(by_name["a.jpg"]).sum() == 8 * 16
    assert load_image(by_name["b.png"]).shape == (16, 16, 3)


def test_folders_recursive_and_ambiguous(tmp_path: Path) -> None:
    _img(tmp_path / "images" / "sub" / "c.png")
    _mask(tmp_path / "masks" / "sub" / "c.png")
    _img(tmp_path / "images" / "d.png")
    _img(tmp_path / "images" / "d.jpg")
    _mask(tmp_path / "masks" / "d.png")
    flat, _ = read_folders(tmp_path)
    assert [s.name for s in flat] == ["d.jpg"]
    deep, problems = read_folders(tmp_path, recursive=True)
    assert sorted(s.name for s in deep) == ["d.jpg", "sub/c.png"]
    amb = [p for p in problems if p.kind == "ambiguous"]
    assert (
        len(amb) == 1 and amb[0].path.endswith("d.png") and "share the stem 'd'" in amb[0].message
    )


def test_folders_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no images/ folder"):
        read_folders(tmp_path)


def test_folders_groups_from_name_preset(tmp_path: Path) -> None:
    for n in ("faceMsak_caiyilin_0_0_5", "faceMsak_caiyilin_1_0_2", "facemsak_wuyifan_0_0_1"):
        _img(tmp_path / "images" / f"{n}.jpg")
        _mask(tmp_path / "masks" / f"{n}.jpg")
    samples, problems = read_folders(tmp_path)
    assert problems == []
    assert [s.group for s in samples] == ["caiyilin", "caiyilin", "wuyifan"]


# ------------------------------------------------------------------------------------- MFSD
def _mfsd_tree(root: Path) -> Path:
    base = root / "MSFD" / "1"
    for n in ("000000_1", "000000_2", "000001_1"):
        _img(base / "face_crop" / f"{n}.jpg")
    for n in ("000000_1", "000000_2", "000002_1"):
        _mask(base / "face_crop_segmentation" / f"{n}.jpg")
    _img(base / "img" / "000000.jpg", size=(40, 30))
    _img(base / "img" / "000001.jpg", size=(40, 30))
    (base / "dataset.csv").write_text(
        "filename,x1,y1,x2,y2,with_mask\n"
        "000000.jpg,1,2,11,12,1\n"
        "000000.jpg,20,5,30,15,0\n"
        "000001,3,3,9,9,1\n"
        "000003.jpg,0,0,5,5,1\n"
        "broken,row\n"
    )
    return root / "MSFD"


def test_mfsd_root_detection_and_pairs(tmp_path: Path) -> None:
    msfd = _mfsd_tree(tmp_path)
    assert find_mfsd_root(tmp_path) == msfd
    assert find_mfsd_root(msfd) == msfd
    assert find_mfsd_root(msfd / "1") == msfd
    assert detect_kind(tmp_path) == "mfsd"
    for root in (tmp_path, msfd):
        samples, problems = read_mfsd(root)
        assert [s.name for s in samples] == ["000000_1.jpg", "000000_2.jpg", "000001_1.jpg"]
        assert [s.group for s in samples] == ["000000", "000000", "000001"]
        assert samples[2].mask_path is None
        msgs = sorted(str(p) for p in problems)
        assert any("000001_1.jpg: no mask" in m for m in msgs)
        assert any("000002_1.jpg: no face crop" in m for m in msgs)


def test_mfsd_boxes(tmp_path: Path) -> None:
    msfd = _mfsd_tree(tmp_path)
    boxes, problems = read_mfsd_boxes(tmp_path)
    assert sorted(boxes) == ["000000.jpg", "000001.jpg", "000003.jpg"]
    b0 = boxes["000000.jpg"]
    assert [(b.x1, b.y1, b.x2, b.y2, b.with_mask) for b in b0] == [
        (1, 2, 11, 12, True),
        (20, 5, 30, 15, False),
    ]
    assert boxes["000001.jpg"][0].x2 == 9
    text = [str(p) for p in problems]
    assert any(t.startswith(f"{msfd / '1' / 'dataset.csv'}:6: bad row") for t in text)
    assert any("000003.jpg: listed in dataset.csv but missing" in t for t in text)
    # header-less CSV parses too
    (msfd / "1" / "dataset.csv").write_text("000000.jpg,1,2,11,12,1\n")
    boxes, problems = read_mfsd_boxes(msfd)
    assert len(boxes["000000.jpg"]) == 1 and problems == []


# ---------------------------------------------------------------------------------- LabelMe
def _labelme(
    path: Path,
    shapes: list[dict],
    image_path: str | None = "pic.png",
    size: tuple[int, int] = (16, 12),
    image_data: bytes | None = None,
) -> Path:
    doc = {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": size[1],
        "imageWidth": size[0],
    }
    path.write_text(json.dumps(doc))
    return path


def test_labelme_polygon_pixel_exact(tmp_path: Path) -> None:
    # Axis-aligned polygon (2,3)-(10,3)-(10,8)-(2,8): filled with its outline -> x 2..10, y 3..8.
    # Plus a right triangle (0,0),(4,0),(0,4): pixel (x, y) inside when x + y <= 4.
    shapes = [
        {"label": "mask", "points": [[2, 3], [10, 3], [10, 8], [2, 8]], "shape_type": "polygon"},
        {"label": "Face_Mask", "points": [[0, 0], [4, 0], [0, 4]], "shape_type": "polygon"},
        {"label": "hair", "points": [[12, 0], [15, 0], [15, 11]], "shape_type": "polygon"},
    ]
    data = json.loads(_labelme(tmp_path / "x.json", shapes).read_text())
    mask, notes = rasterize_labelme(data)
    assert mask.shape == (12, 16) and mask.dtype == np.uint8 and notes == []
    expected = np.zeros((12, 16), dtype=np.uint8)
    expected[3:9, 2:11] = 1
    for y in range(12):
        for x in range(16):
            if x + y <= 4:
                expected[y, x] = 1
    np.testing.assert_array_equal(mask, expected)


def test_labelme_rectangle_circle_and_skips() -> None:
    data = {
        "shapes": [
            {"label": "mask", "points": [[9, 7], [3, 2]], "shape_type": "rectangle"},
            {"label": "mask", "points": [[1, 1], [5, 5]], "shape_type": "line"},
        ],
        "imageHeight": 10,
        "imageWidth": 12,
    }
    mask, notes = rasterize_labelme(data)
    expected = np.zeros((10, 12), np.uint8)
    expected[2:8, 3:10] = 1
    np.testing.assert_array_equal(mask, expected)
    assert notes == ["shape 1 (line) has no area; skipped"]
    circle = {"shapes": [{"label": "mask", "points": [[10, 10], [10, 14]], "shape_type": "circle"}]}
    m, _ = rasterize_labelme(circle, size=(21, 21))
    assert m[10, 10] == 1 and m[10, 14] == 1 and m[14, 14] == 0 and m[10, 15] == 0
    assert m[6, 10] == 1 and m[10, 6] == 1
    # any label
    m_all, _ = rasterize_labelme({"shapes": data["shapes"]}, labels=["*"], size=(10, 12))
    assert m_all.sum() == expected.sum()


def test_labelme_mask_shape_type() -> None:
    sub = np.zeros((3, 4), dtype=np.uint8)
    sub[1, 1:3] = 255
    buf = io.BytesIO()
    Image.fromarray(sub).save(buf, format="PNG")
    shape = {
        "label": "mask",
        "points": [[5, 2], [8, 4]],
        "shape_type": "mask",
        "mask": base64.b64encode(buf.getvalue()).decode(),
    }
    m, notes = rasterize_labelme({"shapes": [shape]}, size=(8, 10))
    assert notes == [] and m.sum() == 2 and m[3, 6] == 1 and m[3, 7] == 1


def test_read_labelme_folder(tmp_path: Path) -> None:
    poly = [
        {"label": "mask", "points": [[2, 3], [10, 3], [10, 8], [2, 8]], "shape_type": "polygon"}
    ]
    _img(tmp_path / "pic.png", size=(16, 12))
    _labelme(tmp_path / "pic.json", poly)
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (1, 2, 3)).save(buf, format="PNG")
    _labelme(tmp_path / "embedded.json", poly, image_path="gone/embedded.png",
             image_data=buf.getvalue())  # fmt: skip
    _labelme(tmp_path / "noimage.json", poly, image_path="nowhere.jpg")
    _labelme(tmp_path / "otherlabel.json", [{**poly[0], "label": "hat"}], image_path="pic.png")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"foo": 1}))
    samples, problems = read_labelme(tmp_path)
    names = sorted(s.name for s in samples)
    assert names == ["embedded.png", "otherlabel.png", "pic.png"]
    by = {s.name: s for s in samples}
    assert by["embedded.png"].image_path == tmp_path / "embedded.json"
    assert load_image(by["embedded.png"])[0, 0].tolist() == [1, 2, 3]
    assert load_mask(by["pic.png"]).sum() == 9 * 6
    assert load_mask(by["otherlabel.png"]).sum() == 0
    text = {p.path.rsplit("/", 1)[-1]: p for p in problems}
    assert "not valid JSON" in text["broken.json"].message
    assert "not a LabelMe file" in text["other.json"].message
    assert "'nowhere.jpg' not found" in text["noimage.json"].message
    assert text["otherlabel.json"].severity == "warning"
    assert "labels found: hat" in text["otherlabel.json"].message
    # custom labels
    samples2, _ = read_labelme(tmp_path, labels=["hat"])
    by2 = {s.name: s for s in samples2}
    assert load_mask(by2["otherlabel.png"]).sum() == 9 * 6
    assert detect_kind(tmp_path) == "labelme"


def test_convert_labelme(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    poly = [
        {"label": "mask", "points": [[2, 3], [10, 3], [10, 8], [2, 8]], "shape_type": "polygon"}
    ]
    _img(src / "pic.png", size=(16, 12))
    _labelme(src / "pic.json", poly)
    out = tmp_path / "out"
    n, problems = convert_labelme(src, out)
    assert n == 1 and problems == []
    assert (out / "images" / "pic.png").read_bytes() == (src / "pic.png").read_bytes()
    samples, probs = open_dataset(out)
    assert probs == [] and len(samples) == 1
    m = load_mask(samples[0])
    assert m.sum() == 9 * 6 and m[3, 2] == 1 and m[2, 2] == 0
    n2, problems2 = convert_labelme(src, out)
    assert n2 == 0 and "file exists" in str(problems2[0])
    n3, problems3 = convert_labelme(src, out, overwrite=True)
    assert n3 == 1 and problems3 == []


def test_open_dataset_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(DataError) as ei:
        open_dataset(tmp_path)
    assert "cannot detect the dataset layout" in str(ei.value)
    assert "found train/ with images/ inside: point at one of them" in str(ei.value)
    with pytest.raises(DataError, match="unknown dataset kind"):
        open_dataset(tmp_path / "train", kind="coco")
    assert detect_kind(tmp_path / "train") == "folders"
