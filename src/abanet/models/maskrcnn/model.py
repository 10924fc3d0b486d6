"""Mask R-CNN (He et al. 2017) as Sola and Gera (2023) use it to find the mask region: torchvision's
implementation on an FPN over MobileNetV2 (the ImageNet backbone that installs offline), turned
into abanet's contract.

* Training: each face crop's mask is one instance of the one class "mask" (box = the mask's
  bounding box); a crop without mask has no instance. The model supplies its own loss
  (:meth:`MaskRCNN.training_loss`: torchvision's RPN + box + mask losses, summed), which the engine
  uses in place of the config's loss.
* Inference: the detections scoring at least ``score_threshold`` are pasted at full size by
  torchvision; the per-pixel probability is the highest of their mask probabilities (0 where
  there is none), returned as logits (``logit(p)`` with ``p`` clipped to ``[1e-4, 1 - 1e-4]``).
* The abanet data pipeline has already resized and normalised the crop, so the detector's own
  resize and normalisation are turned off (:class:`PassThroughTransform`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from abanet.models.pretrained import resolve_encoder_weights
from abanet.models.registry import register_model

#: probability clip before the logit (so logits stay finite: +-9.2)
PROB_EPS = 1e-4
#: MobileNetV2 stages fed to the FPN (``mobilenet_backbone``'s stage numbers): strides 8..32
RETURNED_STAGES = [2, 3, 4, 5]
#: stages trained on top of ImageNet weights (torchvision's default for detection fine-tuning)
PRETRAINED_TRAINABLE_STAGES = 3


class PassThroughTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without resize and normalisation (batching and padding
    to a multiple of 32, and pasting back, stay)."""

    def __init__(self) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=[0.0] * 3, image_std=[1.0] * 3)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(self, image: torch.Tensor, target: dict[str, Any] | None = None) -> Any:
        return image, target


def mask_targets(masks: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Mask R-CNN targets from ``(B, 1, H, W)`` ground truth: one instance per non-empty mask."""
    targets = []
    for m in masks[:, 0] >= 0.5:
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(ys):
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            targets.append(
                {
                    "boxes": box[None],
                    "labels": torch.ones(1, dtype=torch.int64, device=m.device),
                    "masks": m[None].to(torch.uint8),
                }
            )
        else:
            targets.append(
                {
                    "boxes": torch.zeros(0, 4, device=m.device),
                    "labels": torch.zeros(0, dtype=torch.int64, device=m.device),
                    "masks": torch.zeros(0, *m.shape, dtype=torch.uint8, device=m.device),
                }
            )
    return targets


class MaskRCNN(SegmentationModel):
    """torchvision Mask R-CNN (two classes: background, mask) whose output is a logits map.

    Args:
        score_threshold: detections below this score are ignored at inference.
        fpn_channels: channels of the feature pyramid (torchvision: 256).
        box_head_channels: width of the two-layer box head (torchvision: 1024).
        mask_head_channels: width of the four mask-head convolutions (torchvision: 256).
        box_rois_per_image: proposals sampled per image to train the box head (torchvision: 512).
        trainable_stages: MobileNetV2 stages trained (from the top; None: 3 with ImageNet
            weights, all 6 without).
        encoder_weights: None, ``"imagenet"`` or a torchvision MobileNetV2 state-dict file.
    """

    def __init__(
        self,
        config: ModelConfig,
        score_threshold: float = 0.5,
        fpn_channels: int = 256,
        box_head_channels: int = 1024,
        mask_head_channels: int = 256,
        box_rois_per_image: int = 512,
        anchor_sizes: Sequence[int] = (16, 32, 64, 128, 256),
        detections_per_image: int = 10,
        trainable_stages: int | None = None,
        encoder_weights: str | Path | None = None,
    ) -> None:
        super().__init__(config)
        state = resolve_encoder_weights("mobilenet_v2", encoder_weights)
        if trainable_stages is None:
            trainable_stages = PRETRAINED_TRAINABLE_STAGES if state is not None else 6
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v2",
            weights=None,
            fpn=True,
            norm_layer=FrozenBatchNorm2d,
            trainable_layers=int(trainable_stages),
            returned_layers=RETURNED_STAGES,
        )
        if state is not None:
            _load_mobilenet(backbone.body, state)
        if fpn_channels != backbone.out_channels:
            widths = [block[0].in_channels for block in backbone.fpn.inner_blocks]
            backbone.fpn = FeaturePyramidNetwork(widths, fpn_channels, LastLevelMaxPool())
            backbone.out_channels = fpn_channels
        levels = len(RETURNED_STAGES) + 1  # the FPN's extra max-pooled level
        if len(anchor_sizes) != levels:
            raise ModelError(f"{config.name}: anchor_sizes needs {levels} sizes (one per level)")
        anchors = AnchorGenerator(
            tuple((int(s),) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * levels
        )
        fpn = backbone.out_channels
        self.score_threshold = float(score_threshold)
        self.net = TorchvisionMaskRCNN(
            backbone,
            num_classes=None,
            rpn_anchor_generator=anchors,
            box_head=TwoMLPHead(fpn * 7 * 7, box_head_channels),
            box_predictor=FastRCNNPredictor(box_head_channels, 2),
            mask_head=MaskRCNNHeads(fpn, [mask_head_channels] * 4, 1),
            mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, 2),
            box_batch_size_per_image=int(box_rois_per_image),
            box_detections_per_img=int(detections_per_image),
            rpn_pre_nms_top_n_train=1000,
            rpn_post_nms_top_n_train=500,
            rpn_pre_nms_top_n_test=500,
            rpn_post_nms_top_n_test=100,
        )
        self.net.transform = PassThroughTransform()

    def training_loss(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """torchvision's losses (RPN objectness and box, classifier, box, mask), summed."""
        self.check_input(x)
        self.net.train()
        losses = self.net(list(x), mask_targets(target))
        return sum(losses.values()), losses

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_main(x)]

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's inference path (detections, masks pasted at full size) in any mode
        was_training = self.net.training
        self.net.eval()
        try:
            detections = self.net(list(x))
        finally:
            self.net.train(was_training)
        maps = []
        for det in detections:
            keep = det["scores"] >= self.score_threshold
            masks = det["masks"][keep]
            if len(masks):
                maps.append(masks.amax(dim=0))
            else:
                maps.append(x.new_zeros(1, *x.shape[-2:]))
        return torch.logit(torch.stack(maps).clamp(PROB_EPS, 1 - PROB_EPS))


def _load_mobilenet(body: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """torchvision ``features.N...`` keys into the backbone body (FrozenBatchNorm2d: no
    ``num_batches_tracked``)."""
    own = body.state_dict()
    picked = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    picked = {k: v for k, v in picked.items() if k in own}
    if len(picked) != len(own):
        raise ModelError(
            f"encoder weights do not fit MobileNetV2: {len(own) - len(picked)} keys missing"
        )
    body.load_state_dict(picked, strict=True)


@register_model(family="maskface", encoder="mobilenet_v2", encoder_weights="torchvision")
def maskrcnn_mbv2(config: ModelConfig, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN (torchvision) on a MobileNetV2-FPN, one instance per face's mask.

    Sola and Gera 2023 find the mask region with Mask R-CNN; ResNet-50 ImageNet weights do not
    install offline, MobileNetV2's do.
    """
    return MaskRCNN(config, **kwargs)
