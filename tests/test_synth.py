"""Synthetic masked-face factory: templates, landmarks geometry, rendering, dataset writing, CLI.

Everything runs on hand-made fixtures (fake templates, drawn faces, hand-given landmarks) and the
shipped sample photos (landmarks from the vendored MediaPipe face mesh)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from abanet.errors import AbanetError, DataError
from abanet.synth import (
    AnchorParams,
    PlacementError,
    SynthOptions,
    canonical_landmarks,
    check_landmarks,
    choose_template,
    generate,
    item_rng,
    load_templates,
    mask_anchors,
    parse_masks_cfg,
    restyle_mask,
    synthesize,
    yaw_ratio,
)
from abanet.synth.grid import make_grid
from abanet.synth.templates import default_templates_dir

TEMPLATE_RGB = (220, 30, 30)  # pure red masks on green faces: alignment is checkable by colour
FACE_RGB = (90, 170, 90)

CFG = """\
; fake templates in MaskTheFace's masks.cfg format
[fake]
template:   masks/templates/fake.png
mask_a:     10, 30
mask_b:     100, 8
mask_c:     190, 30
mask_d:     20, 110
mask_e:     100, 150
mask_f:     180, 110

;[fake_left]
;template:   masks/fake_old.png
;mask_a:     0, 0

[fake_left]
template: masks/templates/fake_left.png
mask_c: 190, 30
mask_b: 40, 8
mask_a: 10, 30
mask_f: 180, 110
mask_e: 45, 150
mask_d: 20, 110

[empty]
[inpaint_right]
"""


def _template_png(path: Path, anchors: list[tuple[int, int]]) -> None:
    """A 200x160 RGBA template: a red polygon through the six anchors (a b c f e d), rest clear."""
    img = np.zeros((160, 200, 4), np.uint8)
    a, b, c, d, e, f = anchors
    poly = np.array([a, b, c, f, e, d], np.int32)
    cv2.fillPoly(img, [poly], (*TEMPLATE_RGB, 255))
    img[..., :3] = np.where(img[..., 3:] > 0, img[..., :3], 0)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))


@pytest.fixture()
def templates_dir(tmp_path: Path) -> Path:
    root = tmp_path / "mask-templates"
    (root / "templates").mkdir(parents=True)
    (root / "textures" / "check").mkdir(parents=True)
    (root / "masks.cfg").write_text(CFG)
    _template_png(
        root / "templates" / "fake.png",
        [(10, 30), (100, 8), (190, 30), (20, 110), (100, 150), (180, 110)],
    )
    _template_png(
        root / "templates" / "fake_left.png",
        [(10, 30), (40, 8), (190, 30), (20, 110), (45, 150), (180, 110)],
    )
    tex = np.zeros((16, 16, 3), np.uint8)
    tex[::4] = 255
    cv2.imwrite(str(root / "textures" / "check" / "stripes.png"), tex)
    return root


def _face(size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A drawn green face with dark eyes and mouth, and its 68 landmarks given by hand."""
    lm = canonical_landmarks(0.2 * size, 0.15 * size, 0.6 * size, 0.75 * size)
    img = np.full((size, size, 3), 60, np.uint8)
    jaw = lm[0:17].round().astype(np.int32)
    top = np.array([[lm[16, 0], 0.05 * size], [lm[0, 0], 0.05 * size]], np.int32)
    cv2.fillPoly(img, [np.vstack([jaw, top])], FACE_RGB)
    for idx in (slice(36, 42), slice(42, 48), slice(48, 60)):
        cv2.fillPoly(img, [lm[idx].round().astype(np.int32)], (30, 40, 30))
    return img, lm


QUIET = SynthOptions(size=96, p_hand=0.0, p_hair=0.0, p_loose=0.0, p_keep_colour=1.0)


# ----------------------------------------------------------------------------- templates


def test_parse_masks_cfg_reads_anchors_skips_comments_and_empty(templates_dir: Path) -> None:
    cfg = parse_masks_cfg(templates_dir / "masks.cfg")
    assert sorted(cfg) == ["fake", "fake_left"]
    np.testing.assert_array_equal(
        cfg["fake_left"]["anchors"],
        [[10, 30], [40, 8], [190, 30], [20, 110], [45, 150], [180, 110]],
    )  # keys out of order in the file still land as a..f


def test_parse_masks_cfg_missing_anchor_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "masks.cfg"
    cfg.write_text("[x]\ntemplate: x.png\nmask_a: 1, 2\n")
    with pytest.raises(DataError, match=r"masks\.cfg.*\[x\].*mask_b"):
        parse_masks_cfg(cfg)


def test_load_templates_views_textures_and_scaling(templates_dir: Path) -> None:
    ts = load_templates(templates_dir, max_side=100)
    by = {t.name: t for t in ts.templates}
    assert {(t.family, t.view) for t in ts.templates} == {("fake", "front"), ("fake", "left")}
    assert by["fake"].rgba.shape == (80, 100, 4)  # 200x160 shrunk to a 100 px long side
    np.testing.assert_allclose(by["fake"].anchors[1], [50, 4])  # anchors scaled with it
    assert by["fake"].yaw_ratio == pytest.approx(0.5)
    assert by["fake_left"].yaw_ratio == pytest.approx(30 / 180)
    assert len(ts.textures) == 1 and ts.textures[0].shape == (16, 16, 3)


def test_load_templates_errors_name_the_problem(tmp_path: Path, templates_dir: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_templates(tmp_path / "nope")
    (templates_dir / "templates" / "fake_left.png").unlink()
    with pytest.raises(DataError, match=r"fake_left\.png.*not found"):
        load_templates(templates_dir)


def test_default_templates_dir_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work" / "main"
    work.mkdir(parents=True)
    with pytest.raises(DataError, match="--templates"):
        default_templates_dir(work)
    shared = tmp_path / "work" / "shared" / "data" / "mask-templates"
    shared.mkdir(parents=True)
    (shared / "masks.cfg").write_text("")
    monkeypatch.chdir(work)
    assert default_templates_dir() == shared.resolve()


# ----------------------------------------------------------------------------- landmarks


def test_mask_anchors_on_a_frontal_face() -> None:
    lm = canonical_landmarks(0, 0, 100, 100)
    a, b, c, d, e, f = mask_anchors(lm, AnchorParams(bridge=0.5, top=0.2, bottom=0.7, chin_drop=0))
    eye_y = lm[36:48, 1].mean()
    assert b[0] == pytest.approx(50) and eye_y < b[1] < lm[30, 1]  # on the nose bridge
    np.testing.assert_allclose(e, lm[8])  # chin
    assert a[0] < 10 and c[0] > 90 and a[1] == pytest.approx(c[1])  # jaw sides, symmetric
    assert d[1] > a[1] and f[1] > c[1] and d[1] < e[1]
    # a and c lie on the jaw polyline at 20 % of the bridge-to-chin height
    assert a[1] == pytest.approx(b[1] + 0.2 * (e[1] - b[1]))


def test_yaw_ratio_follows_the_nose() -> None:
    lm = canonical_landmarks(0, 0, 100, 100)
    assert yaw_ratio(lm) == pytest.approx(0.5, abs=0.01)
    turned = lm.copy()
    turned[27:36, 0] -= 25  # nose moved towards the image left
    assert yaw_ratio(turned) < 0.3


def test_check_landmarks_rejects_nonsense() -> None:
    lm = canonical_landmarks(20, 20, 100, 120)
    assert check_landmarks(lm, (160, 140)) is None
    upside_down = lm.copy()
    upside_down[:, 1] = 160 - upside_down[:, 1]
    assert check_landmarks(upside_down, (160, 140)) is not None
    assert "68x2" in check_landmarks(lm[:5], (160, 140))
    assert check_landmarks(lm + 500, (160, 140)) is not None  # off the image


def test_choose_template_picks_view_by_yaw(templates_dir: Path) -> None:
    ts = load_templates(templates_dir)
    lm = canonical_landmarks(0, 0, 100, 100)
    turned = lm.copy()
    turned[27:36, 0] -= 25
    rng = np.random.default_rng(0)
    assert {choose_template(ts.templates, lm, rng).view for _ in range(20)} == {"front"}
    assert {choose_template(ts.templates, turned, rng).view for _ in range(20)} == {"left"}


# ----------------------------------------------------------------------------- rendering


def test_synthesize_geometry_and_alignment(templates_dir: Path) -> None:
    ts = load_templates(templates_dir)
    face, lm = _face()
    front = next(t for t in ts.templates if t.view == "front")
    for seed in range(6):
        info: dict = {}
        img, mask = synthesize(
            face, lm, front, np.random.default_rng(seed), options=QUIET, info=info
        )
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert mask.shape == (96, 96) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        m = mask > 127
        frac = m.mean()
        assert 0.15 <= frac <= 0.65, frac
        # the mask sits in the lower face: centroid below the eye line and the nose bridge top
        to_crop = np.array(info["face_to_crop"])
        pts = np.c_[lm, np.ones(68)] @ to_crop.T
        pts = pts[:, :2] / pts[:, 2:]
        cy = np.nonzero(m)[0].mean()
        assert cy > pts[36:48, 1].mean() and cy > pts[27, 1]
        # image and mask aligned: red template under the mask, the green face outside it
        k = np.ones((5, 5), np.uint8)
        inner = cv2.erode(m.astype(np.uint8), k) > 0
        outer = (cv2.dilate(m.astype(np.uint8), k, iterations=2) == 0) & (pts[8, 1] > 0)
        rg = img[..., 0].astype(int) - img[..., 1].astype(int)
        assert rg[inner].mean() > 80, "pixels under the mask should be the template's red"
        face_px = outer.copy()
        face_px[: int(pts[36:48, 1].mean()) - 2] = False  # skin between eyes and mask
        face_px[int(pts[36:48, 1].mean()) + 6 :] = False
        assert rg[face_px].mean() < -20, "pixels off the mask should keep the green face"


def test_synthesize_is_deterministic_per_rng(templates_dir: Path) -> None:
    ts = load_templates(templates_dir)
    face, lm = _face()
    opts = SynthOptions(size=80, p_hand=0.5, p_hair=0.5)
    t = ts.templates[0]
    a = synthesize(face, lm, t, np.random.default_rng(5), textures=ts.textures, options=opts)
    b = synthesize(face, lm, t, np.random.default_rng(5), textures=ts.textures, options=opts)
    c = synthesize(face, lm, t, np.random.default_rng(6), textures=ts.textures, options=opts)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_synthesize_rejects_bad_landmarks(templates_dir: Path) -> None:
    ts = load_templates(templates_dir)
    face, lm = _face()
    lm[:, 1] = face.shape[0] - lm[:, 1]  # upside down
    with pytest.raises(PlacementError, match="landmarks rejected") as exc:
        synthesize(face, lm, ts.templates[0], np.random.default_rng(0))
    assert exc.value.reason == "landmarks rejected"
    with pytest.raises(PlacementError, match="uint8"):
        synthesize(face.astype(np.float32), _face()[1], ts.templates[0], np.random.default_rng(0))


def test_hand_occluder_label_conventions(templates_dir: Path) -> None:
    ts = load_templates(templates_dir)
    face, lm = _face()
    t = next(t for t in ts.templates if t.view == "front")
    base = dict(size=96, p_hand=1.0, p_hair=0.0, p_loose=0.0)
    none = SynthOptions(size=96, p_hand=0.0, p_hair=0.0, p_loose=0.0)
    masks = {}
    for label in ("mfsd", "exclude"):
        info: dict = {}
        opts = SynthOptions(**base, occluder_label=label)
        _, masks[label] = synthesize(face, lm, t, np.random.default_rng(3), options=opts, info=info)
        assert info["occluders"] == ["hand"]
    _, plain = synthesize(face, lm, t, np.random.default_rng(3), options=none)
    mfsd, excl = masks["mfsd"] > 0, masks["exclude"] > 0
    assert (mfsd >= excl).all() and mfsd.sum() > excl.sum()  # the hand counts only under mfsd
    assert excl.sum() < (plain > 0).sum() <= mfsd.sum()
    with pytest.raises(AbanetError, match="occluder_label"):
        SynthOptions(occluder_label="maybe")


# ----------------------------------------------------------------------------- dataset factory


def _faces_dir(tmp_path: Path) -> tuple[Path, Path]:
    """Three tiny faces; landmarks.json gives two of them landmarks and one null."""
    faces = tmp_path / "faces"
    (faces / "sub").mkdir(parents=True)
    marks = {}
    for i, name in enumerate(["a.jpg", "b.png", "sub/c.jpg"]):
        img, lm = _face(96 + 8 * i)
        cv2.imwrite(str(faces / name), img[..., ::-1])
        marks[name] = lm.tolist()
    marks["sub/c.jpg"] = None
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(marks))
    return faces, path


def _read_all(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".jpg", ".png")
    }


def test_generate_writes_pairs_counts_skips_and_is_deterministic(
    tmp_path: Path, templates_dir: Path
) -> None:
    faces, marks = _faces_dir(tmp_path)
    out = tmp_path / "out"
    rep = generate(
        faces,
        out,
        5,
        seed=3,
        templates_dir=templates_dir,
        size=64,
        landmarks_file=marks,
        progress=False,
    )
    assert (rep.faces_total, rep.faces_usable, rep.faces_skipped) == (3, 2, 1)
    assert rep.faces_skipped_by_reason == {"no landmarks given": 1}
    assert rep.written + rep.skipped == 5 and rep.written >= 4
    names = sorted(p.stem for p in (out / "images").glob("*.jpg"))
    assert names == sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert len(names) == rep.written
    for name in names:
        img = cv2.imread(str(out / "images" / f"{name}.jpg"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255} and (mask > 0).any()
    summary = json.loads((out / "synth.json").read_text())
    assert summary["counts"]["written"] == rep.written
    assert summary["faces"]["skipped"] == 1 and summary["args"]["seed"] == 3
    assert not list(out.rglob(".*tmp*"))  # no temp files left behind

    # same seed elsewhere -> same bytes; another seed -> different bytes
    again = tmp_path / "again"
    generate(
        faces,
        again,
        5,
        seed=3,
        templates_dir=templates_dir,
        size=64,
        landmarks_file=marks,
        progress=False,
    )
    assert _read_all(out) == _read_all(again)
    other = tmp_path / "other"
    generate(
        faces,
        other,
        5,
        seed=4,
        templates_dir=templates_dir,
        size=64,
        landmarks_file=marks,
        progress=False,
    )
    assert _read_all(out) != _read_all(other)


@pytest.mark.slow  # two spawned workers each import the package (and torch): seconds, not ms
def test_generate_same_bytes_with_two_workers(tmp_path: Path, templates_dir: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    kw = dict(templates_dir=templates_dir, size=48, landmarks_file=marks, progress=False)
    generate(faces, tmp_path / "w1", 6, 11, workers=1, **kw)
    generate(faces, tmp_path / "w2", 6, 11, workers=2, **kw)
    assert _read_all(tmp_path / "w1") == _read_all(tmp_path / "w2")
    assert len(_read_all(tmp_path / "w1")) >= 10


def test_generate_counts_faces_whose_placement_fails(tmp_path: Path, templates_dir: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    data = json.loads(marks.read_text())
    bad = np.array(data["a.jpg"])
    bad[:, 1] = 96 - bad[:, 1]  # upside down: passes the file check, fails on the image
    data["a.jpg"] = bad.tolist()
    marks.write_text(json.dumps(data))
    rep = generate(
        faces,
        tmp_path / "out",
        6,
        0,
        templates_dir=templates_dir,
        size=48,
        landmarks_file=marks,
        progress=False,
    )
    assert rep.faces_usable == 2
    assert rep.skipped_by_reason.get("landmarks rejected", 0) == 3  # half the items use a.jpg
    assert rep.written == 3 and rep.written + rep.skipped == 6


def test_generate_never_overwrites_unless_asked(tmp_path: Path, templates_dir: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    out = tmp_path / "out"
    kw = dict(templates_dir=templates_dir, size=48, landmarks_file=marks, progress=False)
    generate(faces, out, 3, 1, **kw)
    first = out / "images" / "synth_000000.jpg"
    first.write_bytes(b"user file")
    rep = generate(faces, out, 4, 1, **kw)  # same settings: resume, keep what is there
    assert first.read_bytes() == b"user file"
    assert rep.existing == 3 and rep.written == 1
    with pytest.raises(DataError, match=r"synth\.json.*other settings.*seed"):
        generate(faces, out, 3, 2, **kw)
    rep = generate(faces, out, 3, 1, overwrite=True, **kw)
    assert rep.written == 3 and first.read_bytes()[:2] == b"\xff\xd8"


def test_generate_bad_inputs(tmp_path: Path, templates_dir: Path) -> None:
    with pytest.raises(DataError, match="faces folder not found"):
        generate(tmp_path / "none", tmp_path / "o", 1, templates_dir=templates_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        generate(tmp_path / "empty", tmp_path / "o", 1, templates_dir=templates_dir)
    faces, _ = _faces_dir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a.jpg": [[1, 2]]}')
    with pytest.raises(DataError, match=r"bad\.json.*a\.jpg.*68x2"):
        generate(faces, tmp_path / "o", 1, templates_dir=templates_dir, landmarks_file=bad)


def test_make_grid(tmp_path: Path, templates_dir: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    out = tmp_path / "out"
    generate(
        faces, out, 3, 0, templates_dir=templates_dir, size=48, landmarks_file=marks, progress=False
    )
    dest = make_grid(out, tmp_path / "grid.jpg", count=3, cols=2, tile=40)
    sheet = cv2.imread(str(dest))
    assert sheet.shape == (2 * 80, 2 * 40, 3)  # 2 rows of (image over overlay), 2 columns
    with pytest.raises(DataError, match="already exists"):
        make_grid(out, dest)


# ----------------------------------------------------------------------------- CLI


def _cli() -> typer.Typer:
    from abanet.cli.main import app

    return app


def test_cli_synth_on_three_tiny_faces(tmp_path: Path, templates_dir: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    out = tmp_path / "cli-out"
    args = [
        "synth",
        "--faces",
        str(faces),
        "--out",
        str(out),
        "-n",
        "4",
        "--seed",
        "5",
        "--size",
        "64",
        "--templates",
        str(templates_dir),
        "--landmarks",
        str(marks),
        "--no-progress",
    ]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    assert "faces: 2/3 usable" in res.output and "4 written" in res.output
    assert len(list((out / "images").glob("*.jpg"))) == 4
    assert len(list((out / "masks").glob("*.png"))) == 4
    res = CliRunner().invoke(_cli(), ["synth-grid", str(out), "--dest", str(tmp_path / "g.jpg")])
    assert res.exit_code == 0 and (tmp_path / "g.jpg").is_file()


def test_cli_synth_missing_templates_is_one_line_error(tmp_path: Path) -> None:
    faces, marks = _faces_dir(tmp_path)
    args = [
        "synth",
        "--faces",
        str(faces),
        "--out",
        str(tmp_path / "o"),
        "-n",
        "1",
        "--templates",
        str(tmp_path / "missing"),
        "--landmarks",
        str(marks),
    ]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0
    assert "error:" in res.output and "missing" in res.output


# ----------------------------------------------------------------------------- face-mesh landmarks


@pytest.fixture(scope="module")
def mesh():
    from abanet.synth import MeshLandmarker

    return MeshLandmarker()


def test_mesh_landmarker_finds_nothing_on_a_blank_image(mesh) -> None:
    lm, why = mesh(np.full((120, 100, 3), 128, np.uint8))
    assert lm is None and why == "no face found"


def test_mesh_landmarks_follow_the_68_point_layout_on_a_real_face(mesh) -> None:
    from abanet.data.io import read_image
    from abanet.inference.segmenter import default_samples_dir
    from abanet.synth.landmarks import yaw_ratio

    rgb = read_image(default_samples_dir() / "sample_surgical.jpg")
    lm, how = mesh(rgb)
    assert how == "detector" and lm.shape == (68, 2)
    assert check_landmarks(lm, rgb.shape) is None
    assert lm[0, 0] < lm[30, 0] < lm[16, 0]  # jaw ends either side of the nose tip
    assert lm[36:42, 0].max() < lm[42:48, 0].min()  # eye 36-41 on the image left
    assert lm[48, 0] < lm[51, 0] < lm[54, 0] and lm[51, 1] < lm[57, 1]  # lip corners, top, bottom
    assert lm[19, 1] < lm[37, 1] < lm[30, 1] < lm[51, 1] < lm[8, 1]  # brow, eye, nose, lip, chin
    # the mirrored face gives the mirrored head turn: the mapping is left/right consistent
    flipped, _ = mesh(np.ascontiguousarray(rgb[:, ::-1]))
    assert yaw_ratio(flipped) == pytest.approx(1 - yaw_ratio(lm), abs=0.05)


def test_generate_finds_landmarks_itself(tmp_path: Path, templates_dir: Path) -> None:
    """No --landmarks: the mesh finds them, and the next run reuses OUT/landmarks.json."""
    from abanet.inference.segmenter import default_samples_dir

    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "face.jpg").write_bytes((default_samples_dir() / "sample_surgical.jpg").read_bytes())
    cv2.imwrite(str(faces / "blank.png"), np.full((80, 80, 3), 128, np.uint8))
    out = tmp_path / "out"
    args = dict(templates_dir=templates_dir, size=64, progress=False)
    rep = generate(faces, out, 2, seed=0, **args)
    assert (rep.faces_usable, rep.faces_skipped_by_reason) == (1, {"no face found": 1})
    assert rep.written >= 1
    cache = json.loads((out / "landmarks.json").read_text())
    assert cache["detector"] == "mediapipe-mesh-68"
    assert len(cache["faces"]["face.jpg"]["landmarks"]) == 68


def test_item_rng_depends_on_seed_and_index_only() -> None:
    a = item_rng(1, 7).integers(1 << 30, size=4)
    np.testing.assert_array_equal(a, item_rng(1, 7).integers(1 << 30, size=4))
    assert not np.array_equal(a, item_rng(1, 8).integers(1 << 30, size=4))
    assert not np.array_equal(a, item_rng(2, 7).integers(1 << 30, size=4))


def test_options_from_settings_parses_checks_and_names_bad_keys() -> None:
    from abanet.synth.render import options_from_settings

    o = options_from_settings(["p_texture=0", "max_rotation=5"], size=128)
    assert (o.p_texture, o.max_rotation, o.size) == (0.0, 5.0, 128)
    assert o.p_hand == SynthOptions().p_hand
    with pytest.raises(AbanetError, match="p_textur.*KEY one of"):
        options_from_settings(["p_textur=0"])
    with pytest.raises(AbanetError, match="not a number"):
        options_from_settings(["p_hand=lots"])
    with pytest.raises(AbanetError, match=r"p_hand is a probability in \[0, 1\], got 1.5"):
        options_from_settings(["p_hand=1.5"])


# ----------------------------------------------------------------------------- restyle_mask


def test_restyle_mask_repaints_inside_only_and_keeps_shading() -> None:
    image = np.full((40, 50, 3), 90, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[20:34, 10:40] = True
    image[mask] = (150, 190, 230)  # a light-blue "template"
    image[26:28, 10:40] = (100, 127, 153)  # a darker pleat across it
    options = SynthOptions(p_keep_colour=0.0, p_texture=0.0, p_camo=0.0)
    out, desc = restyle_mask(image, mask, np.random.default_rng(0), options=options)
    assert desc.startswith("colour:")
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])  # outside: untouched
    assert np.abs(out[mask].astype(int) - image[mask]).max() > 30  # inside: a new colour
    flat, pleat = out[22, 20].astype(float).mean(), out[27, 20].astype(float).mean()
    assert pleat < flat  # the pleat's shading survives the repaint


def test_restyle_mask_is_deterministic_and_checks_inputs() -> None:
    image = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[8:14, 2:14] = 1
    a, _ = restyle_mask(image, mask, np.random.default_rng(5))
    b, _ = restyle_mask(image, mask, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(AbanetError, match="does not match"):
        restyle_mask(image, mask[:8], np.random.default_rng(0))
    with pytest.raises(PlacementError, match="empty"):
        restyle_mask(image, np.zeros_like(mask), np.random.default_rng(0))
    with pytest.raises(AbanetError, match="uint8 HxWx3"):
        restyle_mask(image[..., 0], mask, np.random.default_rng(0))
