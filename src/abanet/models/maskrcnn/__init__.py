"""Mask R-CNN (torchvision, MobileNetV2-FPN) as a mask-region segmenter (the paper's Table 4)."""

from abanet.models.maskrcnn.model import MaskRCNN, mask_targets, maskrcnn_mbv2

__all__ = ["MaskRCNN", "mask_targets", "maskrcnn_mbv2"]
