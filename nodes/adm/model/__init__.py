"""ADM (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs"): the U-Net and its noisy
classifier, built from guided-diffusion's checkpoints (``config.py`` reads their configuration
off the weights, ``loading.py`` builds them)."""

from .config import ConfigError, infer_config, kind_of
from .loading import build
from .unet import ADMConfig, EncoderUNetModel, UNetModel

__all__ = ["ADMConfig", "ConfigError", "EncoderUNetModel", "UNetModel", "build", "infer_config", "kind_of"]
