"""FLUX.1 (dev and schnell): the double- then single-stream transformer over 2x2-packed latents
with RoPE, the guidance embedding of the distilled dev model (LG_FluxGuidance), optional true CFG,
the resolution-dependent shift of its schedule, and its single-file and diffusers layouts. Its
text encoders (CLIP-L, T5) and 16-channel autoencoder are the MM-DiT families' shared ones
(``nodes.mmdit``)."""

from .family import FAMILY
from .nodes import NODES

__all__ = ["FAMILY", "NODES"]
