"""Tests of abanet.losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from abanet.errors import AbanetError
from abanet.losses import (
    SSIM_C1,
    SSIM_C2,
    BCELoss,
    DiceLoss,
    FocalLoss,
    HybridLoss,
    IoULoss,
    SSIMLoss,
    bce_loss,
    build_loss,
    dice_loss,
    focal_loss,
    gaussian_window,
    iou_loss,
    list_losses,
    ssim,
    ssim_loss,
)

LOGITS = [[2.0, -1.0], [0.5, -3.0]]
TARGET = [[1.0, 0.0], [0.0, 1.0]]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, 2, 2)


def _pairs() -> list[tuple[float, float]]:
    return [
        (x, y) for rx, ry in zip(LOGITS, TARGET, strict=True) for x, y in zip(rx, ry, strict=True)
    ]


def _random_batch(b: int = 3, h: int = 16, w: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 1, h, w, generator=g) * 3
    target = (torch.rand(b, 1, h, w, generator=g) > 0.6).float()
    return logits, target


# --------------------------------------------------------------------------- focal


def test_focal_matches_hand_computation():
    alpha, gamma = 0.3, 2.0
    expected = 0.0
    for x, y in _pairs():
        p = _sig(x)
        if y == 1:
            expected += -alpha * (1 - p) ** gamma * math.log(p)
        else:
            expected += -(1 - alpha) * p**gamma * math.log(1 - p)
    expected /= 4
    got = focal_loss(_t(LOGITS), _t(TARGET))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert FocalLoss()(_t(LOGITS), _t(TARGET)).item() == pytest.approx(expected, rel=1e-5)


def test_focal_alpha_weights_the_positive_class():
    zeros = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    pos = focal_loss(zeros, torch.ones(1, 1, 2, 2), alpha=0.3, gamma=2.0).item()
    neg = focal_loss(zeros, torch.zeros(1, 1, 2, 2), alpha=0.3, gamma=2.0).item()
    # positive pixels: 0.3 * 0.5^2 * ln 2; negative pixels: 0.7 * 0.5^2 * ln 2
    assert pos == pytest.approx(0.3 * 0.25 * math.log(2), rel=1e-6)
    assert neg == pytest.approx(0.7 * 0.25 * math.log(2), rel=1e-6)
    assert pos < neg


def test_focal_gamma_zero_is_weighted_bce():
    logits, target = _random_batch()
    got = focal_loss(logits, target, alpha=0.5, gamma=0.0)
    ref = 0.5 * F.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(got, ref, rtol=1e-5)


# --------------------------------------------------------------------------- ssim


def _ssim_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Straight 2-D form (BASNet's pytorch_ssim style): one 11x11 conv with padding 5."""
    w = gaussian_window().view(1, 1, 11, 11)
    mu1, mu2 = F.conv2d(x, w, padding=5), F.conv2d(y, w, padding=5)
    s11 = F.conv2d(x * x, w, padding=5) - mu1 * mu1
    s22 = F.conv2d(y * y, w, padding=5) - mu2 * mu2
    s12 = F.conv2d(x * y, w, padding=5) - mu1 * mu2
    m = ((2 * mu1 * mu2 + SSIM_C1) * (2 * s12 + SSIM_C2)) / (
        (mu1 * mu1 + mu2 * mu2 + SSIM_C1) * (s11 + s22 + SSIM_C2)
    )
    return m.flatten(1).mean(1)


def test_gaussian_window_is_normalised_gaussian():
    w = gaussian_window()
    assert w.shape == (11, 11)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    assert w[5, 5].item() == pytest.approx((g[5] / sum(g)) ** 2, rel=1e-6)
    assert w[0, 5].item() == pytest.approx(g[0] * g[5] / sum(g) ** 2, rel=1e-6)


def test_ssim_single_pixel_hand_case():
    # A 1x1 image with zero padding 5: only the window's centre weight c sees the pixel.
    a_logit, b = 0.7, 1.0
    a = _sig(a_logit)
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    c = (g[5] / sum(g)) ** 2
    mu1, mu2 = c * a, c * b
    v1, v2, cov = c * a * a - mu1**2, c * b * b - mu2**2, c * a * b - mu1 * mu2
    expected_ssim = ((2 * mu1 * mu2 + 1e-4) * (2 * cov + 9e-4)) / (
        (mu1**2 + mu2**2 + 1e-4) * (v1 + v2 + 9e-4)
    )
    got = ssim_loss(torch.tensor([[[[a_logit]]]]), torch.tensor([[[[b]]]]))
    assert got.item() == pytest.approx(1 - expected_ssim, rel=1e-4)


def test_ssim_matches_2d_reference_and_hand_2x2():
    logits, target = _random_batch(b=2, h=13, w=9)
    got = ssim(torch.sigmoid(logits), target)
    assert torch.allclose(got, _ssim_reference(torch.sigmoid(logits), target), atol=1e-6)
    got_tiny = ssim_loss(_t(LOGITS), _t(TARGET))
    ref_tiny = 1 - _ssim_reference(torch.sigmoid(_t(LOGITS)), _t(TARGET))
    assert got_tiny.item() == pytest.approx(ref_tiny.item(), abs=1e-6)


def test_ssim_of_identical_maps_is_zero_loss():
    _, target = _random_batch()
    logits = (target * 2 - 1) * 100  # sigmoid gives exactly the target
    assert ssim_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    x = torch.rand(2, 1, 12, 12)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    assert SSIMLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- iou, dice, bce


def test_iou_hand_case():
    s = [_sig(x) for x, _ in _pairs()]
    g = [y for _, y in _pairs()]
    inter = sum(a * b for a, b in zip(s, g, strict=True))
    union = sum(a + b - a * b for a, b in zip(s, g, strict=True))
    got = iou_loss(_t(LOGITS), _t(TARGET))
    assert got.item() == pytest.approx(1 - inter / union, rel=1e-5)
    # logits 0 => S = 0.5: inter = 1, union = 2 + 2 - 1 = 3
    assert IoULoss()(torch.zeros(1, 1, 2, 2), _t(TARGET)).item() == pytest.approx(2 / 3, rel=1e-5)


def test_iou_and_dice_empty_cases():
    empty = torch.zeros(1, 1, 4, 4)
    very_neg = torch.full((1, 1, 4, 4), -100.0)
    very_pos = torch.full((1, 1, 4, 4), 100.0)
    # both empty: 0 loss instead of 0/0
    assert iou_loss(very_neg, empty).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(very_neg, empty).item() == pytest.approx(0.0, abs=1e-6)
    # empty target, full prediction: worst loss
    assert iou_loss(very_pos, empty).item() == pytest.approx(1.0, abs=1e-6)
    # full target, empty prediction: worst loss
    assert iou_loss(very_neg, torch.ones(1, 1, 4, 4)).item() == pytest.approx(1.0, abs=1e-6)


def test_dice_and_bce_hand_cases():
    s = [_sig(x) for x, _ in _pairs()]
    g = [y for _, y in _pairs()]
    inter = sum(a * b for a, b in zip(s, g, strict=True))
    expected_dice = 1 - 2 * inter / (sum(s) + sum(g))
    assert dice_loss(_t(LOGITS), _t(TARGET)).item() == pytest.approx(expected_dice, rel=1e-5)
    assert DiceLoss()(_t(LOGITS), _t(TARGET)).item() == pytest.approx(expected_dice, rel=1e-5)
    expected_bce = (
        -sum(y * math.log(p) + (1 - y) * math.log(1 - p) for p, y in zip(s, g, strict=True)) / 4
    )
    assert bce_loss(_t(LOGITS), _t(TARGET)).item() == pytest.approx(expected_bce, rel=1e-5)
    assert BCELoss()(_t(LOGITS), _t(TARGET)).item() == pytest.approx(expected_bce, rel=1e-5)


# --------------------------------------------------------------------------- batch, precision


@pytest.mark.parametrize("fn", [focal_loss, ssim_loss, iou_loss, dice_loss, bce_loss])
def test_batch_vectorisation_equals_per_sample_loop(fn):
    logits, target = _random_batch(b=4)
    per_image = fn(logits, target, reduction="none")
    loop = torch.stack([fn(logits[i : i + 1], target[i : i + 1]) for i in range(4)])
    assert per_image.shape == (4,)
    assert torch.allclose(per_image, loop, atol=1e-6)
    assert fn(logits, target).item() == pytest.approx(loop.mean().item(), abs=1e-6)


@pytest.mark.parametrize("name", ["focal", "ssim", "iou", "dice", "bce"])
def test_gradients_finite_for_extreme_logits(name):
    _, target = _random_batch()
    sign = torch.where(torch.rand_like(target) > 0.5, 1.0, -1.0)
    logits = (sign * 100.0).requires_grad_(True)  # many confidently wrong pixels
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_autocast_bf16_gives_float32_and_finite_grads():
    logits, target = _random_batch()
    logits = (logits * 40).requires_grad_(True)
    loss_fn = build_loss("focal+ssim+iou")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = logits * 1.0
        outs = [F.conv2d(x, torch.ones(1, 1, 1, 1)) for _ in range(3)]  # bf16 under autocast
        assert outs[0].dtype == torch.bfloat16
        loss = loss_fn(outs, target)
        single = focal_loss(outs[0], target)
    assert loss.dtype == torch.float32
    assert single.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    half = focal_loss(logits.detach().half(), target.half())
    assert half.dtype == torch.float32


# --------------------------------------------------------------------------- hybrid


def test_hybrid_default_is_focal_ssim_iou_and_sums_outputs():
    logits, target = _random_batch()
    loss_fn = HybridLoss()
    one = loss_fn(logits, target)
    expected = focal_loss(logits, target) + ssim_loss(logits, target) + iou_loss(logits, target)
    assert one.item() == pytest.approx(expected.item(), rel=1e-5)
    two = loss_fn([logits, logits], target)
    assert two.item() == pytest.approx(2 * one.item(), rel=1e-5)
    eight = loss_fn(tuple([logits] * 8), target)
    assert eight.item() == pytest.approx(8 * one.item(), rel=1e-5)


def test_hybrid_different_outputs_weights_and_components():
    logits, target = _random_batch()
    other = logits.flip(-1)
    loss_fn = HybridLoss({"focal": 2.0, "iou": 0.5}, output_weights=[1.0, 0.25])
    got = loss_fn([logits, other], target)

    def one(x: torch.Tensor) -> torch.Tensor:
        return 2.0 * focal_loss(x, target) + 0.5 * iou_loss(x, target)

    assert got.item() == pytest.approx((one(logits) + 0.25 * one(other)).item(), rel=1e-5)
    comps = loss_fn.last_components
    assert set(comps) == {"focal", "focal_sum", "iou", "iou_sum", "main", "total"}
    assert comps["focal"].item() == pytest.approx(focal_loss(logits, target).item(), rel=1e-5)
    ref_sum = focal_loss(logits, target) + 0.25 * focal_loss(other, target)
    assert comps["focal_sum"].item() == pytest.approx(ref_sum.item(), rel=1e-5)
    assert comps["main"].item() == pytest.approx(one(logits).item(), rel=1e-5)
    assert comps["total"].item() == pytest.approx(got.item(), rel=1e-6)
    assert not comps["total"].requires_grad


def test_hybrid_upsamples_small_outputs_bilinearly():
    logits, target = _random_batch(b=2, h=16, w=16)
    small = logits[..., ::2, ::2]
    loss_fn = HybridLoss()
    got = loss_fn([logits, small], target)
    up = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    assert got.item() == pytest.approx(
        (loss_fn(logits, target) + loss_fn(up, target)).item(), rel=1e-5
    )


def test_hybrid_accepts_3d_and_bool_targets():
    logits, target = _random_batch()
    loss_fn = HybridLoss()
    ref = loss_fn(logits, target).item()
    assert loss_fn(logits, target[:, 0].bool()).item() == pytest.approx(ref, rel=1e-6)
    assert loss_fn(logits[:, 0], target).item() == pytest.approx(ref, rel=1e-6)


def test_hybrid_focal_params_passed_through():
    logits, target = _random_batch()
    loss_fn = HybridLoss({"focal": 1.0}, focal_alpha=0.75, focal_gamma=1.0)
    ref = focal_loss(logits, target, alpha=0.75, gamma=1.0)
    assert loss_fn(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)


def test_hybrid_errors():
    logits, target = _random_batch()
    with pytest.raises(AbanetError, match="2 output weights for 3 outputs"):
        HybridLoss(output_weights=[1, 1])([logits] * 3, target)
    with pytest.raises(AbanetError, match="output 0 has shape"):
        HybridLoss()(logits[:2], target)
    with pytest.raises(AbanetError, match="no outputs"):
        HybridLoss()([], target)
    with pytest.raises(AbanetError, match="focal_alpha"):
        HybridLoss(focal_alpha=1.5)
    with pytest.raises(AbanetError, match="every component weight is 0"):
        HybridLoss({"focal": 0})
    with pytest.raises(AbanetError, match="unknown component 'lovasz'.*allowed: bce, dice"):
        HybridLoss({"lovasz": 1})


# --------------------------------------------------------------------------- build_loss


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("focal+ssim+iou", ["focal", "ssim", "iou"]),
        ("focal", ["focal"]),
        ("iou", ["iou"]),
        ("focal+iou", ["focal", "iou"]),
        ("bce+dice", ["bce", "dice"]),
        ("bce", ["bce"]),
        ("hybrid", ["focal", "ssim", "iou"]),
        (" Focal + IoU ", ["focal", "iou"]),
    ],
)
def test_build_loss_specs(spec, names):
    loss_fn = build_loss(spec)
    assert isinstance(loss_fn, HybridLoss)
    assert list(loss_fn.weights) == names
    assert all(w == 1.0 for w in loss_fn.weights.values())


def test_build_loss_weights_dict_and_kwargs():
    assert build_loss("0.5*bce+dice").weights == {"bce": 0.5, "dice": 1.0}
    loss_fn = build_loss({"focal": 1, "iou": 2}, focal_alpha=0.5, output_weights=[1.0] * 8)
    assert loss_fn.weights == {"focal": 1.0, "iou": 2.0}
    assert loss_fn.focal_alpha == 0.5
    assert loss_fn.output_weights == [1.0] * 8
    assert build_loss(loss_fn) is loss_fn
    assert list_losses() == ["bce", "dice", "focal", "iou", "ssim"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "focal+lovasz",
            "unknown component 'lovasz' in 'focal\\+lovasz'; allowed: bce, dice, focal",
        ),
        ("focal+focal", "listed twice"),
        ("focal++iou", "cannot read term ''"),
        ("", "cannot read term"),
    ],
)
def test_build_loss_errors(spec, message):
    with pytest.raises(AbanetError, match=message):
        build_loss(spec)
