"""Scene benchmark: builder (determinism, exact ground truth, boxes) and evaluator (hand cases)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abanet.data.io import read_mask
from abanet.errors import DataError
from abanet.faces.scenes import (
    BackgroundBank,
    SceneParams,
    build_scenes,
    collect_sources,
    draw_overlay,
    evaluate_scenes,
    load_scenes,
    score_scene,
    soft_alpha,
)

SMALL = SceneParams(small_share=1.0, long_side=(200, 260), max_face_frac=0.6)


def _sources(root: Path, full_mask: bool = False) -> tuple[Path, Path]:
    """Masked crops (images/ + masks/, a red 'mask' on the lower half or everywhere) and bare
    faces (images only)."""
    rng = np.random.default_rng(0)
    crops, bare = root / "crops", root / "bare"
    for d in (crops / "images", crops / "masks", bare / "images"):
        d.mkdir(parents=True)
    for i in range(3):
        img = rng.integers(60, 200, (40, 40, 3), dtype=np.uint8)
        mask = np.zeros((40, 40), np.uint8)
        if full_mask:
            mask[:] = 255
        else:
            mask[20:36, 4:36] = 255
        img[mask > 0] = (220, 30, 30)
        Image.fromarray(img).save(crops / "images" / f"c{i}.png")
        Image.fromarray(mask).save(crops / "masks" / f"c{i}.png")
        Image.fromarray(rng.integers(60, 200, (36, 32, 3), dtype=np.uint8)).save(
            bare / "images" / f"b{i}.png"
        )
    return crops, bare


def _build(tmp: Path, out: str, seed: int = 0, n: int = 6, params=SMALL, full_mask=False):
    src = tmp / "src"
    if not src.exists():
        _sources(src, full_mask)
    masked, bare = collect_sources([src / "crops"], [], src / "bare")
    return build_scenes(tmp / out, masked, bare, BackgroundBank(None, None), n, seed, params)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_builder_is_deterministic_per_seed(tmp_path):
    _build(tmp_path, "a", seed=0)
    _build(tmp_path, "b", seed=0)
    _build(tmp_path, "c", seed=1)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert set(a) == {
        "scenes.json",
        *(
            f"{k}/scene_{i:04d}.{e}"
            for i in range(6)
            for k, e in (("images", "jpg"), ("masks", "png"))
        ),
    }
    assert a == b
    assert a != c


def test_builder_refuses_to_overwrite(tmp_path):
    _build(tmp_path, "a")
    with pytest.raises(DataError, match="exists"):
        _build(tmp_path, "a")


def test_ground_truth_is_the_pasted_masks(tmp_path):
    # full masks: the ground truth is exactly the union of the masked faces' alpha > 0.5 regions,
    # later pastes (bare faces too) covering earlier ones
    params = SceneParams(
        small_share=1.0, long_side=(200, 260), empty_share=0, bare_only_share=0, bare_prob=0.4
    )
    data = _build(tmp_path, "s", n=8, params=params, full_mask=True)
    assert any(not f["masked"] for s in data["scenes"] for f in s["faces"])
    for s in data["scenes"]:
        gt = read_mask(tmp_path / "s" / "masks" / f"{s['name']}.png")
        want = np.zeros((s["height"], s["width"]), np.uint8)
        for f in s["faces"]:
            x0, y0, x1, y1 = f["paste"]
            on = soft_alpha(x1 - x0, y1 - y0, f["alpha_power"]) > 0.5
            big = np.zeros((s["height"] + 2 * 400, s["width"] + 2 * 400), np.uint8)
            region = big[y0 + 400 : y1 + 400, x0 + 400 : x1 + 400]
            region[on] = 1
            inside = big[400:-400, 400:-400].astype(bool)
            want[inside] = 1 if f["masked"] else 0
        assert np.array_equal(gt, want), s["name"]


def test_ground_truth_lies_in_the_masked_faces(tmp_path):
    data = _build(tmp_path, "s", n=8)
    for s in data["scenes"]:
        gt = read_mask(tmp_path / "s" / "masks" / f"{s['name']}.png").astype(bool)
        zone = np.zeros_like(gt)
        for f in s["faces"]:
            if f["masked"]:
                x1, y1 = (math.floor(v) for v in f["box"][:2])
                x2, y2 = (math.ceil(v) for v in f["box"][2:])
                zone[y1:y2, x1:x2] = True
        assert not (gt & ~zone).any()


def test_face_boxes_are_clipped_to_the_image(tmp_path):
    params = SceneParams(small_share=1.0, long_side=(200, 260), empty_share=0, cut_prob=1.0)
    data = _build(tmp_path, "s", n=10, params=params)
    cut = 0
    for s in data["scenes"]:
        w, h = s["width"], s["height"]
        for f in s["faces"]:
            x1, y1, x2, y2 = f["box"]
            fx1, fy1, fx2, fy2 = f["full_box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert (x1, y1, x2, y2) == pytest.approx(
                (max(0, fx1), max(0, fy1), min(w, fx2), min(h, fy2)), abs=0.11
            )
            assert f["cut"] == ((fx1 < 0) or (fy1 < 0) or (fx2 > w) or (fy2 > h))
            visible = (x2 - x1) * (y2 - y1) / ((fx2 - fx1) * (fy2 - fy1))
            assert visible >= 0.34
            assert fy2 - fy1 >= SMALL.min_face - 1
            cut += f["cut"]
    assert cut > 0


def test_no_face_scenes_have_empty_masks(tmp_path):
    data = _build(tmp_path, "s", n=4, params=SceneParams(small_share=1.0, empty_share=1.0))
    for s in data["scenes"]:
        assert s["faces"] == []
        assert not read_mask(tmp_path / "s" / "masks" / f"{s['name']}.png").any()


def test_background_avoids_labelled_faces(tmp_path):
    root = tmp_path / "bg"
    (root / "images").mkdir(parents=True)
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, 80:] = 255  # the face half is white; only the black half is free
    Image.fromarray(img).save(root / "images" / "p.png")
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "images": {
                    "images/p.png": {
                        "size": [160, 120],
                        "faces": [[100, 10, 130, 40]],
                        "ignore": [],
                    }
                }
            }
        )
    )
    # the odd photos of the sorted label list are the training negatives': never backgrounds
    assert BackgroundBank(root, labels, min_side=32, every=(2, 1)).entries == []
    bank = BackgroundBank(root, labels, min_side=32)
    assert [rel for rel, _ in bank.entries] == ["images/p.png"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        patch, name = bank.sample(rng, 50, 50)
        assert name.startswith("images/p.png@")
        assert patch.shape == (50, 50, 3) and patch.max() < 40


# ---------------------------------------------------------------------------------- evaluator
@dataclass
class _Face:
    box: tuple[float, float, float, float]
    score: float = 1.0


@dataclass
class _Result:
    mask: np.ndarray
    faces: list[_Face] = field(default_factory=list)
    whole_image: bool = False


def test_crop_names_keep_one_folds_crops(tmp_path):
    crops, bare = _sources(tmp_path / "src")
    masked, _ = collect_sources([crops], [], bare, crop_names={"c1.png"})
    assert [m.image_path.name for m in masked] == ["c1.png"]


def test_evaluate_bare_counts_painted_crops(tmp_path):
    from abanet.faces.scenes import evaluate_bare

    _, bare = _sources(tmp_path / "src")  # three 32x36 bare faces

    @dataclass
    class _Judged(_Result):
        @property
        def mask_score(self) -> float:
            return 1.0 if self.mask.any() else 0.0

    calls = []

    def segment(image: np.ndarray) -> _Judged:
        m = np.zeros(image.shape[:2], np.uint8)
        m[: len(calls) * 6, :] = 1  # 0, 6 and 12 rows of 36: 0 %, 16.7 %, 33.3 %
        calls.append(1)
        return _Judged(m)

    r = evaluate_bare(segment, bare)
    assert r["faces"] == 3 and r["painted"] == pytest.approx(2 / 3)
    assert r["mean_painted_share"] == pytest.approx((0 + 6 / 36 + 12 / 36) / 3)
    assert r["judged_masked"] == 2


def test_faces_judged_bare_are_not_masked_detections(tmp_path):
    """A face the model judged bare (``masked`` False) is no masked-face hit."""

    @dataclass
    class _Judged(_Face):
        masked: bool = False

    data = _build(tmp_path, "s", n=8)
    scenes = data["scenes"]

    def segment(image):
        s = next(it)
        faces = [_Judged(tuple(f["box"])) for f in s["faces"] if f["masked"]]
        return _Result(np.zeros(image.shape[:2], np.uint8), faces)

    it = iter(scenes)
    report = evaluate_scenes(segment, tmp_path / "s")
    assert report["masked_faces"] > 0 and report["masked_recall"] == 0
    assert report["false_faces_per_scene"] == 0  # nor are they false faces


def test_perfect_prediction(tmp_path):
    data = _build(tmp_path, "s", n=8)
    scenes = data["scenes"]
    masks = [read_mask(tmp_path / "s" / "masks" / f"{s['name']}.png") for s in scenes]
    it = iter(range(len(scenes)))

    def segment(image):
        k = next(it)
        faces = [_Face(tuple(f["box"])) for f in scenes[k]["faces"] if f["masked"]]
        return _Result(masks[k], faces)

    report = evaluate_scenes(segment, tmp_path / "s", csv_path=tmp_path / "r.csv")
    assert report["scenes"] == 8
    assert report["iou"] == 1.0
    assert report["masked_recall"] == 1.0
    assert report["masked_recall_by_set"] == {
        "crops": {"faces": report["masked_faces"], "recall": 1}
    }
    assert report["false_faces_per_scene"] == 0
    assert report["outside_share"] == 0
    assert report["far_background_photos"] == 0
    if report["bare_faces"]:
        assert report["bare_painted"] == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 9


def test_hand_made_case():
    h = w = 100
    faces = [
        {"box": [10, 10, 40, 40], "masked": True, "source": "set/x/images/a.png"},
        {"box": [60, 60, 90, 90], "masked": False},
        {"box": [60, 5, 90, 12], "masked": True},  # 7 px tall: not counted
    ]
    gt = np.zeros((h, w), np.uint8)
    gt[25:40, 10:40] = 1  # 450 px
    pred = gt.copy()
    pred[60:90, 60:90] = 1  # the bare face painted: 900 px
    pred[0:5, 0:5] = 1  # 25 px on background, near face 0 (margin 0.5 * 30 = 15 px)
    dets = [(12, 12, 38, 38), (62, 62, 88, 88), (0, 70, 20, 95), (61, 4, 89, 13)]
    r = score_scene(pred, gt, faces, dets, [0.9, 0.8, 0.7, 0.6])
    assert r["iou"] == pytest.approx(450 / (450 + 900 + 25))
    assert r["faces_masked"] == 1 and r["hits_masked"] == 1
    assert r["hits_masked_small"] == 1 and r["faces_masked_large"] == 0
    assert r["false_faces"] == 1  # (0, 70, 20, 95); the box on the bare face is not false
    assert r["faces_bare"] == 1 and r["bare_painted"] == 1
    # masked zones: face 0 grown by 3 px -> (7..43), face 2 -> (57..93, 2..15)
    assert r["outside_pixels"] == 900 + 25
    assert r["far_pixels"] == 0
    assert not r["far_background"]
    assert r["masked_by_set"] == [("set/x", True)]


def test_far_background_and_empty_scene():
    gt = np.zeros((50, 50), np.uint8)
    r = score_scene(gt, gt, [], [])
    assert r["iou"] == 1.0 and not r["far_background"]  # empty / empty counts as 1
    pred = gt.copy()
    pred[0:2, 0:3] = 1  # 6 px > 0.2 % of 2500 = 5 px
    r = score_scene(pred, gt, [], [(0, 0, 10, 10)])
    assert r["iou"] == 0.0 and r["far_background"] and r["false_faces"] == 1


def test_overlay_shape():
    img = np.zeros((30, 40, 3), np.uint8)
    gt = np.zeros((30, 40), np.uint8)
    gt[5:10, 5:10] = 1
    out = draw_overlay(
        img, gt, np.roll(gt, 2, 1), [{"box": [4, 4, 11, 11], "masked": True}], [(3, 3, 12, 12)]
    )
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert (out[7, 5] > 0).any()


def test_load_scenes_errors(tmp_path):
    with pytest.raises(DataError, match="scenes.json"):
        load_scenes(tmp_path)
    (tmp_path / "scenes.json").write_text("{}")
    with pytest.raises(DataError, match="not a scene index"):
        load_scenes(tmp_path)
