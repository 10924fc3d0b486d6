"""EINet (Li and Jiao 2022): an edge-guided network with cross-level interaction."""

from abanet.models.einet.model import EINet, einet

__all__ = ["EINet", "einet"]
