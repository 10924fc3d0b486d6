"""Full-photo pipeline: crop rule, crop extraction, paste-back, union, polygons, whole image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from abanet.errors import DataError
from abanet.faces import (
    CROP_RULES,
    CropRule,
    Face,
    FaceDetector,
    PhotoResult,
    extract_crop,
    mask_polygons,
    segment_photo,
)
from abanet.faces.pipeline import (
    WHOLE_IMAGE_COVER,
    CropBatcher,
    crop_rule_for,
    finish_photo,
    is_face_crop,
    mask_score,
    plan_photo,
)


class FakeDetector(FaceDetector):
    """Returns fixed faces; counts calls. ``context``: faces of the padded view (canvas pixels)."""

    name = "fake"

    def __init__(self, faces: list[Face], context: list[Face] | None = None) -> None:
        self.faces = faces
        self.context = context or []
        self.calls = 0
        self.canvases: list[tuple[int, ...]] = []

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        return list(self.faces)

    def _detect_context(self, canvas_rgb: np.ndarray) -> list[Face]:
        self.canvases.append(canvas_rgb.shape)
        return list(self.context)


class NeverDetector(FaceDetector):
    name = "never"

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        raise AssertionError("the detector must not be called")


class BlockSegmenter:
    """Prob map per crop: ``high`` in rows 10:30, cols 5:35 (crop coords), ``low`` elsewhere."""

    def __init__(self, high: float = 0.9, low: float = 0.2) -> None:
        self.high, self.low = high, low
        self.seen: list[np.ndarray] = []

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        self.seen.extend(crops)
        out = []
        for c in crops:
            p = np.full(c.shape[:2], self.low, np.float32)
            p[10:30, 5:35] = self.high
            out.append(p)
        return out


def mouth_at(x: float, y: float) -> np.ndarray:
    """Six BlazeFace-style landmarks whose mouth (point 3) is at ``(x, y)``."""
    pts = np.zeros((6, 2), np.float32)
    pts[3] = (x, y)
    return pts


def photo(h: int = 100, w: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- crop rule --------------------------------------------------------------------------------


def test_crop_rule_by_hand() -> None:
    # box w=40, h=80 -> side round(1.2*80)=96, centre (30, 60 + 0.1*80) = (30, 68)
    assert CropRule(dx=0.0, dy=0.1, scale=1.2).crop_box((10, 20, 50, 100)) == (-18, 20, 78, 116)
    # dx shifts by a fraction of the width: centre x = 30 + 0.25*40 = 40
    assert CropRule(dx=0.25, dy=0.0, scale=1.0).crop_box((10, 20, 50, 100)) == (0, 20, 80, 100)
    # identity on a square box
    assert CropRule().crop_box((20, 20, 60, 60)) == (20, 20, 60, 60)


def test_measured_crop_rules_are_tight_squares() -> None:
    ssd = CROP_RULES["ssd"].crop_box((100, 100, 190, 220))  # w=90, h=120: side 1.0*120
    assert ssd[2] - ssd[0] == ssd[3] - ssd[1] == 120
    assert (ssd[0] + ssd[2]) / 2 == pytest.approx(145, abs=0.5)
    assert (ssd[1] + ssd[3]) / 2 == pytest.approx(160 + 0.08 * 120, abs=0.5)


def test_crop_rule_picked_by_face_source_then_detector() -> None:
    ssd_face = Face((0, 0, 10, 10), 1.0, source="ssd")
    assert crop_rule_for(ssd_face) is CROP_RULES["ssd"]
    plain = Face((0, 0, 10, 10), 1.0)
    det = FakeDetector([])
    det.name = "mtcnn"
    assert crop_rule_for(plain, det) is CROP_RULES["mtcnn"]
    assert crop_rule_for(plain) == CropRule()


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (5, 5, 4, 9), (0, 0, float("nan"), 5)])
def test_crop_rule_rejects_empty_boxes(box: tuple[float, ...]) -> None:
    with pytest.raises(DataError, match="x2 > x1"):
        CropRule().crop_box(box)


def test_extract_crop_replicates_border() -> None:
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    crop = extract_crop(img, (-2, -1, 3, 4))  # 5x5 square, 2 columns left and 1 row above
    assert crop.shape == (5, 5, 3)
    np.testing.assert_array_equal(crop[1:, 2:], img[0:4, 0:3])
    np.testing.assert_array_equal(crop[0], crop[1])  # replicated top row
    np.testing.assert_array_equal(crop[:, 0], crop[:, 2])  # replicated left column
    with pytest.raises(DataError, match="outside"):
        extract_crop(img, (10, 10, 20, 20))


def test_mask_polygons_rectangle_and_offset() -> None:
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 3:13] = 1
    (poly,) = mask_polygons(m, epsilon=1.0, offset=(100, 50))
    assert sorted(map(tuple, poly)) == [(103, 55), (103, 59), (112, 55), (112, 59)]
    assert mask_polygons(np.zeros((4, 4), np.uint8)) == []
    m[15:18, 20:25] = 1  # a second, smaller blob comes second
    polys = mask_polygons(m)
    assert len(polys) == 2 and len(polys[0]) == 4


# -- paste-back and union -----------------------------------------------------------------------


def test_two_faces_paste_back_union_areas_polygons() -> None:
    img = photo()  # 100 x 200
    faces = [  # the 2nd crosses the borders; mouths inside the blocks: both masked
        Face((20, 20, 60, 60), 0.9, mouth_at(40, 40)),
        Face((170, 70, 210, 110), 0.8, mouth_at(190, 90)),
    ]
    seg = BlockSegmenter()
    res = segment_photo(img, FakeDetector(faces), seg, threshold=0.5)

    assert isinstance(res, PhotoResult) and not res.whole_image
    assert res.prob.shape == (100, 200) and res.prob.dtype == np.float32
    assert res.mask.shape == (100, 200) and res.mask.dtype == np.uint8
    a, b = res.faces
    assert a.crop_box == (20, 20, 60, 60) and b.crop_box == (170, 70, 210, 110)
    # crops handed to the segmenter: square, the 2nd padded past the image
    assert [c.shape for c in seg.seen] == [(40, 40, 3), (40, 40, 3)]
    np.testing.assert_array_equal(seg.seen[0], img[20:60, 20:60])
    np.testing.assert_array_equal(seg.seen[1][:30, :30], img[70:100, 170:200])

    # face A: block rows 30:50, cols 25:55 ; face B: rows 80:100, cols 175:200 (clipped)
    expected = np.zeros((100, 200), np.uint8)
    expected[30:50, 25:55] = 1
    expected[80:100, 175:200] = 1
    np.testing.assert_array_equal(res.mask, expected)
    assert res.prob[40, 40] == pytest.approx(0.9) and res.prob[21, 21] == pytest.approx(0.2)
    assert res.prob[0, 100] == 0.0  # outside every crop
    assert a.mask_area == 600 and b.mask_area == 500 and res.mask_area == 1100
    assert sorted(map(tuple, a.polygons[0])) == [(25, 30), (25, 49), (54, 30), (54, 49)]
    assert sorted(map(tuple, b.polygons[0])) == [(175, 80), (175, 99), (199, 80), (199, 99)]
    assert a.box == (20, 20, 60, 60) and a.score == pytest.approx(0.9)


def test_overlapping_crops_take_the_maximum() -> None:
    img = photo()
    faces = [Face((20, 20, 60, 60), 0.9), Face((30, 20, 70, 60), 0.8)]

    def seg(crops: list[np.ndarray]) -> list[np.ndarray]:
        maps = [np.full((40, 40), 0.1, np.float32) for _ in crops]
        maps[0][5:35, 5:35] = 0.9  # face A: rows 25:55, cols 25:55 of the photo
        maps[1][5:35, 5:35] = 0.7  # face B: rows 25:55, cols 35:65
        return maps

    res = segment_photo(img, FakeDetector(faces), seg, threshold=0.5)
    assert res.prob[30, 30] == pytest.approx(0.9)  # only face A's block
    assert res.prob[30, 45] == pytest.approx(0.9)  # overlap: max(0.9, 0.7)
    assert res.prob[30, 60] == pytest.approx(0.7)  # only face B's block
    assert res.mask[25:55, 25:65].all() and not res.mask[20:60, 65:70].any()
    assert res.faces[0].mask_area == res.faces[1].mask_area == 900


def test_threshold_is_inclusive() -> None:
    img = photo()
    # mouths in the middle of each block: the mask score is the block's 0.5
    faces = [
        Face((20, 20, 60, 60), 0.9, mouth_at(40, 40)),
        Face((120, 20, 160, 60), 0.9, mouth_at(140, 40)),
    ]
    res = segment_photo(img, FakeDetector(faces), BlockSegmenter(high=0.5), threshold=0.5)
    assert res.mask_area == 2 * 600
    assert all(f.masked for f in res.faces)  # mask score 0.5 reaches MIN_MASK_SCORE


# -- masked or not, per face -----------------------------------------------------------------


def test_mask_score_by_hand() -> None:
    p = np.zeros((40, 40), np.float32)
    p[20:30, 10:30] = 1.0
    # around the mouth: a 10x10 window (0.25 x 40) centred there
    assert mask_score(p, (20, 25)) == pytest.approx(1.0)
    assert mask_score(p, (20, 20)) == pytest.approx(0.5)  # rows 15:25, half of them mask
    assert mask_score(p, (20, 5)) == 0.0  # a blob away from the mouth does not count
    assert mask_score(p, (100, 100)) == 0.0  # a mouth off the map
    p = np.zeros((10, 10), np.float32)  # no face: the top 5 % of the map
    assert mask_score(p) == 0.0
    p[0, :5] = 1.0  # 5 of 100 pixels at 1: exactly the top 5 %
    assert mask_score(p) == pytest.approx(1.0)
    p[0, :5] = [1.0, 1.0, 0.5, 0.5, 0.0]
    assert mask_score(p) == pytest.approx(0.6)


def test_face_mask_score_reads_the_chin_when_the_mouth_is_bare() -> None:
    from abanet.faces.pipeline import MIN_CHIN_SCORE, face_mask_score

    box = (200, 100, 300, 200)  # the crop, 100 px; the face box's bottom at y 90 in it
    face = Face((215, 110, 285, 190), 0.9, mouth_at(250, 160))  # mouth at (50, 60) in the crop
    # windows of 25 px: around the mouth rows 48:72; the chin's centre min(75, 90 - 12.5) = 75,
    # rows 62:88
    p = np.zeros((100, 100), np.float32)
    assert face_mask_score(p, face, box) == 0.0  # bare
    p[40:, :] = 1.0
    assert face_mask_score(p, face, box) == 1.0  # a mask over the mouth
    p[:] = 0.0
    p[62:, :] = 1.0  # pulled down on the chin: the mouth window is 10 / 24 mask
    assert face_mask_score(p, face, box) == 1.0 >= MIN_CHIN_SCORE
    unsure = Face(face.box, 0.55, face.landmarks)  # a low-score box: its mouth alone decides
    assert face_mask_score(p, unsure, box) == pytest.approx(10 / 24)
    p[:] = 0.0
    p[62:, :] = 0.8  # a chin window below MIN_CHIN_SCORE: the mouth's score stands
    assert face_mask_score(p, face, box) == pytest.approx(0.8 * 10 / 24)
    p[:] = 0.0
    p[90:, :] = 1.0  # a collar below the face box: not a mask
    assert face_mask_score(p, face, box) == 0.0


def test_bare_face_gets_an_empty_mask() -> None:
    img = photo()
    faces = [
        Face((20, 20, 60, 60), 0.9, mouth_at(40, 45)),
        Face((120, 20, 160, 60), 0.8, mouth_at(140, 51)),
    ]

    def seg(crops: list[np.ndarray]) -> list[np.ndarray]:
        masked = np.full((40, 40), 0.05, np.float32)
        masked[15:35, 5:35] = 0.95  # a mask on the lower face
        bare = np.full((40, 40), 0.05, np.float32)
        bare[30:32, 15:25] = 0.9  # 20 stray pixels on the lips: 1.25 % of the crop
        return [masked, bare]

    res = segment_photo(img, FakeDetector(faces), seg)
    a, b = res.faces
    assert a.masked and a.mask_score == pytest.approx(0.95)
    # the bare face's window (rows 26:36, cols 15:25) holds the 20 stray pixels and 80 others
    assert not b.masked and b.mask_score == pytest.approx((20 * 0.9 + 80 * 0.05) / 100)
    assert b.mask_area == 0 and b.polygons == [] and not res.mask[20:60, 120:160].any()
    assert res.prob[20:60, 120:160].max() == 0.0  # soft output is empty too
    assert res.mask_area == a.mask_area == 600 and res.masked_faces == 1
    data = json.loads(json.dumps(res.to_json()))
    assert [f["masked"] for f in data["faces"]] == [True, False] and data["masked"] is True


def test_bare_face_crop_segmented_whole_is_empty() -> None:
    res = segment_photo(photo(), None, lambda cs: [np.full(cs[0].shape[:2], 0.3, np.float32)])
    assert res.whole_image and res.mask_area == 0 and res.mask_score == pytest.approx(0.3)
    assert res.to_json()["masked"] is False


# -- masks past the crop edge ------------------------------------------------------------------


class ChinSegmenter:
    """A mask block whose rows reach the crop's bottom edge: rows 20:, cols 10:30 of each crop
    (40x40 first crops), or of the first crop's square inside a larger one (see the test)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for c in crops:
            self.seen.append(c.shape[:2])
            side = c.shape[0]
            p = np.zeros((side, side), np.float32)
            k = side / 40  # a larger crop shows the same face smaller: scale the block
            p[round(20 * k) :, round(10 * k) : round(30 * k)] = 0.9
            out.append(p)
        return out


def test_mask_reaching_the_crop_bottom_is_segmented_past_it() -> None:
    img = photo(150, 200)
    face = Face((80, 20, 120, 60), 0.9)  # crop rows 20:60, cols 80:120; photo goes on below
    seg = ChinSegmenter()
    res = segment_photo(img, FakeDetector([face]), seg)
    (f,) = res.faces
    # second pass: a square 1.5 x larger (60), same top, centred: rows 20:80, cols 70:130
    assert seg.seen == [(40, 40), (60, 60)] and f.extended
    # inside the first crop the first map stands: rows 40:60, cols 90:110
    assert res.mask[40:60, 90:110].all() and not res.mask[40:60, 80:90].any()
    # below it the larger crop's map fills in: its block is rows 20+30:80, cols 70+15:70+45
    assert res.mask[60:80, 85:115].all() and not res.mask[80:, :].any()
    assert f.mask_area == int(res.mask.sum()) == 20 * 20 + 20 * 30


def test_no_second_pass_at_the_photo_border_or_for_bare_faces() -> None:
    img = photo(60, 200)  # the crop's bottom edge is the photo's: nothing lies below
    seg = ChinSegmenter()
    res = segment_photo(img, FakeDetector([Face((80, 20, 120, 60), 0.9)]), seg)
    assert seg.seen == [(40, 40)] and not res.faces[0].extended
    low = BlockSegmenter(high=0.3, low=0.3)  # touches every edge, but no mask
    segment_photo(photo(150, 200), FakeDetector([Face((80, 20, 120, 60), 0.9)]), low)
    assert len(low.seen) == 1


class ChinCallsSegmenter(ChinSegmenter):
    """:class:`ChinSegmenter` that also records the crop sizes of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append([c.shape[0] for c in crops])
        return super().__call__(crops)


def batched_photos() -> list[tuple[np.ndarray, FakeDetector]]:
    """A photo whose mask goes past its crop, one at the photo's bottom border (no second crop),
    one without a face, one with two faces (both extended)."""
    return [
        (
            photo(
                150,
                200,
            ),
            FakeDetector([Face((80, 20, 120, 60), 0.9)]),
        ),
        (photo(60, 200), FakeDetector([Face((80, 20, 120, 60), 0.9)])),
        (photo(150, 200), FakeDetector([])),
        (
            photo(150, 200),
            FakeDetector([Face((20, 30, 60, 70), 0.9), Face((120, 20, 160, 60), 0.8)]),
        ),
    ]


def test_batched_second_crops_give_the_same_masks_as_one_photo_at_a_time() -> None:
    single = [segment_photo(img, det, ChinSegmenter()) for img, det in batched_photos()]
    seg = ChinCallsSegmenter()
    batcher = CropBatcher(seg)
    plans = [plan_photo(img, det) for img, det in batched_photos()]
    done = batcher.drain(list(enumerate(plans)))
    assert [d.key for d in done] == [0, 1, 2, 3] and not any(d.error for d in done)
    # all first crops in one call, then the second crops of photos 0 and 3 in one more
    assert seg.calls == [[40, 40, 40, 40], [60, 60, 60]] and batcher.calls == 2
    for d, ref in zip(done, single, strict=True):
        res = finish_photo(d.plan, d.probs, extensions=d.extensions)
        np.testing.assert_array_equal(res.prob, ref.prob)
        assert [f.extended for f in res.faces] == [f.extended for f in ref.faces]
    assert [f.extended for f in single[3].faces] == [True, True] and single[0].faces[0].extended


def test_second_crops_share_the_next_photos_call_and_keep_the_order() -> None:
    seg = ChinCallsSegmenter()
    batcher = CropBatcher(seg)
    (img0, det0), (img1, det1) = batched_photos()[0], batched_photos()[1]
    batcher.add("a", plan_photo(img0, det0))
    assert batcher.queued == 1 and batcher.run() == []  # its second crop is still to come
    assert batcher.queued == 1 and batcher.pending == 1
    batcher.add("b", plan_photo(img1, det1))
    done = batcher.run()  # a's second crop and b's first crop: one call
    assert seg.calls == [[40], [60, 40]] and [d.key for d in done] == ["a", "b"]
    assert done[0].extensions and not done[1].extensions and batcher.pending == 0


def test_a_failing_segmenter_fails_the_photos_of_its_call_only() -> None:
    calls = []

    def flaky(crops: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(crops))
        if len(calls) == 2:
            raise DataError("model broke")
        return ChinSegmenter()(crops)

    batcher = CropBatcher(flaky)
    (img0, det0), (img1, det1) = batched_photos()[0], batched_photos()[1]
    batcher.add("a", plan_photo(img0, det0))
    batcher.run()
    batcher.add("b", plan_photo(img1, det1))
    done = batcher.run()
    assert [(d.key, str(d.error)) for d in done] == [("a", "model broke"), ("b", "model broke")]
    batcher.add("c", plan_photo(img1, det1))
    (c,) = batcher.drain()
    assert c.key == "c" and c.error is None and len(c.probs) == 1


# -- whole-image rule ------------------------------------------------------------------------------


def test_no_face_no_paint() -> None:
    img = photo()
    seg = BlockSegmenter()
    det = FakeDetector([])
    res = segment_photo(img, det, seg)
    assert res.no_face and not res.whole_image and res.faces == []
    assert seg.seen == [] and res.mask_area == 0 and res.prob.max() == 0.0
    assert res.mask.shape == (100, 200)
    # the padded look happened: 0.5 x 200 grey on every side
    assert det.canvases == [(300, 400, 3)]
    data = res.to_json()
    assert data["no_face"] is True and data["faces"] == [] and data["masked"] is False


def test_face_crop_recognised_in_the_padded_view() -> None:
    img = photo(100, 100)
    # in the 200x200 canvas (pad 50) the face sits at (55, 50)-(145, 150): image (5, 0)-(95, 100)
    context = [Face((55, 50, 145, 150), 0.7, mouth_at(70, 70))]  # mouth at (20, 20) in the image
    det = FakeDetector([Face((40, 40, 60, 60), 0.6)], context=context)
    seg = BlockSegmenter()
    res = segment_photo(img, det, seg)
    # a face crop: the photo's own small face (0.6) does not outscore it by 0.1
    assert res.whole_image and det.calls == 1
    (f,) = res.faces
    assert f.box == (5, 0, 95, 100) and f.score == 0.7 and res.mask_area == 600


def test_a_false_face_sized_box_does_not_hide_a_scene_of_smaller_faces() -> None:
    img = photo(100, 100)
    context = [Face((55, 50, 145, 150), 0.7, mouth_at(70, 70))]  # fills the image when padded
    small = Face((40, 40, 60, 60), 0.8, mouth_at(50, 55))  # side 20 < 0.5 x 90, 0.1 higher
    res = segment_photo(img, FakeDetector([small], context=context), BlockSegmenter())
    assert not res.whole_image and [f.box for f in res.faces] == [(40, 40, 60, 60)]
    # the same veto in the rule itself, for faces found in the photo
    big = Face((5, 0, 95, 100), 0.7)
    assert is_face_crop([big], 100, 100, others=[Face((40, 40, 60, 60), 0.79)])
    assert not is_face_crop([big], 100, 100, others=[small])
    assert is_face_crop([big], 100, 100, others=[Face((30, 30, 80, 80), 0.9)])  # 50 px: not small


def test_single_big_face_segments_whole_image() -> None:
    img = photo(100, 100)
    face = Face((10, 5, 90, 95), 0.99, mouth_at(20, 20))  # side 90: clipped crop covers 81 %
    assert is_face_crop([face], 100, 100)
    seg = BlockSegmenter()
    res = segment_photo(img, FakeDetector([face]), seg)
    assert res.whole_image and len(seg.seen) == 1 and seg.seen[0].shape == (100, 100, 3)
    (fr,) = res.faces
    assert fr.crop_box == (0, 0, 100, 100) and fr.mask_area == 600 and fr.score == 0.99


def test_whole_image_cover_threshold() -> None:
    side = int(np.ceil(np.sqrt(WHOLE_IMAGE_COVER) * 100))  # smallest crop covering >= 60 %
    assert is_face_crop([Face((0, 0, side, side), 1.0)], 100, 100)
    # below both thresholds: crop = box (uncalibrated rule) 70x70 = 49 % < 50 % (box) and < 60 %
    assert not is_face_crop([Face((0, 0, 70, 70), 1.0)], 100, 100)
    assert is_face_crop([Face((0, 0, 71, 71), 1.0)], 100, 100)  # box 50.4 % >= FACE_BOX_COVER
    # a big face makes a crop even beside a spurious small detection (a chin, a mask pattern)
    assert is_face_crop([Face((70, 70, 90, 90), 0.7), Face((5, 5, 95, 95), 1.0)], 100, 100)
    # a tight crop whose face the detector places partly off-frame: box 80x80 = 64 % >= 50 %
    assert is_face_crop([Face((50, 10, 130, 90), 0.9)], 100, 100)
    # a smaller face near the edge is a face in a photo: 50x50 = 25 %
    assert not is_face_crop([Face((70, 10, 120, 60), 0.9)], 100, 100)
    # several faces, none filling the frame, are a photo
    assert not is_face_crop([Face((0, 0, 40, 40), 1.0), Face((55, 55, 95, 95), 1.0)], 100, 100)


def test_whole_image_flag_and_no_detector_skip_detection() -> None:
    img = photo()
    for res in (
        segment_photo(img, NeverDetector(), BlockSegmenter(), whole_image=True),
        segment_photo(img, None, BlockSegmenter()),
    ):
        assert res.whole_image and res.faces == [] and res.mask_area == 600


# -- result format and bad segmenter output ----------------------------------------------


def test_to_json_round_trip() -> None:
    img = photo()
    faces = [Face((20, 20, 60, 60), 0.9, np.array([[30, 35], [50, 35]], np.float32), "ssd")]
    res = segment_photo(img, FakeDetector(faces), BlockSegmenter())
    data = json.loads(json.dumps(res.to_json()))
    assert data["width"] == 200 and data["height"] == 100 and data["whole_image"] is False
    assert data["mask_area"] == res.mask_area and data["threshold"] == 0.5
    (f,) = data["faces"]
    assert f["crop_box"] == list(res.faces[0].crop_box) and f["detector"] == "ssd"
    assert f["landmarks"] == [[30.0, 35.0], [50.0, 35.0]]
    assert f["mask_area"] == res.faces[0].mask_area and f["polygons"] == res.faces[0].polygons
    assert data["polygons"] == res.polygons()


@pytest.mark.parametrize(
    ("segmenter", "message"),
    [
        (lambda cs: [], "returned 0 maps for 1 crops"),
        (lambda cs: [np.zeros((10, 10), np.float32) for _ in cs], "expected the crop's"),
        (lambda cs: [np.full(c.shape[:2], 3.0, np.float32) for c in cs], "apply a sigmoid"),
        (lambda cs: [np.full(c.shape[:2], np.nan, np.float32) for c in cs], "probability map"),
    ],
)
def test_bad_segmenter_output_is_a_clear_error(segmenter, message: str) -> None:
    with pytest.raises(DataError, match=message):
        segment_photo(photo(), FakeDetector([Face((20, 20, 60, 60), 1.0)]), segmenter)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="uint8"):
        segment_photo(np.zeros((10, 10, 3), np.float32), None, BlockSegmenter())
    with pytest.raises(DataError, match="HxWx3"):
        segment_photo(np.zeros((10, 10, 4), np.uint8), None, BlockSegmenter())
    with pytest.raises(DataError, match="threshold"):
        segment_photo(photo(), None, BlockSegmenter(), threshold=1.5)
    # a channel-last single-channel map is accepted
    res = segment_photo(photo(), None, lambda cs: [np.ones((*cs[0].shape[:2], 1), np.float32)])
    assert res.mask_area == 100 * 200


def test_degenerate_and_outside_boxes_are_dropped() -> None:
    faces = [Face((20, 20, 60, 60), 0.9), Face((30, 30, 30, 50), 0.8), Face((500, 5, 540, 45), 0.7)]
    res = segment_photo(photo(), FakeDetector(faces), BlockSegmenter())
    assert [f.box for f in res.faces] == [(20, 20, 60, 60)] and not res.whole_image
