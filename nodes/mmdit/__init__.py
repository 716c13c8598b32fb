"""What the MM-DiT families (SD3 / SD3.5 and FLUX.1) share: their text encoders (CLIP-L, CLIP-G,
T5) with the nodes that run and join them, and the 16-channel VAE. The families' records import
the loaders from ``layouts`` (its docstring lists them); this package exposes only its nodes."""

from .text_nodes import NODES

__all__ = ["NODES"]
