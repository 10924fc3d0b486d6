"""Table 4's methods: the U-Nets of Din et al. and Geng et al., Mask R-CNN (its own training
loss through the engine's hook) and GrabCut (untrained, saved and evaluated like any model)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import abanet
from abanet.data.preprocess import resolve_data_config
from abanet.engine.module import SegmentationModule
from abanet.engine.training import train
from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.grabcut import initial_labels
from abanet.models.grabcut.model import LOGIT
from abanet.models.maskrcnn import mask_targets
from abanet.models.maskrcnn.model import PROB_EPS
from tests.fixtures import ellipse_dataset
from tests.test_engine import tiny_config
from tests.test_models import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ U-Nets
def test_unets_follow_their_papers_and_train_from_scratch() -> None:
    with torch.device("meta"):
        geng = abanet.create_model("geng_unet")
        din = abanet.create_model("din_unet")
    # Ronneberger et al.'s U-Net (64..1024 channels, padded convs): 31.0 M parameters
    assert sum(p.numel() for p in geng.parameters()) == pytest.approx(31.03e6, rel=1e-3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in geng.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in geng.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in din.modules())
    assert (geng.config.size_divisor, din.config.size_divisor) == (16, 16)
    narrow = abanet.create_model("din_unet", base_channels=4, depth=3).eval()
    assert narrow.config.size_divisor == 8
    assert narrow(torch.zeros(2, 3, 24, 40)).shape == (2, 1, 24, 40)
    with pytest.raises(ModelError, match="geng_unet: has no ImageNet encoder.*weights=null"):
        abanet.create_model("geng_unet", encoder_weights="imagenet")


# ------------------------------------------------------------------------------------ GrabCut
def test_grabcut_initial_labels_from_landmarks() -> None:
    # eyes at y 40, nose tip (50, 60), mouth (50, 80), ears at x 10 and 90, in a 100x100 crop
    pts = np.array([[35, 40], [65, 40], [50, 60], [50, 80], [10, 50], [90, 50]], np.float32)
    labels = initial_labels((100, 100), pts)
    expected = np.full((100, 100), cv2.GC_BGD, np.uint8)
    expected[50:, 10:90] = cv2.GC_PR_FGD  # nose bridge (60 - 20/2) to the bottom, ear to ear
    expected[70:91, 40:61] = cv2.GC_FGD  # the mouth +- round(0.12 * 80) = 10
    np.testing.assert_array_equal(labels, expected)


def face_with_mask(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A light face-like ellipse on a mid-grey ground, a dark rectangle (the mask) on its lower
    half; returns the RGB image and the rectangle's {0, 1} map."""
    image = np.full((size, size, 3), 120, np.uint8)
    cv2.ellipse(image, (size // 2, size // 2), (52, 64), 0, 0, 360, (225, 190, 160), -1)
    truth = np.zeros((size, size), np.uint8)
    truth[76:124, 24:104] = 1
    image[truth == 1] = (40, 40, 48)
    return image, truth


@pytest.mark.parametrize("landmarks", [False, True])
def test_grabcut_finds_the_dark_mask_on_a_light_face(landmarks: bool) -> None:
    image, truth = face_with_mask()
    model = abanet.create_model("grabcut", landmarks=landmarks).eval()
    x = torch.from_numpy(resolve_data_config(model.config, 128)(image))[None]
    logits = model(x)
    assert logits.shape == (1, 1, 128, 128)
    assert set(torch.unique(logits).tolist()) == {-LOGIT, LOGIT}
    pred = logits[0, 0].numpy() > 0
    iou = (pred & (truth == 1)).sum() / (pred | (truth == 1)).sum()
    assert iou > 0.95


def test_grabcut_is_saved_untrained_and_evaluated_like_a_model(tmp_path: Path) -> None:
    data = ellipse_dataset(tmp_path / "d", n=10)
    cfg = tiny_config(data, tmp_path / "run", input_size=96)
    cfg["model"] = {"name": "grabcut", "encoder_weights": None}
    res = train(cfg, command="test")
    assert res.global_step == 0 and res.exported == "untrained"
    assert res.best_checkpoint is None and not (tmp_path / "run" / "checkpoints").exists()
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["test"]) == 1
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["name"] == "grabcut" and saved["input_size"] == 96
    assert saved["metadata"]["training"]["global_step"] == 0
    again = abanet.load_model(tmp_path / "run" / "model")
    x = torch.randn(1, 3, 96, 96)
    assert torch.equal(again.predict(x), res.model.predict(x))
    with pytest.raises(abanet.AbanetError, match="already holds a run"):
        train(cfg)


# ------------------------------------------------------------------------------- Mask R-CNN
def test_mask_targets_one_instance_per_masked_crop() -> None:
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 20:30, 4:28] = 1
    first, empty = mask_targets(masks)
    assert first["boxes"].tolist() == [[4.0, 20.0, 28.0, 30.0]]
    assert first["labels"].tolist() == [1] and first["masks"].shape == (1, 32, 32)
    assert int(first["masks"].sum()) == 240
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 32, 32)


def test_maskrcnn_trains_with_its_own_loss_and_predicts_a_logit_map() -> None:
    torch.manual_seed(0)
    model = abanet.create_model("maskrcnn_mbv2", **TINY_MODEL["maskrcnn_mbv2"])
    cfg = tiny_config(Path("unused"), Path("unused"))
    cfg = abanet.engine.config.resolve_config(cfg)
    module = SegmentationModule(model, cfg)
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 32:60, 10:54] = 1
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    module.log = module.log_dict = lambda *a, **k: None  # no trainer attached
    loss = module.training_step({"image": x, "mask": mask, "name": ["a", "b"]}, 0)
    own, parts = model.training_loss(x, mask)
    assert {"loss_mask", "loss_classifier", "loss_objectness"} <= set(parts)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    opt.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    limit = float(torch.logit(torch.tensor(1 - PROB_EPS, dtype=torch.float64)))  # 9.2102
    assert logits.shape == (2, 1, 64, 64)
    assert float(logits.abs().max()) == pytest.approx(limit, abs=1e-3)  # clipped, finite


def test_engine_uses_a_models_own_training_loss() -> None:
    class OwnLoss(SegmentationModel):
        def __init__(self) -> None:
            super().__init__(ModelConfig(name="own_loss"))
            self.w = torch.nn.Parameter(torch.tensor(2.0))

        def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
            raise AssertionError("the engine must not apply the config's loss")

        def training_loss(self, x, target):
            return self.w * 3, {"probe": self.w.detach()}

    cfg = abanet.engine.config.resolve_config(tiny_config(Path("u"), Path("u")))
    module = SegmentationModule(OwnLoss(), cfg)
    logged = {}
    module.log = lambda k, v, **kw: logged.__setitem__(k, v)
    module.log_dict = lambda d, **kw: logged.update(d)
    batch = {"image": torch.zeros(1, 3, 32, 32), "mask": torch.zeros(1, 1, 32, 32)}
    assert float(module.training_step(batch, 0)) == 6.0
    assert float(logged["train/probe"]) == 2.0


# ------------------------------------------------------------------------------------- FPS
def test_evaluate_runs_on_the_threads_it_is_given(tmp_path: Path, monkeypatch) -> None:
    """Table 4's FPS: the runner evaluates on ``trainer.cpu_threads`` (not every core)."""
    from abanet.engine.evaluation import evaluate
    from abanet.inference.backends import devices
    from tests.fixtures import LowerHalfModel

    monkeypatch.setattr(devices, "available_cores", lambda: 2)
    data = ellipse_dataset(tmp_path / "d", n=2)
    evaluate(LowerHalfModel(), data, batch_size=1, structure=False)
    assert torch.get_num_threads() == 2  # the default: every core
    res = evaluate(LowerHalfModel(), data, batch_size=1, num_threads=1, structure=False)
    assert torch.get_num_threads() == 1 and res.summary["images"] == 2
