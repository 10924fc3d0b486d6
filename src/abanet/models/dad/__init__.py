"""DAD (Li, He and Zhang 2022): the difference-aware decoder for binary segmentation."""

from abanet.models.dad.model import DifferenceAwareDecoder, dad

__all__ = ["DifferenceAwareDecoder", "dad"]
