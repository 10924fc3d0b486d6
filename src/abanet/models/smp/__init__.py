"""The paper's baselines through segmentation-models-pytorch, with abanet's model contract."""

from abanet.models.smp.model import SMP_ARCHITECTURES, SmpModel

__all__ = ["SMP_ARCHITECTURES", "SmpModel"]
