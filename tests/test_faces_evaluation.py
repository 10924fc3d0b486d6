"""The detector-scoring rule of scripts/eval_face_detectors.py, checked on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abanet.faces.evaluation import box_iou, center_inside, match_detections, split_faces

LABELS = Path(__file__).resolve().parents[1] / "scripts" / "rmfd_face_labels.json"


def test_box_iou_by_hand() -> None:
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0


def test_center_inside() -> None:
    assert center_inside((0, 0, 10, 10), (4, 4, 6, 6))
    assert not center_inside((0, 0, 10, 10), (6, 6, 9, 9))


def test_hit_by_iou_or_by_centre() -> None:
    faces = [(0, 0, 100, 100), (200, 0, 300, 100)]
    # det 0: IoU 0.36 with face 0 ; det 1: a small box (IoU 0.04) centred inside face 1
    dets = [(20, 20, 80, 80), (240, 40, 260, 60)]
    r = match_detections(faces, dets, [0.9, 0.8])
    assert r.hits == [0, 1] and r.fp == 0 and r.fn == 0 and r.matched_detection == {0: 0, 1: 1}


def test_misses_false_positives_and_duplicates() -> None:
    faces = [(0, 0, 100, 100), (200, 0, 300, 100)]
    dets = [(0, 0, 100, 100), (5, 5, 95, 95), (500, 500, 600, 600)]
    r = match_detections(faces, dets, [0.9, 0.8, 0.7])
    assert r.tp == 1 and r.fn == 1
    assert r.false_positives == [1, 2]  # the duplicate and the stray box


def test_higher_score_matches_first() -> None:
    faces = [(0, 0, 100, 100)]
    r = match_detections(faces, [(0, 0, 100, 100), (0, 0, 90, 90)], [0.1, 0.9])
    assert r.matched_detection == {0: 1} and r.false_positives == [0]


def test_small_faces_and_ignore_regions_are_neutral() -> None:
    faces = [(0, 0, 100, 100), (300, 300, 310, 310)]  # the 2nd is 10 px tall -> ignored
    ignore = [(400, 0, 500, 100)]
    dets = [(300, 300, 310, 310), (420, 20, 480, 80), (0, 0, 100, 100)]
    r = match_detections(faces, dets, [0.5, 0.5, 0.5], ignore, min_face_height=16)
    assert r.n_faces == 1 and r.tp == 1 and r.fp == 0 and sorted(r.ignored) == [0, 1]
    counted, regions = split_faces(faces, ignore, 16)
    assert counted == [(0, 0, 100, 100)] and len(regions) == 2


def test_score_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 detections but 1 scores"):
        match_detections([], [(0, 0, 1, 1), (0, 0, 2, 2)], [0.5])


def test_label_file_is_consistent() -> None:
    data = json.loads(LABELS.read_text())
    images = data["images"]
    assert len(images) >= 100
    n_faces = 0
    for rel, lab in images.items():
        assert rel.startswith("images/") and rel not in data["excluded_duplicates"]
        w, h = lab["size"]
        for x1, y1, x2, y2 in lab["faces"] + lab["ignore"]:
            assert 0 <= x1 < x2 <= w + 0.5 and 0 <= y1 < y2 <= h + 0.5, rel
        n_faces += sum(1 for f in lab["faces"] if f[3] - f[1] >= 16)
    assert n_faces >= 100
