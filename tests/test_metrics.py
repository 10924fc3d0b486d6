"""Tests of abanet.metrics: hand cases, scikit-learn and PySODMetrics agreement, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from py_sod_metrics import Emeasure, FmeasureHandler, FmeasureV2, Smeasure
from scipy.ndimage import gaussian_filter
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from abanet.errors import AbanetError
from abanet.metrics import (
    BINARY_KEYS,
    STRUCTURE_KEYS,
    SegmentationMetrics,
    batch_binary_scores,
    binary_scores,
    structure_scores,
    to_uint8,
)

PROB = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]])
GT = np.array([[1, 0, 0], [1, 1, 0]])


def _smooth_batch(b: int, h: int = 24, w: int = 28, seed: int = 0):
    """Blob-like probability maps and masks (structure measures need more than a few pixels)."""
    rng = np.random.default_rng(seed)
    probs, gts = [], []
    for _ in range(b):
        field = gaussian_filter(rng.standard_normal((h, w)), 3)
        gt = field > 0
        noisy = field + 0.5 * gaussian_filter(rng.standard_normal((h, w)), 2)
        probs.append(1 / (1 + np.exp(-noisy / noisy.std() * 3)))
        gts.append(gt)
    return np.stack(probs), np.stack(gts)


def _sklearn_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    y, yhat = gt.ravel().astype(int), pred.ravel().astype(int)
    return {
        "iou": jaccard_score(y, yhat, zero_division=1.0),
        "f1": f1_score(y, yhat, zero_division=1.0),
        "precision": precision_score(y, yhat, zero_division=1.0),
        "recall": recall_score(y, yhat, zero_division=1.0),
        "accuracy": accuracy_score(y, yhat),
    }


# --------------------------------------------------------------------------- binary


def test_binary_scores_hand_case():
    # pred = [[1,0,1],[0,1,0]]: TP 2, FP 1, FN 1, TN 2
    s = binary_scores(PROB, GT)
    assert s["iou"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["mae"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.6 + 0.3 + 0.1) / 6)
    assert set(s) == set(BINARY_KEYS)


def test_threshold_is_inclusive_and_matches_saved_8bit_masks():
    s = binary_scores(np.array([[0.5, 0.4999]]), np.array([[1, 0]]))
    assert s["iou"] == 1.0 and s["accuracy"] == 1.0
    p = np.concatenate([np.random.default_rng(1).random(1000), [0.5, 127.5 / 255, 0.4999]])
    assert np.array_equal(to_uint8(p) > 127, p >= 0.5)
    assert binary_scores(PROB, GT, threshold=0.75)["precision"] == pytest.approx(1.0)


def test_binary_scores_accepts_torch_and_shapes():
    ref = binary_scores(PROB, GT)
    t = binary_scores(torch.tensor(PROB, dtype=torch.float32)[None, None], torch.tensor(GT).bool())
    for k in BINARY_KEYS:
        assert t[k] == pytest.approx(ref[k], rel=1e-6)
    half = binary_scores(torch.tensor(PROB).half(), torch.tensor(GT, dtype=torch.float32))
    assert half["iou"] == pytest.approx(ref["iou"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_matches_sklearn_per_image_and_pooled(seed):
    rng = np.random.default_rng(seed)
    probs = rng.random((5, 7, 9))
    gts = rng.random((5, 7, 9)) > 0.55
    gts[0] = False  # an empty ground truth
    probs[1] = probs[1] * 0.4  # an empty prediction
    per = batch_binary_scores(probs, gts)
    m = SegmentationMetrics(structure=False)
    m.update(probs[:, None], gts[:, None])
    rows = m.per_image()
    for i in range(5):
        ref = _sklearn_scores(probs[i] >= 0.5, gts[i])
        for k, v in ref.items():
            assert per[k][i] == pytest.approx(v), (i, k)
            assert rows[i][k] == pytest.approx(v), (i, k)
    pooled = _sklearn_scores(probs >= 0.5, gts)
    out = m.compute()
    for k, v in pooled.items():
        assert out[f"dataset_{k}"] == pytest.approx(v), k
        assert out[k] == pytest.approx(np.mean(per[k])), k
    assert out["mae"] == pytest.approx(np.abs(probs - gts).mean())


def test_empty_mask_rules():
    empty = np.zeros((3, 4))
    full_prob = np.full((3, 4), 0.9)
    low_prob = np.full((3, 4), 0.1)
    some = np.zeros((3, 4))
    some[1, 1:3] = 1

    both = binary_scores(low_prob, empty)
    assert [both[k] for k in ("iou", "f1", "precision", "recall", "accuracy")] == [1.0] * 5
    assert both["mae"] == pytest.approx(0.1)

    fp_only = binary_scores(full_prob, empty)
    assert (fp_only["iou"], fp_only["f1"], fp_only["precision"], fp_only["recall"]) == (0, 0, 0, 1)
    assert fp_only["accuracy"] == 0.0

    fn_only = binary_scores(low_prob, some)
    assert (fn_only["iou"], fn_only["f1"], fn_only["precision"], fn_only["recall"]) == (0, 0, 1, 0)
    assert fn_only["accuracy"] == pytest.approx(10 / 12)

    for prob, gt in [(low_prob, empty), (full_prob, empty), (low_prob, some)]:
        ref = _sklearn_scores(prob >= 0.5, gt > 0)
        got = binary_scores(prob, gt)
        assert all(got[k] == pytest.approx(v) for k, v in ref.items())


def test_input_errors():
    with pytest.raises(AbanetError, match=r"probabilities in \[0, 1\].*apply sigmoid"):
        binary_scores(PROB * 4 - 2, GT)
    with pytest.raises(AbanetError, match="threshold 0..255 masks at 127"):
        binary_scores(PROB, GT * 255)
    with pytest.raises(AbanetError, match="differs from ground-truth shape"):
        binary_scores(PROB, GT[:, :2])
    with pytest.raises(AbanetError, match="one image"):
        binary_scores(np.stack([PROB, PROB]), np.stack([GT, GT]))
    with pytest.raises(AbanetError, match=r"\(H, W\), \(B, H, W\) or \(B, 1, H, W\)"):
        binary_scores(np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(AbanetError, match="probabilities"):
        binary_scores(np.array([[np.nan, 0.5]]), np.array([[0, 1]]))
    m = SegmentationMetrics(structure=False)
    with pytest.raises(AbanetError, match="no images were added"):
        m.compute()
    with pytest.raises(AbanetError, match="names must be a list of 2 names"):
        m.update(np.stack([PROB, PROB]), np.stack([GT, GT]), names=["a"])
    assert len(m) == 0  # a failed update adds nothing


# --------------------------------------------------------------------------- structure


def _pysod_direct(probs: np.ndarray, gts: np.ndarray, normalize: bool) -> dict[str, float]:
    fm = FmeasureV2({"fm": FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})
    sm, em = Smeasure(alpha=0.5), Emeasure()
    for p, g in zip(probs, gts, strict=True):
        u8 = np.rint(p * 255).astype(np.uint8)
        # PySOD's default path takes uint8 maps; normalize=False takes floats in [0, 1] and bool.
        args = (u8, g.astype(np.uint8) * 255) if normalize else (u8 / 255.0, g.astype(bool))
        for metric in (fm, sm, em):
            metric.step(*args, normalize=normalize)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {
        "fbeta_adaptive": f["adaptive"],
        "fbeta_max": f["dynamic"].max(),
        "smeasure": sm.get_results()["sm"],
        "emeasure_adaptive": e["adp"],
        "emeasure_mean": e["curve"].mean(),
        "emeasure_max": e["curve"].max(),
    }


@pytest.mark.parametrize("normalize", [False, True])
def test_structure_measures_equal_pysodmetrics(normalize):
    probs, gts = _smooth_batch(4)
    probs[3] *= 0.3  # a faint map: the min-max stretch changes it when normalize=True
    m = SegmentationMetrics(normalize=normalize)
    m.update(torch.from_numpy(probs)[:, None], torch.from_numpy(gts)[:, None])
    out = m.compute()
    ref = _pysod_direct(probs, gts, normalize)
    for k in STRUCTURE_KEYS:
        assert out[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k
    for i, row in enumerate(m.per_image()):
        one = _pysod_direct(probs[i : i + 1], gts[i : i + 1], normalize)
        assert {k: row[k] for k in STRUCTURE_KEYS} == pytest.approx(one, rel=1e-9, abs=1e-12)
        assert structure_scores(probs[i], gts[i], normalize=normalize) == pytest.approx(one)


def test_structure_pysod_default_path_matches_on_full_range_maps():
    # When the 8-bit map spans 0..255, PySOD's default (uint8 + min-max) equals our default.
    probs, gts = _smooth_batch(2, seed=3)
    probs[:, 0, 0], probs[:, 0, 1] = 0.0, 1.0
    ours = [structure_scores(p, g) for p, g in zip(probs, gts, strict=True)]
    theirs = [
        _pysod_direct(p[None], g[None], normalize=True) for p, g in zip(probs, gts, strict=True)
    ]
    for o, t in zip(ours, theirs, strict=True):
        assert o == pytest.approx(t)


def test_structure_empty_ground_truth_uses_unstretched_map():
    gt = np.zeros((16, 16), dtype=bool)
    prob = np.full((16, 16), 0.02)
    prob[4:8, 4:8] = 0.04
    s = structure_scores(prob, gt)
    assert s["smeasure"] == pytest.approx(1 - np.mean(np.rint(prob * 255) / 255))
    stretched = structure_scores(prob, gt, normalize=True)
    assert stretched["smeasure"] < 0.95  # the min-max stretch invents foreground


def test_compute_max_keys_are_max_of_mean_curve():
    probs, gts = _smooth_batch(3, seed=5)
    m = SegmentationMetrics()
    m.update(probs, gts)
    rows, out = m.per_image(), m.compute()
    assert out["fbeta_max"] <= np.mean([r["fbeta_max"] for r in rows]) + 1e-12
    assert out["emeasure_max"] <= np.mean([r["emeasure_max"] for r in rows]) + 1e-12
    for k in ("fbeta_adaptive", "smeasure", "emeasure_adaptive", "emeasure_mean"):
        assert out[k] == pytest.approx(np.mean([r[k] for r in rows]))


# --------------------------------------------------------------------------- streaming


def test_streaming_equals_one_batch_and_names():
    probs, gts = _smooth_batch(5, seed=7)
    names = [f"img{i}.jpg" for i in range(5)]
    whole = SegmentationMetrics()
    whole.update(probs[:, None], gts[:, None], names=names)
    parts = SegmentationMetrics()
    parts.update(torch.from_numpy(probs[:2]), torch.from_numpy(gts[:2]), names=names[:2])
    parts.update(probs[2], gts[2], names=names[2:3])  # a single (H, W) image
    parts.update(list(probs[3:]), list(gts[3:]), names=names[3:])  # a list of images
    assert len(parts) == 5
    assert parts.compute() == pytest.approx(whole.compute())
    assert [r["name"] for r in parts.per_image()] == names
    for a, b in zip(parts.per_image(), whole.per_image(), strict=True):
        assert a.pop("name") == b.pop("name")
        assert a == pytest.approx(b)


def test_mixed_sizes_default_names_and_reset():
    m = SegmentationMetrics(structure=False)
    m.update([PROB, np.full((4, 5), 0.8)], [GT, np.ones((4, 5))])
    m.update(PROB[None, None], GT[None, None])
    rows = m.per_image()
    assert [r["name"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"name", *BINARY_KEYS}
    assert rows[1]["iou"] == 1.0
    out = m.compute()
    assert out["images"] == 3
    assert out["iou"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # pooled: TP 2+20+2, FP 1+0+1, FN 1+0+1
    assert out["dataset_iou"] == pytest.approx(24 / 28)
    assert not any(k in out for k in STRUCTURE_KEYS)
    m.reset()
    assert len(m) == 0 and m.per_image() == []


def test_compute_keys():
    probs, gts = _smooth_batch(2)
    m = SegmentationMetrics()
    m.update(probs, gts)
    expected = {
        "iou", "f1", "precision", "recall", "accuracy", "mae", "fbeta_adaptive", "fbeta_max",
        "smeasure", "emeasure_adaptive", "emeasure_mean", "emeasure_max", "dataset_iou",
        "dataset_f1", "dataset_precision", "dataset_recall", "dataset_accuracy", "images",
    }  # fmt: skip
    assert set(m.compute()) == expected
    assert all(isinstance(v, float) for v in m.compute().values())
