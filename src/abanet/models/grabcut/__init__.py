"""GrabCut from face landmarks: the classical mask segmentation of the paper's Table 4."""

from abanet.models.grabcut.model import GrabCut, grabcut, grabcut_mask, initial_labels

__all__ = ["GrabCut", "grabcut", "grabcut_mask", "initial_labels"]
