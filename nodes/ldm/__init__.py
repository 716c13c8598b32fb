"""Stable Diffusion 1.x (latent diffusion): U-Net denoiser, CLIP text encoder, SD-VAE, and the
single-file (CompVis/LDM) checkpoint layout. Its nodes are the shared ones in ``nodes.common``,
which read this family through ``FAMILY`` (``family.py``)."""

from .family import FAMILY

__all__ = ["FAMILY", "NODES"]

NODES: list = []
