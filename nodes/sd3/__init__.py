"""Stable Diffusion 3 / 3.5: the MM-DiT denoiser (joint attention over image and text tokens,
two weight sets, QK norm, SD3.5-medium's dual attention), its flow-matching schedule, its single
file and diffusers layouts, and skip-layer guidance. Its text encoders (CLIP-L, CLIP-G, T5) and
16-channel autoencoder are the MM-DiT families' shared ones (``nodes.mmdit``)."""

from .family import FAMILY
from .guidance import NODES

__all__ = ["FAMILY", "NODES"]
