"""ABANet-Lite: a MobileNetV2 ABANet for CPUs and video."""

from abanet.models.lite.model import AbanetLite, abanet_lite

__all__ = ["AbanetLite", "abanet_lite"]
