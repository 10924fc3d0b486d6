"""ABANet: ResNet-34 encoder with two extra stages, dilated bridge, six-stage decoder with
attention-gated skips, deep supervision and BASNet's residual refinement module (spec.md s.2)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet34
from torchvision.models.resnet import BasicBlock

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.blocks import AttentionGate, ConvBNReLU, RefinementModule, upsample_like
from abanet.models.config import ModelConfig
from abanet.models.pretrained import resolve_encoder_weights
from abanet.models.registry import register_model

SKIP_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512, 6: 512}
DECODER_CHANNELS = {6: 512, 5: 512, 4: 256, 3: 128, 2: 64, 1: 64}
BRIDGE_CHANNELS = 512


class ResNet34Stages(nn.Module):
    """ResNet-34's four residual stages in torchvision's layout (``layer1`` .. ``layer4``)."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet34(weights=None)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the ``layer1-4`` part of a torchvision ``resnet34`` state dict, strictly.

        The stem (``conv1``, ``bn1``) and classifier (``fc``) are not used: ABANet's input conv is
        3x3 with stride 1.
        """
        stages = {k: v for k, v in state_dict.items() if k.startswith("layer")}
        if not stages:
            raise ModelError("encoder weights hold no layer1-4 keys of a torchvision resnet34")
        missing, unexpected = self.load_state_dict(stages, strict=False)
        if missing or unexpected:
            raise ModelError(
                "encoder weights do not fit ResNet-34 stages: "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def _residual_stage(channels: int, blocks: int = 3) -> nn.Sequential:
    """2x2 max-pool, then ``blocks`` basic residual blocks (stages 5 and 6)."""
    return nn.Sequential(
        nn.MaxPool2d(2, 2, ceil_mode=True), *(BasicBlock(channels, channels) for _ in range(blocks))
    )


class ABANet(SegmentationModel):
    """The paper's network. Outputs, main first: refined map (when ``refine``), then the side
    outputs of decoder stages 1..6 and of the bridge, all upsampled to the input size.

    Args:
        attention_stages: skip stages (1 = highest resolution .. 5) that get an attention gate.
        refine: add the residual refinement module after decoder stage 1.
        deep_supervision: return every side output in training mode (else the main one only).
        encoder_weights: ``None``, ``"imagenet"`` or a path to a torchvision resnet34 state dict.
    """

    def __init__(
        self,
        config: ModelConfig,
        attention_stages: Iterable[int] = (1, 2, 3),
        refine: bool = True,
        deep_supervision: bool = True,
        encoder_weights: str | Path | None = None,
    ) -> None:
        super().__init__(config)
        self.attention_stages = tuple(sorted(int(s) for s in attention_stages))
        bad = [s for s in self.attention_stages if s not in range(1, 6)]
        if bad:
            raise ModelError(f"attention_stages must lie in 1..5, got {bad}")
        self.refine_enabled = refine
        self.deep_supervision = deep_supervision

        self.inconv = ConvBNReLU(3, 64)
        self.encoder = ResNet34Stages()
        self.stage5 = _residual_stage(512)
        self.stage6 = _residual_stage(512)
        self.bridge = nn.Sequential(
            *(ConvBNReLU(512, BRIDGE_CHANNELS, dilation=2) for _ in range(3))
        )
        self.decoder = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        for stage in range(6, 0, -1):
            prev = BRIDGE_CHANNELS if stage == 6 else DECODER_CHANNELS[stage + 1]
            skip, mid, out = SKIP_CHANNELS[stage], SKIP_CHANNELS[stage], DECODER_CHANNELS[stage]
            self.decoder[str(stage)] = nn.Sequential(
                ConvBNReLU(skip + prev, mid), ConvBNReLU(mid, mid), ConvBNReLU(mid, out)
            )
            if stage in self.attention_stages:
                self.gates[str(stage)] = AttentionGate(skip, prev)
        self.side = nn.ModuleDict(
            {str(s): nn.Conv2d(DECODER_CHANNELS[s], 1, 3, padding=1) for s in range(1, 7)}
        )
        self.side_bridge = nn.Conv2d(BRIDGE_CHANNELS, 1, 3, padding=1)
        self.refiner = RefinementModule(64) if refine else None

        state = resolve_encoder_weights("resnet34", encoder_weights)
        if state is not None:
            self.encoder.load_torchvision_state_dict(state)

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        h = self.inconv(x)
        skips = dict(enumerate(self.encoder(h), start=1))
        skips[5] = self.stage5(skips[4])
        skips[6] = self.stage6(skips[5])
        bridge = self.bridge(skips[6])
        decoded: dict[int, torch.Tensor] = {}
        prev = bridge
        for stage in range(6, 0, -1):
            skip = skips[stage]
            if str(stage) in self.gates:
                skip = self.gates[str(stage)](skip, prev)
            prev = self.decoder[str(stage)](torch.cat([upsample_like(prev, skip), skip], dim=1))
            decoded[stage] = prev
        return bridge, decoded

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        bridge, decoded = self._decode(x)
        coarse = self.side["1"](decoded[1])
        outputs = [self.refiner(coarse)] if self.refiner is not None else []
        outputs.append(coarse)
        if self.training and not self.deep_supervision:
            return outputs[:1]
        outputs += [_resize(self.side[str(s)](decoded[s]), x) for s in range(2, 7)]
        outputs.append(_resize(self.side_bridge(bridge), x))
        return outputs

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        _, decoded = self._decode(x)
        coarse = self.side["1"](decoded[1])
        return self.refiner(coarse) if self.refiner is not None else coarse


def _resize(logits: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(logits, size=ref.shape[-2:], mode="bilinear", align_corners=False)


@register_model(
    family="abanet", encoder="resnet34", encoder_weights="torchvision", attention_stages=(1, 2, 3)
)
def abanet_r34(config: ModelConfig, **kwargs: Any) -> ABANet:
    """ABANet (paper): ResNet-34, 3 attention gates, refinement."""
    return ABANet(config, **kwargs)


@register_model(
    family="abanet", encoder="resnet34", encoder_weights="torchvision", attention_stages=()
)
def basnet_r34(config: ModelConfig, **kwargs: Any) -> ABANet:
    """BASNet baseline: ABANet without attention gates.

    BASNet (Qin et al.): the same network as ABANet with no attention gates.
    """
    return ABANet(config, **kwargs)
