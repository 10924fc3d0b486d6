"""ABANet (attention boundary-aware network) and its BASNet baseline."""

from abanet.models.abanet.model import ABANet, ResNet34Stages, abanet_r34, basnet_r34

__all__ = ["ABANet", "ResNet34Stages", "abanet_r34", "basnet_r34"]
