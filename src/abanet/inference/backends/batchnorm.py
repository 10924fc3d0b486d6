"""Folding eval-mode BatchNorm layers into the convolutions that feed them."""

from __future__ import annotations

from typing import Any

from torch import nn


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, bn)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold eval-mode BatchNorm2d layers into the Conv2d that feeds them, in place.

    Handles ``nn.Sequential`` runs ``Conv2d, BatchNorm2d`` (ConvBNReLU, MobileNetV2, downsample
    paths) and torchvision-style blocks with ``convN``/``bnN`` attribute pairs (ResNet blocks).
    Returns how many BatchNorms were folded (each is replaced by ``nn.Identity``).
    """
    count = 0
    for child in list(module.modules()):
        if isinstance(child, nn.Sequential):
            keys = list(child._modules)
            for conv_key, bn_key in zip(keys, keys[1:], strict=False):
                conv, bn = child._modules[conv_key], child._modules[bn_key]
                if _foldable(conv, bn):
                    child._modules[conv_key] = _fuse(conv, bn)
                    child._modules[bn_key] = nn.Identity()
                    count += 1
        for key in list(child._modules):
            if not key.startswith("bn"):
                continue
            conv_key = "conv" + key[2:]
            conv, bn = child._modules.get(conv_key), child._modules[key]
            if conv is not None and _foldable(conv, bn) and _attr_pair_is_sequential(child, key):
                child._modules[conv_key] = _fuse(conv, bn)
                child._modules[key] = nn.Identity()
                count += 1
    return count


def _foldable(conv: Any, bn: Any) -> bool:
    return (
        type(conv) is nn.Conv2d
        and isinstance(bn, nn.BatchNorm2d)
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _attr_pair_is_sequential(block: nn.Module, bn_key: str) -> bool:
    """Only blocks known to apply ``bnN`` directly to ``convN``'s output (torchvision ResNet)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return isinstance(block, BasicBlock | Bottleneck) and bn_key in ("bn1", "bn2", "bn3")
