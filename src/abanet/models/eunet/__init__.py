"""EU-Net (Patel, Bur and Wang 2021): a U-Net with semantic and global-context enhancement."""

from abanet.models.eunet.model import EUNet, eunet

__all__ = ["EUNet", "eunet"]
