"""Test-time refinements: flip averaging and hole filling, and how configs switch them on."""

from __future__ import annotations

import numpy as np
import torch

from abanet.inference.refine import fill_holes, flip_average
from abanet.inference.segmenter import Segmenter
from abanet.models.config import ModelConfig
from tests.fixtures import LowerHalfModel


def test_fill_holes_fills_enclosed_background_only() -> None:
    prob = np.zeros((9, 12), np.float32)
    prob[1:8, 1:6] = 0.9  # a ring with a 3x1 hole ...
    prob[3:6, 3] = 0.2
    prob[1:8, 7:11] = 0.8  # ... and a U open to the top: its notch touches the border
    prob[0:5, 8:10] = 0.1
    prob[0, :] = 0.0
    out = fill_holes(prob, 0.5)
    expected = prob.copy()
    expected[3:6, 3] = 1.0
    np.testing.assert_array_equal(out, expected)
    assert prob[4, 3] == np.float32(0.2)  # input untouched


def test_fill_holes_without_holes_returns_input() -> None:
    prob = np.zeros((5, 5), np.float32)
    assert fill_holes(prob) is prob
    prob[1:4, 1:4] = 1.0
    assert fill_holes(prob) is prob


def test_flip_average_by_hand() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)

    def run(t: torch.Tensor) -> torch.Tensor:  # not mirror-symmetric: keeps the left column only
        out = torch.zeros_like(t)
        out[..., 0] = t[..., 0]
        return out

    got = flip_average(run, x)
    # run(x): [[0,0,0],[3,0,0]]; mirror(run(mirror(x))): [[0,0,2],[0,0,5]]
    expected = torch.tensor([[[[0.0, 0.0, 1.0], [1.5, 0.0, 2.5]]]])
    torch.testing.assert_close(got, expected)


class LeftHalfModel(LowerHalfModel):
    """Mask on the left half: the mirrored prediction disagrees everywhere."""

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [super().forward_all(x)[0].transpose(-1, -2)]


def test_segmenter_follows_the_config_and_overrides() -> None:
    model = LeftHalfModel()
    image = np.zeros((64, 64, 3), np.uint8)
    plain = Segmenter(model, device="cpu", backend="eager", detector=None)
    assert not plain.flip_tta and not plain.fill_holes
    soft = plain.predict(image, soft=True)
    assert soft[10, 2] <= 1 and soft[10, 60] >= 254  # top-right is 0, bottom-left is 1
    model.config.flip_tta = True
    tta = Segmenter(model, device="cpu", backend="eager", detector=None)
    assert tta.flip_tta
    assert np.abs(tta.predict(image, soft=True).astype(int) - 128).max() <= 1  # sig(8)+sig(-8)=1
    off = Segmenter(model, device="cpu", backend="eager", detector=None, flip_tta=False)
    np.testing.assert_array_equal(off.predict(image, soft=True), soft)


def test_config_round_trip_keeps_refinements(tmp_path) -> None:
    cfg = ModelConfig(name="x", flip_tta=True, fill_holes=True)
    cfg.save(tmp_path / "c.json")
    back = ModelConfig.load(tmp_path / "c.json")
    assert back.flip_tta and back.fill_holes
    assert not ModelConfig.from_dict({"name": "old"}).flip_tta  # configs written before them
