"""The U-Nets of Din et al. and Geng et al. (the paper's Table 4), trained from scratch."""

from abanet.models.unet.model import UNet, din_unet, geng_unet

__all__ = ["UNet", "din_unet", "geng_unet"]
